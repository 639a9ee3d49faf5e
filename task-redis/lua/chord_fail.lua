-- Closes a chord as failed, so its callback is never sent. Returns 1 when this call
-- closed it, 0 when it was closed already or is unknown (expired: never recreated).
-- KEYS[1] the chord's hash
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return redis.call('HSETNX', KEYS[1], 'closed', 'failed')
