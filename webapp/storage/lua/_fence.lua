-- The start of every journal write by a worker (journal.py): only the attempt
-- that owns the answer writes. KEYS: active, journal. ARGV: message_id, attempt.
local owner = redis.call('HMGET', KEYS[1], 'message_id', 'attempt')
if owner[1] ~= ARGV[1] or owner[2] ~= ARGV[2] then return {'fenced'} end
