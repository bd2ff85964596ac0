#!lua
--[[
  reschedule: give a task that has not started firing a new due time. A DUE task (promoted,
  its entry in the stream) goes back to SCHEDULED under a new generation, so claim drops its
  entry as stale. Publishes a wake-up when the task became the partition's head.

  Safe to run twice: each call has an id, and a call that moved the task leaves a record
  under it (expiring), so the call sent again after its answer was lost answers OK with the
  task as it is, even if it has fired since, and never moves it again. Past its deadline it
  writes nothing: its caller has answered UNAVAILABLE, and a newer reschedule may have been
  made since.

  KEYS[1]  the partition's schedule
  KEYS[2]  the task's hash
  KEYS[3]  the partition's firing hash: a task with a record there is FIRING
  KEYS[4]  this call's record
  ARGV[1]  deadline, Redis ms
  ARGV[2]  task id
  ARGV[3]  new due ms
  ARGV[4]  horizon ms
  ARGV[5]  wake channel
  ARGV[6]  partition number
  ARGV[7]  how long this call's record lives, ms (longer than the caller resends it)

  Reply {code, nowMs, field, value, ...}  the task after the call, as readTask gives it
    code  'OK' | 'NOT_FOUND' | 'TOO_LATE' | 'TIME_TOO_FAR' | 'EXPIRED' (past the deadline; no fields)
]]
local now = redisNowMs()
if now > tonumber(ARGV[1]) then return {'EXPIRED', now} end
local schedule, key, firing, id, due = KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3]
local current = redis.call('HMGET', key, 's', 'g')
local status = current[1]
if not status then return {'NOT_FOUND', now} end
local code = 'OK'
if redis.call('EXISTS', KEYS[4]) == 1 then
  -- This very call already moved the task: answer as it did.
elseif (status ~= 'SCHEDULED' and status ~= 'DUE') or redis.call('HEXISTS', firing, id) == 1 then
  code = 'TOO_LATE'
elseif tonumber(due) > now + tonumber(ARGV[4]) then
  code = 'TIME_TOO_FAR'
else
  local generation = current[2]
  local fields = {'s', 'SCHEDULED', 't', due}
  if status == 'DUE' or not redis.call('ZSCORE', schedule, scheduleMember(id, generation)) then
    -- Promoted: its entry is in the stream, and a new generation makes it stale.
    generation = (tonumber(generation) or 0) + 1
    fields[5], fields[6] = 'g', generation
    redis.call('HDEL', key, 'e')
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('ZADD', schedule, due, scheduleMember(id, generation))
  redis.call('SET', KEYS[4], 1, 'PX', ARGV[7])
  wakeIfHead(schedule, ARGV[5], ARGV[6], tonumber(due))
end
return taskReply(code, now, key, id, schedule, firing)
