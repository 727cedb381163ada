-- Put newly taken jobs under lease, only those still processing (jobs.py).
-- KEYS: processing, leases. ARGV: ttl_ms, raw job... Returns how many were leased.
-- include: _now_ms.lua
local leased = 0
for i = 2, #ARGV do
  if redis.call('LPOS', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[i])
    leased = leased + 1
  end
end
return leased
