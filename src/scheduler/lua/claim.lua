--[[
  claim: the step before printing. For each entry a worker read from a due stream, mark
  its task FIRING (recording the attempt, the worker and the fire time), or drop the entry
  when the task no longer wants firing: cancelled, rescheduled (the entry is stale), gone,
  or already fired. A task still FIRING from an earlier delivery that has used up its
  deliveries becomes DEAD instead. Because this runs atomically against cancel, a
  cancelled task is never claimed and a claimed task can no longer be cancelled.

  A task FIRING for another worker is taken over only when that worker has been silent for
  the reclaim idle time while this one has beaten steadily for as long. A pause of Redis
  itself silences every worker alike, so it makes nobody take over (and print again) what
  a live worker is about to commit; such an entry is handed back to that worker (XCLAIM),
  which fires its own abandoned entries, and is counted as deferred.

  KEYS[1]  the partition's due stream
  KEYS[2]  the partition's liveness hash (see heartbeat.lua)
  ARGV[1]  consumer group
  ARGV[2]  task key prefix (`{P:n}:task:`)
  ARGV[3]  this worker's name
  ARGV[4]  maximum deliveries
  ARGV[5]  retention ms for tasks that end DEAD
  ARGV[6]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[7]  reclaim idle ms
  ARGV[8 ..] pairs: entry id, task id

  Reply {fire, dead, dropped, deferred}
    fire     flat list of 7-tuples to print: task id, entry id, message, due ms, fired-at ms,
             attempts, created-at ms
    dead     flat list of task ids that became DEAD
    dropped  number of entries acknowledged without firing
    deferred number of entries handed back to their worker, which may still be alive
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stream, group, prefix = KEYS[1], ARGV[1], ARGV[2]
local worker, maxDeliveries, retention = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])

local idle = tonumber(ARGV[7])

-- The last beat and the steady-since time of a worker, or nil.
local function liveness(name)
  local value = redis.call('HGET', KEYS[2], name)
  if not value then return nil end
  local last, since = string.match(value, '^(%d+):(%d+)$')
  return tonumber(last), tonumber(since)
end

local _, mySince = liveness(worker)
local steady = mySince ~= nil and now - mySince >= idle

local fire, dead, dropped, deferred = {}, {}, 0, 0
for i = 8, #ARGV, 2 do
  local entry, id = ARGV[i], ARGV[i + 1]
  local key = prefix .. id
  local f = redis.call('HMGET', key, 's', 'e', 'm', 't', 'a', 'k', 'w', 'c')
  local status = f[1]
  -- A hash without a due time is what promote leaves of a task whose hash had vanished.
  if not f[4] then
    if status then redis.call('DEL', key) end
    status = nil
  end
  local takeover = status == 'FIRING' and f[7] ~= worker
  local ownerBeat = nil
  if takeover then ownerBeat = liveness(f[7]) end
  if (status ~= 'DUE' and status ~= 'FIRING') or f[2] ~= entry then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    dropped = dropped + 1
  elseif takeover and (not steady or (ownerBeat ~= nil and now - ownerBeat < idle)) then
    redis.call('XCLAIM', stream, group, f[7], 0, entry, 'JUSTID')
    deferred = deferred + 1
  elseif status == 'FIRING' and tonumber(f[5]) >= maxDeliveries then
    redis.call('HSET', key, 's', 'DEAD', 'x', now)
    redis.call('HDEL', key, 'e')
    redis.call('PEXPIRE', key, retention)
    if f[6] then redis.call('PEXPIRE', ARGV[6] .. f[6], retention) end
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    dead[#dead + 1] = id
  else
    local attempts = (tonumber(f[5]) or 0) + 1
    redis.call('HSET', key, 's', 'FIRING', 'f', now, 'l', now - tonumber(f[4]), 'w', worker, 'a', attempts)
    local n = #fire
    fire[n + 1], fire[n + 2], fire[n + 3] = id, entry, readMessage(key, f[3])
    fire[n + 4], fire[n + 5], fire[n + 6], fire[n + 7] = tonumber(f[4]), now, attempts, tonumber(f[8])
  end
end
return {fire, dead, dropped, deferred}
