-- An answer ended: its journal is kept while its stream is, then forgotten
-- (journal.py). A decision sent meanwhile still hears `not_waiting`.
-- KEYS: active, journal. ARGV: message_id, seconds.
-- Returns 1, or 0 when the journal is another answer's (left as it is).
if redis.call('HGET', KEYS[2], 'message_id') ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
