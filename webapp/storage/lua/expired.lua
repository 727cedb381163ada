-- Adopt processing jobs that have no lease (their worker died between BLMOVE and
-- leasing them), then list the jobs whose lease ran out (jobs.py).
-- KEYS: processing, leases. ARGV: ttl_ms, limit.
-- include: _now_ms.lua
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, 999)) do
  if not redis.call('ZSCORE', KEYS[2], raw) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), raw)
  end
end
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
