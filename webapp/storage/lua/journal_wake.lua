-- Wake a paused answer without an input (a cancel): it is due to go on as the
-- returned attempt, which the caller queues (journal.py).
-- KEYS: active, journal. ARGV: message_id.
-- Returns the attempt to queue, or '' when the answer is not paused.
if redis.call('HGET', KEYS[1], 'message_id') ~= ARGV[1] then return '' end
local state = redis.call('HMGET', KEYS[2], 'message_id', 'paused', 'resume_attempt')
if state[1] ~= ARGV[1] then return '' end
if state[2] == 'resuming' then return state[3] end
if state[2] ~= 'waiting' then return '' end
local attempt = tostring(tonumber(redis.call('HGET', KEYS[1], 'attempt')) + 1)
redis.call('HSET', KEYS[2], 'paused', 'resuming', 'resume_attempt', attempt)
return attempt
