-- Puts one dead letter back in its queue as a new message (never delivered) at its
-- priority, if it is still a dead letter. Returns 1, or 0 when it is gone.
-- KEYS[1] the dead-letter list
-- KEYS[2] the queue's ready list of the message's priority
-- KEYS[3] the queue's wake list
-- ARGV[1] the dead-letter record, exactly; ARGV[2] the entry to queue (header + envelope)
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('RPUSH', KEYS[3], '1')
end
return 1
