-- The retry script is this guard followed by enqueue.lua: it acks the delivery, then
-- enqueues its replacement, in one step. Refused (returns 0) when the delivery is no
-- longer in this worker's processing list: it was recovered after a missed heartbeat
-- (fencing).
-- KEYS[1..3] as in enqueue.lua, for the replacement
-- KEYS[4]    this worker's processing list
-- ARGV[1..2] as in enqueue.lua, for the replacement
-- ARGV[3]    the delivered entry
if redis.call('LREM', KEYS[4], 1, ARGV[3]) == 0 then
  return 0
end
