-- Takes up to ARGV[1] Celery messages from kombu's lists of one queue, highest priority
-- first (kombu pushes on the left, so the oldest is on the right), each moved into this
-- worker's processing list for Celery messages in the same step: no message is ever
-- only in the worker's memory.
-- KEYS[1..n-2] kombu's lists of the queue (Q, Q\x06\x163, Q\x06\x166, Q\x06\x169)
-- KEYS[n-1]    the queue's paused flag: while it is set, nothing is taken
-- KEYS[n]      the processing list; each held as ARGV[2] (a marker no entry of
--              Celerity's starts with) then the message; returned so (the receipts)
local n = #KEYS
local proc = KEYS[n]
if redis.call('EXISTS', KEYS[n - 1]) == 1 then return {} end
n = n - 1
local max = tonumber(ARGV[1])
local out = {}
for i = 1, n - 1 do
  while #out < max do
    local m = redis.call('RPOP', KEYS[i])
    if not m then break end
    local held = ARGV[2] .. m
    redis.call('LPUSH', proc, held)
    out[#out + 1] = held
  end
end
return out
