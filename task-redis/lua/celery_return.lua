-- Gives Celery messages back to the front of kombu's main list of their queue (the
-- right end, taken next): one (ARGV[1], fenced: 0 when it is no longer held), or every
-- one the processing list holds (ARGV[1] empty: a dead worker's). Returns how many.
-- KEYS[1] the processing list; KEYS[2] kombu's list
if ARGV[1] ~= '' then
  if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
-- Newest first from the processing list onto the front: the oldest ends up taken first.
local moved = 0
while true do
  local m = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not m then return moved end
  moved = moved + 1
end
