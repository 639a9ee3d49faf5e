-- A dead worker's Celery messages of one queue: each goes back to the front of kombu's
-- list (the right end, taken next; newest held first onto it, so the oldest is taken
-- first again), without the marker it is held with (ARGV[1]'s length), or, once the
-- workers holding it have died ARGV[2] times, to the queue's burying list, from which
-- the broker moves it to the dead letters. The deaths are counted by the message's
-- SHA1 in a hash kept a day. Returns how many went back, then each one to bury.
-- KEYS[1] the processing list; KEYS[2] kombu's list; KEYS[3] the deaths hash;
-- KEYS[4] the burying list
local skip = string.len(ARGV[1]) + 1
local limit = tonumber(ARGV[2])
local back, bury = 0, {}
while true do
  local held = redis.call('LPOP', KEYS[1])
  if not held then break end
  local m = string.sub(held, skip)
  local sha = redis.sha1hex(m)
  local deaths = redis.call('HINCRBY', KEYS[3], sha, 1)
  if deaths >= limit then
    redis.call('HDEL', KEYS[3], sha)
    redis.call('RPUSH', KEYS[4], m)
    bury[#bury + 1] = m
  else
    redis.call('RPUSH', KEYS[2], m)
    back = back + 1
  end
end
redis.call('PEXPIRE', KEYS[3], 86400000)
return {back, unpack(bury)}
