-- Merges state writes into their tasks' result hashes, sets their TTLs, and publishes
-- final states; the backend groups concurrent writes into one call (group commit).
-- Fenced: a write that names its worker is refused when another worker has since
-- claimed the task; a STARTED write claims it, unless the task was revoked (the revoke
-- check of every task start, at no extra round trip). Returns one code per write: 1 stored, 0 fenced (another
-- worker owns the task), -1 a STARTED claim of a revoked task.
-- KEYS[i]  the result hash of write i
-- ARGV     per write: ttl ms, writer ('' for none), claim ('1'/'0'), channel ('' when not
--          final), state, field count n, then n field/value pairs
local out = {}
local a = 1
for i = 1, #KEYS do
  local key, ttl, writer, claim, channel, state = KEYS[i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local n = tonumber(ARGV[a + 5])
  local first = a + 6
  a = first + 2 * n
  local code = 1
  if claim == '1' and redis.call('HGET', key, 'state') == 'REVOKED' then
    code = -1
  elseif writer ~= '' and claim ~= '1' then
    local owner = redis.call('HGET', key, 'worker')
    if owner and owner ~= writer then
      code = 0
    end
  end
  if code == 1 then
    if n > 0 then
      redis.call('HSET', key, 'state', state, unpack(ARGV, first, first + 2 * n - 1))
    else
      redis.call('HSET', key, 'state', state)
    end
    redis.call('PEXPIRE', key, ttl)
    if channel ~= '' then
      redis.call('PUBLISH', channel, state)
    end
  end
  out[i] = code
end
return out
