-- Ask the active generation to stop; its writer sees it on its next write (jobs.py).
-- KEYS: active. ARGV: message_id. Returns 1 if that message is the active one.
if redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 1
end
return 0
