-- Moves a delivery to the queue's dead letters with the reason. Refused (0) when the
-- delivery is no longer this worker's; 2 when the oldest dead letter was dropped for it
-- (the list is at its cap), else 1.
-- KEYS[1] this worker's processing list
-- KEYS[2] dead-letter list of the queue
-- ARGV[1] the entry
-- ARGV[2] the dead-letter record (at_ms:reason_len:reason payload)
-- ARGV[3] how many dead letters the queue keeps
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local cap = tonumber(ARGV[3])
local length = redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, cap - 1)
if length > cap then return 2 end
return 1
