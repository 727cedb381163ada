-- Append one event of the active attempt (writer.py).
-- Returns {entry id, or '' when fenced off; '1' if a cancel was requested}.
-- include: _fence_and_append.lua
return {id, active[3] or '0'}
