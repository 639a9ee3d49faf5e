-- Records one chord member's result and says where the chord stands. A member's
-- first result counts; a redelivered member (its worker died after the task ran)
-- finds its index set and counts nothing, so the join never double counts.
-- KEYS[1] the chord's hash: size, remaining, callback, closed, r:<index> results
-- ARGV[1] the member's index; ARGV[2] its encoded result
-- Returns {'closed'} (sent, failed or unknown), {'waiting', n}, or
-- {'complete', callback, result 0, result 1, ...}.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then
  return {'closed'}
end
if redis.call('HSETNX', KEYS[1], 'r:' .. ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'remaining', -1)
end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
if remaining > 0 then
  return {'waiting', tostring(remaining)}
end
local size = tonumber(redis.call('HGET', KEYS[1], 'size'))
local out = {'complete', redis.call('HGET', KEYS[1], 'callback')}
for i = 0, size - 1 do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'r:' .. i)
end
return out
