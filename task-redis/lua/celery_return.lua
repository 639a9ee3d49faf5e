-- Gives one held Celery message (ARGV[1]) back to the front of kombu's list of its
-- queue and priority (the right end, taken next), without the marker it is held with
-- (ARGV[2]'s length). Fenced: 0 when it is no longer held, else 1.
-- KEYS[1] the processing list; KEYS[2] kombu's list of its priority
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], string.sub(ARGV[1], string.len(ARGV[2]) + 1))
return 1
