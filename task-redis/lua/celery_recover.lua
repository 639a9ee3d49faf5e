-- A stopped worker's Celery messages of one queue: each goes back to the front of
-- kombu's list of its priority (the right end, taken next; newest held first onto it,
-- so the oldest is taken first again), without the marker it is held with (ARGV[1]'s
-- length). Its priority is its `properties.priority`, by kombu's steps 0/3/6/9. When the
-- worker died (ARGV[3] = 1), its death is counted by the message's SHA1 in a hash kept
-- a day (dropped whole past 10,000 entries), and a message whose holders died ARGV[2]
-- times goes to the queue's burying list instead, from which the broker moves it to the
-- dead letters. Returns how many went back and how many wait in the burying list.
-- KEYS[1] the processing list; KEYS[2..5] kombu's lists, priority steps 0, 3, 6, 9;
-- KEYS[6] the deaths hash; KEYS[7] the burying list
local skip = string.len(ARGV[1]) + 1
local limit = tonumber(ARGV[2])
local counted = ARGV[3] == '1'
local back = 0
-- kombu's list of a message's priority (the main one when it does not read).
local function home(m)
  local ok, decoded = pcall(cjson.decode, m)
  local priority = 0
  if ok and type(decoded) == 'table' and type(decoded.properties) == 'table' then
    priority = tonumber(decoded.properties.priority) or 0
  end
  if priority >= 9 then return KEYS[5] elseif priority >= 6 then return KEYS[4]
  elseif priority >= 3 then return KEYS[3] else return KEYS[2] end
end
while true do
  local held = redis.call('LPOP', KEYS[1])
  if not held then break end
  local m = string.sub(held, skip)
  local deaths = 0
  if counted then
    deaths = redis.call('HINCRBY', KEYS[6], redis.sha1hex(m), 1)
  end
  if counted and deaths >= limit then
    redis.call('HDEL', KEYS[6], redis.sha1hex(m))
    redis.call('RPUSH', KEYS[7], m)
  else
    redis.call('RPUSH', home(m), m)
    back = back + 1
  end
end
if counted then
  if redis.call('HLEN', KEYS[6]) > 10000 then
    redis.call('DEL', KEYS[6])
  else
    redis.call('PEXPIRE', KEYS[6], 86400000)
  end
end
return {back, redis.call('LLEN', KEYS[7])}
