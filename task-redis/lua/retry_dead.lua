-- Puts dead letters of a queue back in it, oldest first, as new messages (priority 0,
-- never delivered). A record is `at_ms:reason_len:reason` followed by the envelope.
-- KEYS[1] the dead-letter list (newest at the head)
-- KEYS[2] the queue's priority-0 ready list
-- KEYS[3] the queue's wake list
-- ARGV[1] how many at most
local moved = 0
for _ = 1, tonumber(ARGV[1]) do
  local record = redis.call('RPOP', KEYS[1])
  if not record then break end
  local first = string.find(record, ':', 1, true)
  local second = first and string.find(record, ':', first + 1, true)
  local len = second and tonumber(string.sub(record, first + 1, second - 1))
  if len then
    redis.call('RPUSH', KEYS[2], '0000' .. string.sub(record, second + 1 + len))
    moved = moved + 1
  end
end
if moved > 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
end
return moved
