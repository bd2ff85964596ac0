--[[
  promote: move up to `limit` tasks whose due time has come (by Redis TIME, the only
  clock) from the partition's schedule to its due stream, and mark them DUE. Any number of
  workers may call it at once: it is atomic, so each task moves once and no lock is needed.

  KEYS[1]  the partition's schedule (sorted set: task id -> due ms)
  KEYS[2]  the partition's due stream
  ARGV[1]  limit: most tasks moved per call
  ARGV[2]  task key prefix (`{P:n}:task:`)

  Reply {moved, nextDueMs, nowMs}
    moved      tasks moved to the stream
    nextDueMs  due time of the schedule's head after the move, -1 when empty
    nowMs      Redis time of the move, so callers aim timers without trusting their clock
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  -- Every id in the schedule is a SCHEDULED task (schedule, cancel and reschedule keep the
  -- two in step), so its status is not read here. Were its hash gone all the same (evicted
  -- by a maxmemory policy), claim finds no due time and drops the entry.
  for _, id in ipairs(ids) do
    local entry = redis.call('XADD', KEYS[2], '*', 'id', id)
    redis.call('HSET', ARGV[2] .. id, 's', 'DUE', 'e', entry)
  end
end

local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nextDue = -1
if head[2] then nextDue = tonumber(head[2]) end
return {#ids, nextDue, now}
