-- Count one prompt in a rate-limit window; the window's first prompt starts its
-- expiry (limits.py). One command: redis-py's pipeline costs more CPU than the
-- round trip it would save.
-- KEYS: the window's counter. ARGV: ttl. Returns the count.
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
