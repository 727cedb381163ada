-- Take back a job whose lease is still expired (or any, when its own worker hands
-- it back: force = 1), and queue its next attempt (jobs.py).
-- KEYS: processing, leases, queued. ARGV: old raw, new raw ('' to drop), force.
-- Returns 1 if this call took the job.
-- include: _now_ms.lua
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if ARGV[3] ~= '1' and (not expiry or tonumber(expiry) > now) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then redis.call('LPUSH', KEYS[3], ARGV[2]) end
return 1
