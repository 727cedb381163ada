-- Move a tool call on: mark it running before it runs, or record its result
-- (journal.py). A call with a result never changes again.
-- KEYS: active, journal. ARGV: message_id, attempt, call_id, 'start' or
-- 'result', and for a result: its JSON and its status. The result stays text:
-- cjson would turn an empty list into an object, or round a big number.
-- Returns {'ok'}, {'final', record} (it has a result already),
-- {'running', record} ('start' only: an attempt started it and left no result),
-- {'unknown'} or {'fenced'}.
-- include: _fence.lua
local field = 'call:' .. ARGV[3]
local raw = redis.call('HGET', KEYS[2], field)
if not raw then return {'unknown'} end
local call = cjson.decode(raw)
if call.result then return {'final', raw} end
if ARGV[4] == 'start' then
  if call.status == 'running' then return {'running', raw} end
  call.status = 'running'
  call.attempt = tonumber(ARGV[2])
else
  call.result = ARGV[5]
  call.status = ARGV[6]
end
redis.call('HSET', KEYS[2], field, cjson.encode(call))
return {'ok'}
