-- Record a step's whole model output, and a record for each of its tool calls
-- (journal.py). The first record of a step wins: a retried write gets it back.
-- KEYS: active, journal. ARGV: message_id, attempt, step, step JSON,
-- then call_id, call JSON pairs.
-- Returns {'ok'} or {'exists', the step JSON recorded first} or {'fenced'}.
-- include: _fence.lua
if redis.call('HGET', KEYS[2], 'message_id') ~= ARGV[1] then
  -- the journal of an earlier answer of the session: this answer starts a new one
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'message_id', ARGV[1])
end
local field = 'step:' .. ARGV[3]
local recorded = redis.call('HGET', KEYS[2], field)
if recorded then return {'exists', recorded} end
redis.call('HSET', KEYS[2], field, ARGV[4])
for i = 5, #ARGV, 2 do
  redis.call('HSETNX', KEYS[2], 'call:' .. ARGV[i], ARGV[i + 1])
end
return {'ok'}
