-- After a Celery chord's callback was sent: while the claim is still ours, the chord's
-- keys go and a done marker stays (a late copy of a member does not send it again).
-- KEYS: .c (claim) .j .t .s .d; ARGV[1] the token; ARGV[2] the marker's expiry (s)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('SET', KEYS[1], 'done', 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
