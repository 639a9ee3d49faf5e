-- Reserves the next start slot of a rate limit (GCRA with reservation): starts are
-- spaced by the interval across every worker, by Redis's clock. Returns 0 to start
-- now, or the reserved slot (Unix ms) to start at; the caller waits in the delayed
-- set until then, so nothing spins and no worker slot is held.
-- KEYS[1] the limiter (the theoretical arrival time of the next start, Unix ms)
-- ARGV[1] the interval between two starts, in ms (may be fractional)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
if tat > now then
  return math.ceil(tat)
end
return 0
