-- Moves one Celery message from its queue's burying list to the dead letters, as the
-- record the broker made of it (its envelope and the reason); 0 when it was moved
-- already (by another worker's recovery).
-- KEYS[1] the burying list; KEYS[2] the dead letters
-- ARGV[1] the message; ARGV[2] the dead-letter record; ARGV[3] how many the queue keeps
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return 1
