-- Undo a claim whose prompt could not be stored or queued (jobs.py).
-- KEYS: active. ARGV: message_id. Returns 1 if released.
if redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
