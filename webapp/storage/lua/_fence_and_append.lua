-- The start of every stream write (append.lua, finish.lua): fence, dedupe, append, notify.
-- KEYS: stream, active, meta.
-- ARGV: message_id, attempt, seq, event, data, channel, session_id.
-- Leaves `active` (message_id, attempt, cancel, seq) and the new entry's `id`
-- for the script that includes it.
local active = redis.call('HMGET', KEYS[2], 'message_id', 'attempt', 'cancel', 'seq')
if active[1] ~= ARGV[1] or active[2] ~= ARGV[2] then
  -- a retry of this attempt's final write, whose reply was lost, succeeded
  local done = redis.call('HMGET', KEYS[3], 'done_message_id', 'done_attempt', 'done_seq', 'last_id')
  if done[1] == ARGV[1] and done[2] == ARGV[2] and tonumber(done[3]) >= tonumber(ARGV[3]) then
    return {done[4], '0'}
  end
  return {'', '0'}
end
if tonumber(active[4] or '0') >= tonumber(ARGV[3]) then
  -- a retry of a write that went through: answer as it did
  return {redis.call('HGET', KEYS[3], 'last_id'), active[3] or '0'}
end
local prev = redis.call('HGET', KEYS[3], 'last_id')
if prev and redis.call('EXISTS', KEYS[1]) == 0 then
  -- the stream expired since: everything up to its last id is gone
  redis.call('HSET', KEYS[3], 'floor', prev)
end
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[4], 'data', ARGV[5])
redis.call('HSET', KEYS[3], 'last_id', id)
redis.call('HSET', KEYS[2], 'seq', ARGV[3])
redis.call('PERSIST', KEYS[1])
-- The notice (keys.py, `Notice`): session_id prev_id id event data.
redis.call('PUBLISH', ARGV[6],
  ARGV[7] .. ' ' .. (prev or '0-0') .. ' ' .. id .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
