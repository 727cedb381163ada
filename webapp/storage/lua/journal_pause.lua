-- The answer waits for people or the front end (journal.py): unless every wait
-- was answered meanwhile, mark it paused. Its claim then lasts until a
-- decision, a cancel or a delete: no timer (API.md, Exactly once).
-- KEYS: active, journal. ARGV: message_id, attempt, waits JSON, call_id...
-- Returns {'paused'}, {'go_on'} (every call has its input already),
-- {'cancelled'} or {'fenced'}.
-- include: _fence.lua
-- A cancel asked before the pause found nothing paused to wake (journal_wake.lua):
-- the worker must end the answer now, or it would wait for a decision.
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return {'cancelled'} end
local open = false
for i = 4, #ARGV do
  local call = cjson.decode(redis.call('HGET', KEYS[2], 'call:' .. ARGV[i]))
  if not call.input then open = true end
end
if not open then return {'go_on'} end
redis.call('HSET', KEYS[2], 'paused', 'waiting', 'waits', ARGV[3])
redis.call('PERSIST', KEYS[1])
return {'paused'}
