-- Acks a delivery and enqueues its replacement in one step (a retry with back-off).
-- Refused (returns 0) when the delivery is no longer in this worker's processing
-- list: it was recovered after a missed heartbeat (fencing).
-- KEYS[1] this worker's processing list
-- KEYS[2] ready list of the replacement's priority
-- KEYS[3] delayed zset
-- KEYS[4] wake list
-- ARGV[1] the delivered entry
-- ARGV[2] the replacement entry
-- ARGV[3] its due time in Unix ms, or 0 for now
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
else
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
if redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('RPUSH', KEYS[4], '1')
end
return 1
