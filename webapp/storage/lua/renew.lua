-- Renew leases that still exist: a job taken back stays taken back (jobs.py).
-- KEYS: leases. ARGV: ttl_ms, raw job...
-- include: _now_ms.lua
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
return #ARGV - 1
