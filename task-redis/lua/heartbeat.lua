-- Marks a worker alive until Redis's clock + ttl (one clock for every machine).
-- KEYS[1] the workers zset (member: worker id, score: deadline in Unix ms)
-- ARGV[1] worker id
-- ARGV[2] ttl in ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
