-- Append the final event (end or error), release the session, apply retention (writer.py).
-- ARGV continued: stream_ttl, maxlen, meta_ttl.
-- Returns {entry id, or '' when fenced off; '0'}.
-- include: _fence_and_append.lua
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'done_message_id', ARGV[1], 'done_attempt', ARGV[2], 'done_seq', ARGV[3])
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[9])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[9])
  redis.call('HSET', KEYS[3], 'floor', gone[#gone][1])
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[10])
return {id, '0'}
