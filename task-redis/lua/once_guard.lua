-- The enqueue-once script is this guard followed by enqueue.lua: it marks the message's
-- id as sent and enqueues it in one step, or does nothing (returns 0) when the id was
-- sent already. How a callback or chain step is sent once even if its parent runs twice.
-- KEYS[1..3] as in enqueue.lua
-- KEYS[4]    the sent marker of the message's id (same hash tag as its queue)
-- ARGV[1..2] as in enqueue.lua
-- ARGV[3]    how long the marker lives (ms)
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[3]) then
  return 0
end
