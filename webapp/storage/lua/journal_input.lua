-- Give a waiting call its input: a person's decision or a client tool's output
-- (journal.py). Stored before the 202; the same input again is accepted, another
-- one is refused. When it was the last input a paused answer waited for, the
-- answer is due to go on as `resume_attempt`, which the caller queues.
-- KEYS: active, journal. ARGV: message_id, call_id, kind, input JSON, verdict
-- (what makes two inputs the same: approved or not, or the output itself).
-- Returns {'stored' or 'same', resume attempt or ''}, {'settled'},
-- {'not_waiting'} or {'unknown'}.
local raw = redis.call('HGET', KEYS[2], 'call:' .. ARGV[2])
if redis.call('HGET', KEYS[2], 'message_id') ~= ARGV[1] or not raw then return {'unknown'} end
local call = cjson.decode(raw)
if call.waits_for ~= ARGV[3] then return {'not_waiting'} end
local verdict = 'stored'
if call.input then
  if call.verdict ~= ARGV[5] then return {'settled'} end
  verdict = 'same'
elseif call.result or redis.call('HGET', KEYS[1], 'message_id') ~= ARGV[1] then
  return {'not_waiting'}  -- ended without it (a cancel): nothing waits any more
else
  call.input = ARGV[4]
  call.verdict = ARGV[5]
  redis.call('HSET', KEYS[2], 'call:' .. ARGV[2], cjson.encode(call))
end
local state = redis.call('HMGET', KEYS[2], 'paused', 'waits', 'resume_attempt')
if state[1] == 'resuming' then return {verdict, state[3]} end
if state[1] ~= 'waiting' then return {verdict, ''} end
for _, wait in ipairs(cjson.decode(state[2])) do
  local other = cjson.decode(redis.call('HGET', KEYS[2], 'call:' .. wait.call_id))
  if not other.input then return {verdict, ''} end
end
local attempt = tostring(tonumber(redis.call('HGET', KEYS[1], 'attempt')) + 1)
redis.call('HSET', KEYS[2], 'paused', 'resuming', 'resume_attempt', attempt)
return {verdict, attempt}
