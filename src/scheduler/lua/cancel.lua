#!lua
--[[
  cancel: stop a task that has not started firing. SCHEDULED leaves the schedule; DUE stays
  in the stream, where claim drops it. A task already FIRING, FIRED or DEAD is refused, so
  a successful cancel means the task never prints. Cancelling twice is harmless, so a resent
  call answers what the first did. Past its deadline it writes nothing: its caller has
  answered UNAVAILABLE.

  KEYS[1]  the partition's schedule
  KEYS[2]  the task's hash
  KEYS[3]  the partition's totals hash (`cancelled` counts tasks this cancelled)
  KEYS[4]  the partition's cancelled index (task id by endedAt ms; entries older than the retention trimmed)
  KEYS[5]  the partition's firing hash: a task with a record there is FIRING
  ARGV[1]  deadline, Redis ms
  ARGV[2]  task id
  ARGV[3]  retention ms for the cancelled task
  ARGV[4]  idempotency key prefix (`{P:n}:idem:`)

  Reply {code, nowMs, field, value, field, value, ...}  the task after the call, as readTask gives it
    code  'OK' | 'NOT_FOUND' | 'TOO_LATE' | 'EXPIRED' (past the deadline; no fields)
]]
local now = redisNowMs()
if now > tonumber(ARGV[1]) then return {'EXPIRED', now} end
local f = redis.call('HMGET', KEYS[2], 's', 'k', 'g')
local status = f[1]
if not status then return {'NOT_FOUND', now} end
local code = 'OK'
if (status == 'SCHEDULED' or status == 'DUE') and redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then
  redis.call('ZREM', KEYS[1], scheduleMember(ARGV[2], f[3]))
  endTask(KEYS[2], ARGV[2], 'CANCELLED', now, tonumber(ARGV[3]), f[2] and ARGV[4] .. f[2], KEYS[4], KEYS[3], 'cancelled')
elseif status ~= 'CANCELLED' then
  code = 'TOO_LATE'
end
return taskReply(code, now, KEYS[2], ARGV[2], KEYS[1], KEYS[5])
