-- Moves a delivery to the queue's dead letters with the reason. Refused (0) when the
-- delivery is no longer this worker's.
-- KEYS[1] this worker's processing list
-- KEYS[2] dead-letter list of the queue
-- ARGV[1] the entry
-- ARGV[2] the dead-letter record (at_ms:reason_len:reason payload)
-- ARGV[3] how many dead letters the queue keeps
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
