-- Redis server time in ms, as `now`: leases never depend on worker clocks.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
