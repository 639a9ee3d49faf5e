-- Revokes a task's record: unless it already ended, its state becomes REVOKED with the
-- reason, kept for the TTL (a worker that dequeues it later skips it), and its waiters
-- are woken. Only the record's slot: the caller then adds the id to the revoked set and
-- the recent list and tells the workers (keys of other slots on a cluster).
-- KEYS[1] the result hash
-- ARGV[1] ttl in ms
-- ARGV[2] the reason
-- ARGV[3] the task's done channel
-- ARGV[4] now (Unix ms)
-- ARGV[5] PUBLISH, or SPUBLISH on a cluster (the channel is then in the record's slot)
-- Returns 0 when the task had ended (nothing changed), 1 when it is revoked now, 2 when
-- it is revoked now and never started (to be listed: it never will be at a start), 3
-- when it was revoked already (a revoke sent again, its first reply lost: the caller
-- still makes sure of the revoked set and tells the workers again).
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'REVOKED' then
  return 3
end
if state == 'SUCCESS' or state == 'FAILURE' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'REVOKED', 'error', ARGV[2], 'changed_ms', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call(ARGV[5], ARGV[3], 'REVOKED')
-- A run's claim writes its start into the packed `run` group (backend/record.rs);
-- records written before the packing have it by name.
if redis.call('HEXISTS', KEYS[1], 'run') == 0 and redis.call('HEXISTS', KEYS[1], 'started_ms') == 0 then
  return 2
end
return 1
