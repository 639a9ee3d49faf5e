-- Merges fields into a task's result hash, sets its TTL, and announces a final state.
-- Fenced: an update that names its worker is refused (returns 0) when another worker
-- has since claimed the task; a STARTED update claims it, unless the task was revoked
-- (returns -1: the revoke check of every task start, at no extra round trip).
-- KEYS[1] the result hash
-- ARGV[1] ttl in ms
-- ARGV[2] the writing worker's id, or ''
-- ARGV[3] '1' when this update claims the task (STARTED)
-- ARGV[4] channel to publish the state on, or '' when not final
-- ARGV[5] the state
-- ARGV[6..] field, value pairs
local writer = ARGV[2]
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'state') == 'REVOKED' then
  return -1
end
if writer ~= '' and ARGV[3] ~= '1' then
  local owner = redis.call('HGET', KEYS[1], 'worker')
  if owner and owner ~= writer then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'state', ARGV[5], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
