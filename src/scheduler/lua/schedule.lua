#!lua
--[[
  schedule: store one or more tasks of one partition and add them to its schedule.

  All or nothing: every task is checked (horizon, idempotency) before any is written.
  Safe to run twice: a task whose hash already exists (its id is chosen before the call, so
  this is the same call sent again) is left as it is, and so is one whose idempotency key is
  taken by the same message and time; either answers the existing id. Past its deadline it
  writes nothing: its caller has answered UNAVAILABLE. Publishes a wake-up when the earliest
  of the new tasks became the partition's head, so a worker re-aims its timer.

  KEYS[1]          the partition's schedule (sorted set: task id -> due ms)
  KEYS[2i], KEYS[2i+1]  task i's hash, task i's idempotency key (its hash key again when none)
  ARGV[1]          deadline, Redis ms: past it the call writes nothing
  ARGV[2]          horizon in ms: a due time later than Redis now + horizon is refused
  ARGV[3]          wake channel
  ARGV[4]          partition number (the wake-up message names it)
  ARGV[5]          task key prefix (`{P:n}:task:`), to read the task an idempotency key names
  ARGV[6]          'write', or 'check': check every task and answer as a write would, writing
                   nothing (the first step of a bulk that spans partitions)
  ARGV[7 + 4(i-1) ..] per task: id, message, due ms, idempotency key ('' for none)

  Replies (nowMs is Redis time when the call ran)
    {'OK', nowMs, id_1, created_1, id_2, created_2, ...}   created is 1, or 0 for an existing task
                                                           (a check answers {'OK', nowMs})
    {'TIME_TOO_FAR', nowMs, index}             task at index (1-based) is past the horizon
    {'IDEMPOTENCY_CONFLICT', nowMs, index, id} key already used by task id with another message or time
    {'EXPIRED', nowMs}                         past the deadline; nothing written
]]
-- The id, message and due time of the task at `key`; nil when it is gone.
local function messageAndTime(key, id)
  local fields = redis.call('HMGET', key, 'm', 't')
  if fields[1] then return {id, readMessage(key, fields[1]), tonumber(fields[2])} end
  return nil
end

local now = redisNowMs()
if now > tonumber(ARGV[1]) then return {'EXPIRED', now} end
local horizon = tonumber(ARGV[2])
local FIRST = 7
local count = (#ARGV - FIRST + 1) / 4

local existing = {}
local seen = {}
for i = 1, count do
  local base = FIRST + 4 * (i - 1)
  local message, due, idem = ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
  if due > now + horizon then
    return {'TIME_TOO_FAR', now, i}
  end
  if redis.call('EXISTS', KEYS[2 * i]) == 1 then
    existing[i] = ARGV[base]
  elseif idem ~= '' then
    local prior = seen[idem]
    if prior == nil then
      local id = redis.call('GET', KEYS[2 * i + 1])
      if id then prior = messageAndTime(ARGV[5] .. id, id) end
    end
    if prior then
      if prior[2] ~= message or prior[3] ~= due then
        return {'IDEMPOTENCY_CONFLICT', now, i, prior[1]}
      end
      existing[i] = prior[1]
    else
      seen[idem] = {ARGV[base], message, due}
    end
  end
end

local reply = {'OK', now}
if ARGV[6] == 'check' then return reply end
local earliest = nil
for i = 1, count do
  local base = FIRST + 4 * (i - 1)
  local id, message, due, idem = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  if existing[i] then
    reply[#reply + 1] = existing[i]
    reply[#reply + 1] = 0
  else
    local fields = messageFields(message)
    for _, value in ipairs({'t', due, 's', 'SCHEDULED', 'c', now}) do fields[#fields + 1] = value end
    if idem ~= '' then
      fields[#fields + 1] = 'k'
      fields[#fields + 1] = idem
      redis.call('SET', KEYS[2 * i + 1], id)
    end
    redis.call('HSET', KEYS[2 * i], unpack(fields))
    redis.call('ZADD', KEYS[1], due, id)
    local d = tonumber(due)
    if earliest == nil or d < earliest then earliest = d end
    reply[#reply + 1] = id
    reply[#reply + 1] = 1
  end
end

if earliest ~= nil then wakeIfHead(KEYS[1], ARGV[3], ARGV[4], earliest) end
return reply
