-- The chord-fire script is this guard followed by enqueue.lua: it closes the chord and
-- sends its callback in one step, so however many members see the chord complete
-- (redeliveries), the callback is sent once. Returns 0 when the chord was closed
-- already (sent, or failed) or is unknown. The results are dropped once sent.
-- KEYS[1..3] as in enqueue.lua, for the callback
-- KEYS[4]    the chord's hash (same hash tag as the callback's queue)
-- ARGV[1..2] as in enqueue.lua, for the callback
if redis.call('EXISTS', KEYS[4]) == 0 or redis.call('HSETNX', KEYS[4], 'closed', 'sent') == 0 then
  return 0
end
local size = tonumber(redis.call('HGET', KEYS[4], 'size'))
for i = 0, size - 1 do
  redis.call('HDEL', KEYS[4], 'r:' .. i)
end
