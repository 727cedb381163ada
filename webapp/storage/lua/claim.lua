-- Make a message the session's active generation, unless one is active (jobs.py).
-- KEYS: active, meta. ARGV: message_id, attempt, ttl.
-- Returns {the message id already active, or '' once claimed; '1' if the
-- session's previous claim never reached its final event (`done_message_id`,
-- written by finish.lua), else ''}.
local current = redis.call('HGET', KEYS[1], 'message_id')
if current then return {current, ''} end
local previous = redis.call('HGET', KEYS[2], 'claimed')
local finished = redis.call('HGET', KEYS[2], 'done_message_id')
redis.call('HSET', KEYS[1], 'message_id', ARGV[1], 'attempt', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'claimed', ARGV[1])
if previous and previous ~= finished then return {'', '1'} end
return {'', ''}
