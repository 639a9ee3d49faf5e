-- Adds many messages of one queue and priority in one step: due ones to the ready list
-- (one RPUSH), delayed ones to the delayed set (one ZADD), then one wake token.
-- KEYS[1] ready list of the priority
-- KEYS[2] delayed zset of the queue
-- KEYS[3] wake list of the queue
-- ARGV[1] how many due entries follow
-- ARGV[2..] the due entries, then (due time, entry) pairs for the delayed ones
local now_count = tonumber(ARGV[1])
if now_count > 0 then
  redis.call('RPUSH', KEYS[1], unpack(ARGV, 2, now_count + 1))
end
if #ARGV > now_count + 1 then
  redis.call('ZADD', KEYS[2], unpack(ARGV, now_count + 2))
end
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
end
return 1
