-- Revokes a task: unless it already ended, its state becomes REVOKED with the reason,
-- kept for the TTL (a worker that dequeues it later skips it), its id goes to the
-- revoked set for as long (workers that do not store STARTED check there, from memory:
-- they load the set and hear each new revoke on the control channel), and waiters are
-- woken. With terminate, the control channel tells the worker running it to abort it.
-- KEYS[1] the result hash
-- KEYS[2] the recent-tasks list; ARGV[7] its cap (a task revoked before it started is
--         listed now, since it never will be at a start)
-- KEYS[3] the revoked set (zset: task id -> until when the revoke holds, Unix ms)
-- ARGV[1] ttl in ms
-- ARGV[2] the reason
-- ARGV[3] the task's done channel
-- ARGV[4] the control channel
-- ARGV[5] the task id
-- ARGV[6] now (Unix ms)
-- ARGV[8] '1' to terminate the task where it runs
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'SUCCESS' and state ~= 'FAILURE' and state ~= 'REVOKED' then
  redis.call('HSET', KEYS[1], 'state', 'REVOKED', 'error', ARGV[2], 'changed_ms', ARGV[6])
  if redis.call('HEXISTS', KEYS[1], 'started_ms') == 0 then
    redis.call('LPUSH', KEYS[2], ARGV[5])
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  local until_ms = string.format('%d', tonumber(ARGV[6]) + tonumber(ARGV[1]))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[6])
  redis.call('ZADD', KEYS[3], until_ms, ARGV[5])
  redis.call('PUBLISH', ARGV[4], 'revoke ' .. until_ms .. ' ' .. ARGV[5])
  redis.call('PUBLISH', ARGV[3], 'REVOKED')
end
if ARGV[8] == '1' then
  redis.call('PUBLISH', ARGV[4], 'terminate ' .. ARGV[5])
end
return 1
