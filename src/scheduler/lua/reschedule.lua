#!lua
--[[
  reschedule: give a task that has not started firing a new due time. A DUE task goes back
  to SCHEDULED and loses its stream entry (claim drops the stale entry). Publishes a
  wake-up when the task became the partition's head.

  Safe to run twice: each call has an id, and the task keeps the ids of its last
  RECENT_CALLS reschedules (field r), so a call sent again after its answer was lost answers
  OK with the task as it is, even if it has fired since, and never moves it again. Past its
  deadline it writes nothing: its caller has answered UNAVAILABLE, and a newer reschedule
  may have been made since.

  KEYS[1]  the partition's schedule
  KEYS[2]  the task's hash
  ARGV[1]  deadline, Redis ms
  ARGV[2]  task id
  ARGV[3]  new due ms
  ARGV[4]  horizon ms
  ARGV[5]  wake channel
  ARGV[6]  partition number
  ARGV[7]  this call's id (no spaces)

  Reply {code, nowMs, field, value, ...}  the task's hash after the call, message joined
    code  'OK' | 'NOT_FOUND' | 'TOO_LATE' | 'TIME_TOO_FAR' | 'EXPIRED' (past the deadline; no fields)
]]
local RECENT_CALLS = 8
local now = redisNowMs()
if now > tonumber(ARGV[1]) then return {'EXPIRED', now} end
local current = redis.call('HMGET', KEYS[2], 's', 'r')
local status, recent = current[1], current[2] or ''
if not status then return {'NOT_FOUND', now} end
local callId = ARGV[7]
local code = 'OK'
if string.find(' ' .. recent .. ' ', ' ' .. callId .. ' ', 1, true) then
  -- This very call already moved the task: answer as it did.
elseif status ~= 'SCHEDULED' and status ~= 'DUE' then
  code = 'TOO_LATE'
elseif tonumber(ARGV[3]) > now + tonumber(ARGV[4]) then
  code = 'TIME_TOO_FAR'
else
  local ids = {callId}
  for id in string.gmatch(recent, '%S+') do
    if #ids == RECENT_CALLS then break end
    ids[#ids + 1] = id
  end
  redis.call('HSET', KEYS[2], 's', 'SCHEDULED', 't', ARGV[3], 'r', table.concat(ids, ' '))
  redis.call('HDEL', KEYS[2], 'e')
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  wakeIfHead(KEYS[1], ARGV[5], ARGV[6], tonumber(ARGV[3]))
end
return taskReply(code, now, KEYS[2])
