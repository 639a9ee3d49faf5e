-- A Celery chord member's result, joined as Celery 5.7's Redis backend joins it (so
-- Python and Rust workers can share one chord): the member's [1, id, state, result] is
-- added once (by id and place) to the ordered results, and when the last one is in,
-- the callback's dispatch is claimed, at most once. Returns {ready, diff, size, claimed}
-- or {-1, 0, 0, 0} when the chord was already done.
-- KEYS[1..6]: celery-taskset-meta-<gid> + .j (results, zset), .t (size diff),
--   .s (size), .d (members seen), nothing (the group), .c (claim)
-- ARGV[1] the member's id; ARGV[2] its result; ARGV[3] its place in the group
-- ARGV[4] expiry of the chord's keys (s); ARGV[5] of the claim (s); ARGV[6] the
-- member's claim token
if redis.call('GET', KEYS[6]) == 'done' then
  return {-1, 0, 0, 0}
end
local member = ARGV[1] .. ':' .. ARGV[3]
if redis.call('SISMEMBER', KEYS[4], member) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('SADD', KEYS[4], member)
end
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
local expires = tonumber(ARGV[4])
if expires > 0 then
  for i = 1, 4 do
    redis.call('EXPIRE', KEYS[i], expires)
  end
  redis.call('EXPIRE', KEYS[5], expires)
end
local diff = redis.call('GET', KEYS[2])
local size = redis.call('GET', KEYS[3])
local claimed = 0
if size and ready == tonumber(size) + tonumber(diff or 0) then
  -- Claimed now, or by this member before (its join tried again after a failure).
  if redis.call('SET', KEYS[6], ARGV[6], 'NX', 'EX', tonumber(ARGV[5])) or redis.call('GET', KEYS[6]) == ARGV[6] then
    claimed = 1
  end
end
return {ready, diff or 0, size or 0, claimed}
