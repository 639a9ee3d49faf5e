-- Adds one message to a queue: to its priority's ready list, or to the delayed set
-- when it has a due time, then makes sure one blocked worker wakes.
-- KEYS[1] ready list of the message's priority
-- KEYS[2] delayed zset of the queue
-- KEYS[3] wake list of the queue
-- ARGV[1] entry (header + envelope)
-- ARGV[2] due time in Unix ms, or 0 for now
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
else
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
end
return 1
