--[[
  reschedule: give a task that has not started firing a new due time. A DUE task goes back
  to SCHEDULED and loses its stream entry (claim drops the stale entry). Publishes a
  wake-up when the task became the partition's head.

  KEYS[1]  the partition's schedule
  KEYS[2]  the task's hash
  ARGV[1]  task id
  ARGV[2]  new due ms
  ARGV[3]  horizon ms
  ARGV[4]  wake channel
  ARGV[5]  partition number

  Reply {code, field, value, ...}  the task's hash after the call, message joined
    code  'OK' | 'NOT_FOUND' | 'TOO_LATE' | 'TIME_TOO_FAR'
]]
local status = redis.call('HGET', KEYS[2], 's')
if not status then return {'NOT_FOUND'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(ARGV[2])
local code = 'OK'
if status ~= 'SCHEDULED' and status ~= 'DUE' then
  code = 'TOO_LATE'
elseif due > now + tonumber(ARGV[3]) then
  code = 'TIME_TOO_FAR'
else
  redis.call('HSET', KEYS[2], 's', 'SCHEDULED', 't', ARGV[2])
  redis.call('HDEL', KEYS[2], 'e')
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)
  if head[1] == ARGV[1] then
    redis.call('PUBLISH', ARGV[4], ARGV[5] .. ':' .. ARGV[2])
  end
end
local reply = readTask(KEYS[2])
table.insert(reply, 1, code)
return reply
