-- Gives an unstarted delivery back to the front of its ready list, not counted as a
-- delivery. Refused (0) when the delivery is no longer this worker's.
-- KEYS[1] this worker's processing list
-- KEYS[2] ready list of the entry's priority
-- KEYS[3] wake list
-- ARGV[1] the entry
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[1])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
end
return 1
