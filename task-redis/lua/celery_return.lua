-- Gives Celery messages back to the front of kombu's main list of their queue (the
-- right end, taken next), without the marker they are held with (ARGV[2]'s length): one
-- (ARGV[1], fenced: 0 when it is no longer held), or every one the processing list
-- holds (ARGV[1] empty: a dead worker's), newest held first onto the front, so the
-- oldest is taken first again. Returns how many.
-- KEYS[1] the processing list; KEYS[2] kombu's list
local skip = string.len(ARGV[2]) + 1
if ARGV[1] ~= '' then
  if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
  redis.call('RPUSH', KEYS[2], string.sub(ARGV[1], skip))
  return 1
end
local moved = 0
while true do
  local m = redis.call('LPOP', KEYS[1])
  if not m then return moved end
  redis.call('RPUSH', KEYS[2], string.sub(m, skip))
  moved = moved + 1
end
