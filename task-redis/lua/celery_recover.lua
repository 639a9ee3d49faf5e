-- A stopped worker's Celery messages of one queue: each goes back to the front of
-- kombu's list (the right end, taken next; newest held first onto it, so the oldest is
-- taken first again), without the marker it is held with (ARGV[1]'s length). When the
-- worker died (ARGV[3] = 1), its death is counted by the message's SHA1 in a hash kept
-- a day (dropped whole past 10,000 entries), and a message whose holders died ARGV[2]
-- times goes to the queue's burying list instead, from which the broker moves it to the
-- dead letters. Returns how many went back and how many wait in the burying list.
-- KEYS[1] the processing list; KEYS[2] kombu's list; KEYS[3] the deaths hash;
-- KEYS[4] the burying list
local skip = string.len(ARGV[1]) + 1
local limit = tonumber(ARGV[2])
local counted = ARGV[3] == '1'
local back = 0
while true do
  local held = redis.call('LPOP', KEYS[1])
  if not held then break end
  local m = string.sub(held, skip)
  local deaths = 0
  if counted then
    deaths = redis.call('HINCRBY', KEYS[3], redis.sha1hex(m), 1)
  end
  if counted and deaths >= limit then
    redis.call('HDEL', KEYS[3], redis.sha1hex(m))
    redis.call('RPUSH', KEYS[4], m)
  else
    redis.call('RPUSH', KEYS[2], m)
    back = back + 1
  end
end
if counted then
  if redis.call('HLEN', KEYS[3]) > 10000 then
    redis.call('DEL', KEYS[3])
  else
    redis.call('PEXPIRE', KEYS[3], 86400000)
  end
end
return {back, redis.call('LLEN', KEYS[4])}
