-- Merges state writes into their tasks' result hashes, sets their TTLs, and publishes
-- final states; the backend groups concurrent writes into one call (group commit).
-- Fenced: a write that names its worker is refused when another worker has since
-- claimed the task; a STARTED write claims it, unless the task was revoked (the revoke
-- check of every task start, at no extra round trip). A write may also ack the message
-- its task came from (its receipt, removed from the worker's processing list): then
-- that removal is the fence, and the write and the ack happen together or not at all.
-- Final: over REVOKED only REVOKED lands, and no PROGRESS lands on SUCCESS or FAILURE
-- (`admits`), so a revoke is never overwritten by the run it revoked and `ready()` never
-- goes back. Returns one code per write: 1 stored, 0 fenced (another worker owns the
-- task or the message), -1 refused as final (for a STARTED claim: the task was revoked;
-- for a write that acks, the ack is done all the same).
-- KEYS[i]    the result hash of write i (i = 1..n)
-- KEYS[n+1]  the recent-tasks list (ids, newest first; a task may appear more than once)
-- KEYS[n+2]  this minute's counters hash (succeeded, failed)
-- KEYS[n+3..] the processing lists of the writes that ack, in their order
-- On a cluster, where those are in slots of their own, KEYS holds the n result hashes
-- only, no write acks, and a stored write to list answers 2 (its writer lists and
-- counts it); final states go out with SPUBLISH on sharded channels in their record's
-- slot, named as the record.
-- Final states (SUCCESS, FAILURE, REVOKED) are published on their task's done channel
-- (ARGV[4] .. task id on one Redis) in two messages when anyone listens: '+', then the
-- record (cmsgpack of its HGETALL), so that a waiter need not read it (a round trip
-- less), or the state alone when the record is larger than PUBLISHED_MAX (the waiter
-- reads it then). With no one listening the second message, and its cost, is spared:
-- '+' is how the script learns whether anyone listens.
-- ARGV[1]    n, the number of writes; ARGV[2] now (Unix ms); ARGV[3] the recent-tasks cap;
-- ARGV[4]    the done channels' prefix (NS:done:)
-- ARGV[5..]  per write: ttl ms, writer ('' for none, and for a write that acks: the ack is its
--            fence), claim ('1'/'0'), state, task id, receipt to
--            ack ('' for none), shape s, then its fields:
--            s = 0: a field count f and f field/value pairs; s > 0: the values of the fields
--            of shape s, in its order (the common writes: their field names are written into
--            this script, not sent with every write). claim '1': a STARTED write (revoke
--            check, listed); '2': the first write of a run whose start is not tracked
--            (listed); '0': neither.
-- The recent-tasks index and the counters are written once per call, not per write; a
-- task is listed when it starts (or ends unstarted), not at every write.
-- SHAPE_OF reads a shape argument by table lookup (tonumber is strtod: ~1,000 instructions
-- a write). Written in after the next line when the script loads, from backend.rs's
-- WRITE_SHAPES:
-- @shapes: SHAPE_OF, SHAPE_LEN and store_shaped(shape, key, state, first)
-- redis.call read once: a global table lookup less per command.
local call = redis.call
-- The largest record published with its final state, in the bytes of its field names
-- and values (most results are far smaller):
-- messages wait whole in a listener's output buffer until it reads them, and past 32 MB
-- there (by default) Redis cuts the listener, so a larger record is read by its waiter.
local PUBLISHED_MAX = 16384
-- Whether `update` may land on a record in state `current`: TaskState::admits in Rust.
local function admits(current, update)
  if current == 'REVOKED' then return update == 'REVOKED' end
  if current == 'SUCCESS' or current == 'FAILURE' then return update ~= 'PROGRESS' end
  return true
end
local n = tonumber(ARGV[1])
local indexed = #KEYS > n
local publish = indexed and 'PUBLISH' or 'SPUBLISH'
local now = ARGV[2]
local out = {}
local recent = {}
local succeeded, failed = 0, 0
local done = ARGV[4]
local a = 5
local acks = n + 2
for i = 1, n do
  local key, ttl, writer, claim, state, id, receipt =
    KEYS[i], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local shape = SHAPE_OF[ARGV[a + 6]]
  local first, f = a + 7, 0
  if shape == 0 then
    f = tonumber(ARGV[first])
    first = first + 1
    a = first + 2 * f
  else
    a = first + SHAPE_LEN[shape]
  end
  -- 1: stored; 0: fenced (the ack or the owner says another worker has the task);
  -- -1: refused, the record is final (a revoke; a late progress of an ended run).
  local code = 1
  local current
  if receipt ~= '' then
    acks = acks + 1
    if call('LREM', KEYS[acks], '1', receipt) == 0 then code = 0 else current = call('HGET', key, 'state') end
  elseif writer ~= '' and claim ~= '1' then
    local owner
    owner, current = unpack(call('HMGET', key, 'worker', 'state'))
    if owner and owner ~= writer then
      code = 0
    end
  else
    current = call('HGET', key, 'state')
  end
  if code == 1 and current and not admits(current, state) then code = -1 end
  if code == 1 then
    -- A run's first write over an existing record (a retry, a redelivery, a retried dead
    -- letter, a record written before the packing) clears the fields by name that its
    -- packed groups replace: a field by name wins over its packed twin when read.
    if claim ~= '0' and current then
      call('HDEL', key, 'task', 'queue', 'retries', 'started_ms', 'args', 'runtime_ms', 'finished_ms')
    end
    if shape > 0 then
      store_shaped(shape, key, state, first)
    elseif f > 0 then
      call('HSET', key, 'state', state, 'changed_ms', now, unpack(ARGV, first, first + 2 * f - 1))
    else
      call('HSET', key, 'state', state, 'changed_ms', now)
    end
    call('PEXPIRE', key, ttl)
    if state == 'SUCCESS' or state == 'FAILURE' or state == 'REVOKED' then
      local channel = indexed and done .. id or key
      if call(publish, channel, '+') > 0 then
        -- Sized before it is packed: a large record is not packed only to be dropped.
        local fields, size = call('HGETALL', key), 0
        for j = 1, #fields do size = size + #fields[j] end
        call(publish, channel, size <= PUBLISHED_MAX and cmsgpack.pack(fields) or state)
      end
    end
    -- A task enters the list when it starts, or when it ends without starting (revoked,
    -- dead-lettered); its later writes only change the record the list points to. A
    -- start is in the packed `run` group (backend/record.rs), or by name in older records.
    if claim ~= '0'
      or ((state == 'REVOKED' or state == 'FAILURE')
        and call('HEXISTS', key, 'run') == 0 and call('HEXISTS', key, 'started_ms') == 0) then
      if indexed then recent[#recent + 1] = id else code = 2 end
    end
    if state == 'SUCCESS' then succeeded = succeeded + 1 elseif state == 'FAILURE' then failed = failed + 1 end
  end
  out[i] = code
end
if not indexed then return out end
if #recent > 0 then
  call('LPUSH', KEYS[n + 1], unpack(recent))
  call('LTRIM', KEYS[n + 1], 0, tonumber(ARGV[3]) - 1)
end
if succeeded + failed > 0 then
  if succeeded > 0 then call('HINCRBY', KEYS[n + 2], 'succeeded', succeeded) end
  if failed > 0 then call('HINCRBY', KEYS[n + 2], 'failed', failed) end
  call('EXPIRE', KEYS[n + 2], 7200)
end
return out
