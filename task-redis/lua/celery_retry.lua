-- A Rust-side retry of a held Celery message: the held entry leaves the worker's
-- processing list (fenced: 0 when it is no longer held) and the next try, in Celery's
-- format, goes to the back of kombu's list (LPUSH, where Celery's own retry puts it).
-- KEYS[1] the processing list; KEYS[2] kombu's list
-- ARGV[1] the held entry; ARGV[2] the next try
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
