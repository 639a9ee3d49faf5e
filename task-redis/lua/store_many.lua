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
-- KEYS[n+3..] the processing lists the writes ack in, each named once
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
-- ARGV[5]    the length of the result hashes' prefix (a task's id is the rest of its key;
--            0 on a cluster, where no id is needed)
-- ARGV[6]    h, the number of heads: what writes have in common, sent once a call
-- ARGV[7..]  h heads of 6: ttl ms, writer ('' for none, and for writes that ack: the ack
--            is their fence), claim ('1'/'2'/'0'), state, shape s, and the number (1..)
--            of the processing list they ack in (0: they do not ack);
--            claim '1': a STARTED write (revoke check, listed); '2': the first write of
--            a run whose start is not tracked (listed); '0': neither
-- then, per write: its head's number (1..h), its receipt to ack (when its head acks),
--            then its fields: s = 0: a field count f and f field/value pairs; s > 0:
--            the values of the fields of shape s, in its order (the common writes: their
--            field names are written into this script, not sent with every write).
-- Every argument costs Redis a parse, an object and a Lua string, so what writes share
-- goes once a call; a head is found by table lookup of its number (tonumber is strtod).
-- The recent-tasks index and the counters are written once per call, not per write; a
-- task is listed when it starts (or ends unstarted), not at every write.
-- Written in after the next line when the script loads, from backend.rs's WRITE_SHAPES:
-- @shapes: SHAPE_LEN and store_shaped(shape, key, state, first)
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
local skip = tonumber(ARGV[5]) + 1
local heads = {}
local a = 7
for h = 1, tonumber(ARGV[6]) do
  local ack = tonumber(ARGV[a + 5])
  heads[tostring(h)] = {
    ttl = ARGV[a], writer = ARGV[a + 1], claim = ARGV[a + 2], state = ARGV[a + 3],
    shape = tonumber(ARGV[a + 4]), acks = ack > 0 and KEYS[n + 2 + ack],
  }
  a = a + 6
end
for i = 1, n do
  local head = heads[ARGV[a]]
  local key, ttl, writer, claim, state, shape, acks =
    KEYS[i], head.ttl, head.writer, head.claim, head.state, head.shape, head.acks
  local receipt, id
  if acks then
    receipt = ARGV[a + 1]
    a = a + 2
  else
    a = a + 1
  end
  local first, f = a, 0
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
  if acks then
    if call('LREM', acks, '1', receipt) == 0 then code = 0 else current = call('HGET', key, 'state') end
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
      local channel = key
      if indexed then
        id = string.sub(key, skip)
        channel = done .. id
      end
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
      if indexed then recent[#recent + 1] = id or string.sub(key, skip) else code = 2 end
    end
    if state == 'SUCCESS' then succeeded = succeeded + 1 elseif state == 'FAILURE' then failed = failed + 1 end
  end
  out[i] = code
end
if not indexed then return out end
-- The list is trimmed once it is past its cap, not by every call: a call of its own that
-- would do nothing while the list is shorter.
if #recent > 0 then
  local cap = tonumber(ARGV[3])
  if call('LPUSH', KEYS[n + 1], unpack(recent)) > cap then call('LTRIM', KEYS[n + 1], 0, cap - 1) end
end
-- The minute's counters get their TTL from the call that creates a field of theirs (a
-- count equal to its increment was absent), the first of the minute among them.
if succeeded + failed > 0 then
  local created = false
  if succeeded > 0 then created = call('HINCRBY', KEYS[n + 2], 'succeeded', succeeded) == succeeded end
  if failed > 0 then created = call('HINCRBY', KEYS[n + 2], 'failed', failed) == failed or created end
  if created then call('EXPIRE', KEYS[n + 2], 7200) end
end
return out
