--[[
  task-state: prepended to every script (scripts.ts). Where a task's state lives at each
  step, so that a fired task costs as few writes as its promises allow:
  - SCHEDULED, CANCELLED, DEAD: the task's hash (status `s`, due time `t`, message `m`...,
    created `c`, idempotency key `k`, generation `g`, ended `x`; a DEAD task's attempts `a`,
    last fired-at `f` and worker `w`).
  - DUE is never written: a SCHEDULED task that is no longer in its schedule was promoted.
  - FIRING: the task's record in the partition's firing hash (recordPrefix below), written
    once per claimed batch; the task's hash is not touched.
  - FIRED: the task's hash again, with `f` and `w` written by the commit, and `a` only when
    not 1 (a task delivered once). Lateness `l` is f - t, put in by readers.
  A due entry names up to a chunk of tasks, each with the generation it was promoted at,
  in its field `id`: `id/g id/g ...` (one space between tasks); a schedule member is the
  id, with `/g` when g is above 0. Rescheduling a promoted task raises its generation, so
  the entry it left behind no longer matches and claim skips that task.
  (Hashes with status DUE, FIRING or FIRED, due entries of one task and due entries of a
  bare id were written by earlier versions and are still read: an entry of one task is a
  chunk of one.)
]]

-- A task's member in its schedule.
local function scheduleMember(id, generation)
  if generation == nil or generation == false or tonumber(generation) == 0 then return id end
  return id .. '/' .. generation
end

-- The value of a due entry promoted from a schedule member: always with its generation.
local function dueEntryValue(member)
  if string.find(member, '/', 1, true) then return member end
  return member .. '/0'
end

-- The tasks a due entry's value names, in order: an iterator of each one's value (`id/g`),
-- id and generation ('' for a bare id). One pattern per entry rather than a find and two
-- cuts per task: this runs for every task claimed.
local function dueEntryTasks(value)
  return string.gmatch(value, '(([^ /]+)/?([^ ]*))')
end

--[[
  A task's record in the firing hash: 'worker|attempts|firedAt|callId|idempotencyKey' (call
  ids and worker names hold no '|'; the key comes last, so it may). It starts with
  recordPrefix(worker, attempts), so a commit tells its own claim by a plain find; it is
  built from parts made once per call, since formatting a number in Lua costs more than the
  rest of a task's claim.
]]
local function recordPrefix(worker, attempts)
  return worker .. '|' .. attempts .. '|'
end

local function parseFiringRecord(value)
  if not value then return nil end
  local w, a, f, ci, k = string.match(value, '^([^|]*)|(%d+)|(%d+)|([^|]*)|(.*)$')
  if k == '' then k = nil end
  return {attempts = tonumber(a), firedAt = tonumber(f), callId = ci, worker = w, idem = k}
end

-- The record of a task an earlier version marked FIRING in its hash.
local function legacyFiringRecord(key)
  local h = redis.call('HMGET', key, 'a', 'f', 'ci', 'w', 'k')
  return {attempts = tonumber(h[1]) or 1, firedAt = tonumber(h[2]) or 0, callId = h[3] or '', worker = h[4] or '', idem = h[5] or nil}
end

-- Calls a variadic command on `key` (and `group`, when given: XACK) with `list` in slices of
-- 1000 groups of `width` values (within Lua's unpack limit); the replies, joined when they
-- are lists.
local function sliced(command, key, list, width, group)
  local replies = {}
  local step = 1000 * width
  for first = 1, #list, step do
    local last = math.min(first + step - 1, #list)
    local reply
    if group then
      reply = redis.call(command, key, group, unpack(list, first, last))
    else
      reply = redis.call(command, key, unpack(list, first, last))
    end
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do replies[#replies + 1] = value end
    end
  end
  return replies
end

--[[
  A task as a reader sees it: its hash as field, value pairs with the message joined, the
  status derived (DUE, FIRING) and, while FIRING, the attempt's fields (a, f, l, w) from its
  firing record. {} when the task is gone.
]]
local function readTask(key, id, schedule, firing)
  local all = redis.call('HGETALL', key)
  local fields, parts = {}, {}
  for i = 1, #all, 2 do
    local name = all[i]
    if name == 'm' then
      parts[1] = all[i + 1]
    elseif string.match(name, '^m%d+$') then
      parts[tonumber(string.sub(name, 2))] = all[i + 1]
    else
      fields[name] = all[i + 1]
    end
  end
  if parts[1] then fields.m = table.concat(parts) end
  local status = fields.s
  if status == 'SCHEDULED' or status == 'DUE' then
    local record = parseFiringRecord(redis.call('HGET', firing, id))
    if record then
      fields.s, fields.a, fields.f, fields.w = 'FIRING', record.attempts, record.firedAt, record.worker
      fields.l = record.firedAt - (tonumber(fields.t) or 0)
    elseif status == 'SCHEDULED' and not redis.call('ZSCORE', schedule, scheduleMember(id, fields.g)) then
      fields.s = 'DUE'
    end
  elseif status == 'FIRED' then
    fields.a = fields.a or 1
  end
  if fields.f and not fields.l then fields.l = tonumber(fields.f) - (tonumber(fields.t) or 0) end
  local pairs_ = {}
  for name, value in pairs(fields) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = value
  end
  return pairs_
end
