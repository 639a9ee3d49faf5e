-- Moves up to ARGV[1] due messages of one queue into a worker's processing list, in
-- one atomic step: first promotes delayed messages whose time has come, then takes
-- from the ready lists, highest priority first. Returns the entries taken, followed by
-- the due time of the next delayed message (Unix ms, or -1 when there is none).
-- KEYS[1..10] ready lists, priority 9 first, down to priority 0
-- KEYS[11]    delayed zset
-- KEYS[12]    this worker's processing list for the queue
-- KEYS[13]    wake list
-- KEYS[14]    the paused flag: while it exists nothing is taken (or promoted)
-- ARGV[1]     how many at most
if redis.call('EXISTS', KEYS[14]) == 1 then
  return {'-1'}
end
local max = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', now, 'LIMIT', 0, 1000)
for _, entry in ipairs(due) do
  -- The header (entry.rs): 0xC1, the priority digit, 3 digits of deliveries; or the
  -- 4 digits of earlier releases before an envelope (a MessagePack map). An entry with
  -- neither (pushed by hand) is served at priority 0.
  local priority = 0
  if string.match(entry, '^\193%d%d%d%d') then
    priority = tonumber(string.sub(entry, 2, 2))
  elseif string.match(entry, '^%d%d%d%d[\128-\143\222\223]') then
    priority = tonumber(string.sub(entry, 1, 1))
  end
  redis.call('RPUSH', KEYS[10 - priority], entry)
  redis.call('ZREM', KEYS[11], entry)
end

-- Most queues hold nothing above priority 0: one EXISTS over the nine lists above it
-- spares a call on each of them (a pop here, a length below) when all are empty.
local top = redis.call('EXISTS', unpack(KEYS, 1, 9)) == 0 and 10 or 1
local out = {}
for i = top, 10 do
  local want = max - #out
  if want <= 0 then break end
  local taken = redis.call('LPOP', KEYS[i], want)
  if taken then
    redis.call('RPUSH', KEYS[12], unpack(taken))
    for _, entry in ipairs(taken) do out[#out + 1] = entry end
  end
end

-- Messages remain: wake one more worker (the chain goes on while there is work).
if #out >= max and redis.call('LLEN', KEYS[13]) == 0 then
  for i = top, 10 do
    if redis.call('LLEN', KEYS[i]) > 0 then
      redis.call('RPUSH', KEYS[13], '1')
      break
    end
  end
end

local first = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
out[#out + 1] = first[2] or '-1'
return out
