#!lua
--[[
  promote: move up to `limit` tasks whose due time has come (by Redis TIME, the only
  clock) from the partition's schedule to its due stream (they read as DUE from then on). Any number of
  workers may call it at once: it is atomic, so each task moves once and no lock is needed.

  KEYS[1]  the partition's schedule (sorted set: member -> due ms, task-state.lua)
  KEYS[2]  the partition's due stream: one entry per chunk of tasks moved, in due order,
           its field `id` naming them (`id/g id/g ...`, task-state.lua)
  ARGV[1]  limit: most tasks moved per call
  ARGV[2]  chunk: most tasks per due entry

  Reply {moved, nextDueMs, nowMs}
    moved      tasks moved to the stream
    nextDueMs  due time of the schedule's head after the move, -1 when empty
    nowMs      Redis time of the move, so callers aim timers without trusting their clock
]]
local now = redisNowMs()
local moved, nextDue = promoteDue(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), now)
return {moved, nextDue, now}
