-- Claims a tick of a periodic entry: succeeds only for a tick later than the entry's
-- last claimed one, so each tick is sent once by one of any number of schedulers, and
-- a scheduler whose clock lags cannot send a tick again.
-- KEYS[1] the hash of last claimed ticks (entry name -> Unix ms)
-- ARGV[1] the entry name; ARGV[2] the tick (Unix ms)
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
