-- Revokes a task: unless it already ended, its state becomes REVOKED with the reason,
-- kept for the TTL (a worker that dequeues it later skips it), and waiters are woken.
-- With terminate, the control channel tells the worker running it to abort it.
-- KEYS[1] the result hash
-- ARGV[1] ttl in ms
-- ARGV[2] the reason
-- ARGV[3] the task's done channel
-- ARGV[4] the control channel, or '' not to terminate
-- ARGV[5] the task id
-- ARGV[6] now (Unix ms)
-- KEYS[2] the recent-tasks list; ARGV[7] its cap (a task revoked before it started is
--         listed now, since it never will be at a start)
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'SUCCESS' and state ~= 'FAILURE' and state ~= 'REVOKED' then
  redis.call('HSET', KEYS[1], 'state', 'REVOKED', 'error', ARGV[2], 'changed_ms', ARGV[6])
  if redis.call('HEXISTS', KEYS[1], 'started_ms') == 0 then
    redis.call('LPUSH', KEYS[2], ARGV[5])
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], 'REVOKED')
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], 'terminate ' .. ARGV[5])
end
return 1
