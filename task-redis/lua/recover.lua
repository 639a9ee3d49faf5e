-- Empties a worker's processing list for one queue: each message goes back to the
-- front of its ready list, or, when counted deliveries reach the limit, to the dead
-- letters with the reason. Returns how many messages moved, then the reason and the
-- payload of each one buried (so the caller can end their tasks).
-- KEYS[1..10] ready lists, priority 9 first, down to priority 0
-- KEYS[11]    the worker's processing list
-- KEYS[12]    dead-letter list
-- KEYS[13]    wake list
-- ARGV[1]     delivery limit
-- ARGV[2]     1 to count this as a delivery (the worker died), 0 to release (clean stop)
-- ARGV[3]     the worker's id, for the reason
-- ARGV[4]     how many dead letters the queue keeps
local limit = tonumber(ARGV[1])
local counted = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
local buried = {}
while true do
  -- From the tail, pushing to the head: the original order is kept.
  local entry = redis.call('RPOP', KEYS[11])
  if not entry then break end
  -- Header (entry.rs): 0xC1, the priority digit, a 3-digit count of earlier
  -- deliveries; or the 4 digits of earlier releases before an envelope (a MessagePack
  -- map). An entry with neither (pushed by hand) counts as priority 0, never delivered,
  -- all payload.
  local priority, deliveries, payload = 0, counted, entry
  if string.match(entry, '^\193%d%d%d%d') then
    priority = tonumber(string.sub(entry, 2, 2))
    deliveries = tonumber(string.sub(entry, 3, 5)) + counted
    payload = string.sub(entry, 6)
  elseif string.match(entry, '^%d%d%d%d[\128-\143\222\223]') then
    priority = tonumber(string.sub(entry, 1, 1))
    deliveries = tonumber(string.sub(entry, 2, 4)) + counted
    payload = string.sub(entry, 5)
  end
  if counted == 1 and deliveries >= limit then
    local reason = 'delivered ' .. deliveries .. ' times without an ack (limit ' .. limit
      .. '); last worker ' .. ARGV[3] .. ' stopped heartbeating'
    redis.call('LPUSH', KEYS[12], now .. ':' .. #reason .. ':' .. reason .. payload)
    redis.call('LTRIM', KEYS[12], 0, tonumber(ARGV[4]) - 1)
    buried[#buried + 1] = reason
    buried[#buried + 1] = payload
  else
    redis.call('LPUSH', KEYS[10 - priority], string.format('\193%d%03d', priority, math.min(deliveries, 999)) .. payload)
  end
  moved = moved + 1
end
if moved > 0 and redis.call('LLEN', KEYS[13]) == 0 then
  redis.call('RPUSH', KEYS[13], '1')
end
return {moved, unpack(buried)}
