-- A paused answer goes on: its resume attempt takes the stream over, once, from
-- sequence number 0 (journal.py; begin.lua's counterpart for a paused answer).
-- Also how a cancel reaches a paused answer: nothing runs to see its flag, so the
-- cancel queues an attempt that ends it.
-- KEYS: active, journal. ARGV: message_id, attempt.
-- Returns 1, or 0 if that attempt is not the one due (a duplicate, or stale).
local state = redis.call('HMGET', KEYS[2], 'message_id', 'paused', 'resume_attempt')
if state[1] ~= ARGV[1] or state[2] ~= 'resuming' or state[3] ~= ARGV[2] then return 0 end
local active = redis.call('HMGET', KEYS[1], 'message_id', 'attempt')
if active[1] ~= ARGV[1] then return 0 end
-- A reaper's attempt of this number (its worker died between pausing and
-- acking) began already: it goes on instead, and finds the inputs.
if tonumber(active[2] or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[2], 'paused', 'waits', 'resume_attempt')
redis.call('HSET', KEYS[1], 'attempt', ARGV[2], 'seq', '0')
return 1
