-- The attempt takes the session's stream over, from sequence number 0 (jobs.py).
-- KEYS: active. ARGV: message_id, attempt. Returns 1, or 0 if the attempt is stale:
-- an attempt of the same number or a later one took it already (only one
-- writer per number, or their sequence numbers would collide).
local active = redis.call('HMGET', KEYS[1], 'message_id', 'attempt')
if active[1] ~= ARGV[1] then return 0 end
if tonumber(active[2] or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'attempt', ARGV[2], 'seq', '0')
return 1
