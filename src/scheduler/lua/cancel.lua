--[[
  cancel: stop a task that has not started firing. SCHEDULED leaves the schedule; DUE stays
  in the stream, where claim drops it. A task already FIRING, FIRED or DEAD is refused, so
  a successful cancel means the task never prints. Cancelling twice is harmless.

  KEYS[1]  the partition's schedule
  KEYS[2]  the task's hash
  KEYS[3]  the partition's totals hash (`cancelled` counts tasks this cancelled)
  KEYS[4]  the partition's cancelled index (task id by endedAt ms; entries older than the retention trimmed)
  ARGV[1]  task id
  ARGV[2]  retention ms for the cancelled task
  ARGV[3]  idempotency key prefix (`{P:n}:idem:`)

  Reply {code, field, value, field, value, ...}  the task's hash after the call, message joined
    code  'OK' | 'NOT_FOUND' | 'TOO_LATE'
]]
local status = redis.call('HGET', KEYS[2], 's')
if not status then return {'NOT_FOUND'} end
local code = 'OK'
if status == 'SCHEDULED' or status == 'DUE' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], 's', 'CANCELLED', 'x', now)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  indexEnded(KEYS[4], ARGV[1], now, tonumber(ARGV[2]))
  local idem = redis.call('HGET', KEYS[2], 'k')
  if idem then redis.call('PEXPIRE', ARGV[3] .. idem, tonumber(ARGV[2])) end
elseif status ~= 'CANCELLED' then
  code = 'TOO_LATE'
end
local reply = readTask(KEYS[2])
table.insert(reply, 1, code)
return reply
