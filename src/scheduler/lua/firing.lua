--[[
  firing: prepended to every script (scripts.ts), for the steps that promote, read and
  claim. promote.lua and claim.lua each run one of them; take.lua runs all three in one
  call, for a worker that is idle when a task comes due, and claim.lua may read and claim
  in one, for a worker working through a backlog.
]]

-- Redis time in ms: the only clock that decides what is due.
local function redisNowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

--[[
  Moves up to `limit` tasks whose time has come from a schedule to its due stream, `chunk`
  tasks per entry at most (in due order: `id/g id/g ...`). Returns the number of tasks moved
  and the due time of the schedule's new head (-1 when empty). The task's hash is not
  written: no longer in its schedule, a SCHEDULED task reads as DUE (task-state.lua), and
  its entry carries the generation claim checks it against.
]]
local function promoteDue(schedule, stream, limit, chunk, now)
  local members = redis.call('ZRANGE', schedule, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  if #members > 0 then
    -- From -inf, the first `limit` by score are ranks 0 to #members - 1: one walk, no lookups.
    redis.call('ZREMRANGEBYRANK', schedule, 0, #members - 1)
    for first = 1, #members, chunk do
      local values = {}
      for i = first, math.min(first + chunk - 1, #members) do values[#values + 1] = dueEntryValue(members[i]) end
      redis.call('XADD', stream, '*', 'id', table.concat(values, ' '))
    end
  end
  local head = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
  local nextDue = -1
  if head[2] then nextDue = tonumber(head[2]) end
  return #members, nextDue
end

--[[
  Ends a task as CANCELLED or DEAD at `now`: its status and end time, its expiry (and its
  idempotency key's) after `retention`, its place in the status' index (score: when it ended;
  entries older than the retention are dropped), and the running total's field `counted`;
  `extra` are more field, value pairs to write with the status.
]]
local function endTask(key, id, status, now, retention, idemKey, index, totals, counted, extra)
  local fields = {'s', status, 'x', now}
  for _, value in ipairs(extra or {}) do fields[#fields + 1] = value end
  redis.call('HSET', key, unpack(fields))
  redis.call('PEXPIRE', key, retention)
  if idemKey then redis.call('PEXPIRE', idemKey, retention) end
  redis.call('ZADD', index, now, id)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - retention))
  redis.call('HINCRBY', totals, counted, 1)
end

-- Drops a due entry no worker will fire: acknowledged and deleted from its stream.
local function dropEntry(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

-- Publishes on a channel: a cluster's channels carry their partition's hash tag and are
-- sharded (SPUBLISH reaches the partition's shard only); one Redis's are plain.
local function publish(channel, message)
  redis.call(string.sub(channel, 1, 1) == '{' and 'SPUBLISH' or 'PUBLISH', channel, message)
end

-- Tells every worker that a partition's schedule has a new head due at `due`, when it has.
local function wakeIfHead(schedule, channel, partition, due)
  local head = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) >= due then publish(channel, partition .. ':' .. due) end
end

-- A write's reply: its code, Redis time, then the task as readTask puts it.
local function taskReply(code, now, key, id, schedule, firing)
  local reply = readTask(key, id, schedule, firing)
  table.insert(reply, 1, now)
  table.insert(reply, 1, code)
  return reply
end

--[[
  Due entries of a stream no worker has read, delivered to `worker` as XREADGROUP delivers
  them; a flat list of entry id, entry value pairs. Reads `count` entries, then, while they
  name fewer than `tasks` tasks (entries of few tasks: promoted as they came due), more at
  the tasks per entry seen so far, READ_ROUNDS reads at most.
]]
local READ_ROUNDS = 4
local function readUnread(stream, group, worker, count, tasks)
  local entries, named = {}, 0
  for _ = 1, READ_ROUNDS do
    local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', count, 'STREAMS', stream, '>')
    local items = read and read[1] and read[1][2] or {}
    for _, item in ipairs(items) do
      entries[#entries + 1] = item[1]
      entries[#entries + 1] = item[2][2]
      -- Tasks are one space apart.
      local _, spaces = string.gsub(item[2][2], ' ', '')
      named = named + spaces + 1
    end
    if #items < count or named >= tasks then break end
    count = math.ceil((tasks - named) / (named / (#entries / 2)))
  end
  return entries
end

--[[
  What claim.lua and take.lua share: the KEYS and ARGV every acquiring call takes, in the same
  places.

  KEYS[1]  the partition's due stream (an entry names one task or more: `id/g id/g ...`)
  KEYS[2]  the partition's liveness hash (see heartbeat.lua)
  KEYS[3]  the partition's totals hash (`dead` counts tasks that became DEAD)
  KEYS[4]  the partition's DEAD index (task id by endedAt ms)
  KEYS[5]  this call's record: the entries it read, kept so that the call sent again (its
           answer was lost) claims the same ones
  KEYS[6]  the partition's firing hash (task id -> firing record, task-state.lua)
  ARGV[1]  deadline, Redis ms: past it the call acquires nothing
  ARGV[2]  consumer group
  ARGV[3]  task key prefix (`{P:n}:task:`)
  ARGV[4]  this worker's name
  ARGV[5]  maximum deliveries
  ARGV[6]  retention ms for tasks that end DEAD
  ARGV[7]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[8]  reclaim idle ms
  ARGV[9]  call id: unique per call; the same call sent again claims what it claimed before
           without counting another delivery
  ARGV[10] how long the call's record lives, ms (longer than the caller resends it)
  ARGV[11] this worker process's call id prefix: a task FIRING for this worker under a call
           of this process was never printed (what this process printed it holds until its
           commit ends it), so claiming it again is the same delivery. '' counts a delivery
           whatever the call: the worker spends one for a task whose print failed.
]]
local function acquireOptions()
  return {
    stream = KEYS[1], liveness = KEYS[2], totals = KEYS[3], deadIndex = KEYS[4], record = KEYS[5], firing = KEYS[6],
    deadline = tonumber(ARGV[1]), group = ARGV[2], prefix = ARGV[3], worker = ARGV[4],
    maxDeliveries = tonumber(ARGV[5]), retention = tonumber(ARGV[6]), idemPrefix = ARGV[7],
    idle = tonumber(ARGV[8]), callId = ARGV[9], recordTtl = tonumber(ARGV[10]), processPrefix = ARGV[11]
  }
end

-- Unread entries for the call (`count` of them, more while they name fewer than `tasks`
-- tasks, see readUnread), read once: the call sent again finds what it
-- read the first time in its record, so it claims the same entries and no others. The
-- record holds the entry id, value pairs one a line (a value holds spaces); a record of an
-- earlier version, a value of one task each, is one line split by spaces.
local function readForCall(o, count, tasks)
  local recorded = redis.call('GET', o.record)
  if recorded then
    local entries = {}
    local separator = string.find(recorded, '\n', 1, true) and '[^\n]+' or '%S+'
    for part in string.gmatch(recorded, separator) do entries[#entries + 1] = part end
    return entries
  end
  local entries = readUnread(o.stream, o.group, o.worker, count, tasks or count)
  if #entries > 0 then redis.call('SET', o.record, table.concat(entries, '\n'), 'PX', o.recordTtl) end
  return entries
end

--[[
  Claims entries a worker read from a due stream (claim.lua says how and why). `entries` is
  a flat list of entry id, entry value pairs, a value naming one task or more; `o` is
  acquireOptions(). A claimed task gets a record in the firing hash (one HSET per batch)
  holding its attempt, the worker and the call id: the same call sent again after its
  answer was lost, or another call of the same process, claims its tasks again without
  counting a delivery.

  An entry is decided whole. When a task of it is FIRING for another worker that may still
  be alive, the entry is handed back to that worker (the live tasks of an entry were claimed
  together, so they share their owner) and none of its tasks fires here. Otherwise each
  task fires, ends DEAD, or is skipped (it no longer wants firing), and the entry is dropped
  only when none of its tasks fires: its commit acknowledges it once every task fired from
  it is committed. With `partial`, the values name only some of their entries' tasks (the
  others are elsewhere in hand): no entry is dropped, and one whose tasks all ended waits
  for the sweep, whose claim sees it whole.

  Returns fire, dead, dropped (tasks skipped), deferred (tasks handed back) as claim.lua
  replies them.
]]
local function claimEntries(o, entries, now, partial)
  local stream, group, prefix, worker = o.stream, o.group, o.prefix, o.worker

  -- The last beat and the steady-since time of a worker, or nil.
  local function liveness(name)
    local value = redis.call('HGET', o.liveness, name)
    if not value then return nil end
    local last, since = string.match(value, '^(%d+):(%d+)$')
    return tonumber(last), tonumber(since)
  end

  local _, mySince = liveness(worker)
  local steady = mySince ~= nil and now - mySince >= o.idle

  local ownCalls = o.processPrefix
  local function sameProcess(callId)
    return ownCalls ~= '' and string.sub(callId, 1, #ownCalls) == ownCalls
  end

  -- Every task of every entry, in order: its value, id, generation and entry (index in `entries`).
  local values, ids, generations, entryOf, count = {}, {}, {}, {}, 0
  for i = 2, #entries, 2 do
    local before = count
    for value, id, generation in dueEntryTasks(entries[i]) do
      count = count + 1
      values[count], ids[count], generations[count], entryOf[count] = value, id, generation, i - 1
    end
    -- An entry naming no task (none is written so) has nothing to fire.
    if count == before and not partial then dropEntry(o.stream, o.group, entries[i - 1]) end
  end
  local records = sliced('HMGET', o.firing, ids, 1)

  local fire, dead, dropped, deferred = {}, {}, 0, 0
  local written, ended = {}, {}
  -- What follows the attempts in a record this call writes, and a fresh claim's whole record
  -- when the task has no idempotency key: made once, not per task.
  local recordTail = '|' .. now .. '|' .. o.callId .. '|'
  local freshRecord = worker .. '|1' .. recordTail
  -- A task to print, three values in the reply's fire list (see claim.lua); `tail` is what
  -- follows its due and created-at times in its third: its fired-at, attempts and entry.
  local function addFire(value, key, f, tail)
    local n, message = #fire, f[3]
    if message and #message >= MESSAGE_PART then message = readMessage(key, message) end
    fire[n + 1], fire[n + 2], fire[n + 3] = value, message, f[4] .. ' ' .. (f[5] or '0') .. tail
  end

  -- What to do with task n, without doing it: 'skip', 'first', 'same', 'dead', 'again', or
  -- 'defer' (then the owner too); the task's hash fields and record along.
  local function decide(n, key)
    local f = redis.call('HMGET', key, 's', 'g', 'm', 't', 'c', 'k')
    local status = f[1]
    -- A hash without a due time is what an earlier promote left of a vanished task.
    if status and not f[4] then
      redis.call('DEL', key)
      status = nil
    end
    local current
    if generations[n] ~= '' then current = (f[2] or '0') == generations[n] else current = redis.call('HGET', key, 'e') == entries[entryOf[n]] end
    if not current or (status ~= 'SCHEDULED' and status ~= 'DUE' and status ~= 'FIRING') then return 'skip' end
    local record = records[n] and parseFiringRecord(records[n])
    if not record and status == 'FIRING' then record = legacyFiringRecord(key) end
    if not record then return 'first', f end
    if record.worker ~= worker and not (steady and (liveness(record.worker) or 0) <= now - o.idle) then
      -- Handed back idle: handed back fresh, it would be hidden from its owner's sweep for as
      -- long again, and the sweeps of two workers could keep it hidden for good.
      return 'defer', f, record
    end
    -- A call of this process claimed it and its answer was lost: the same delivery, not another.
    if record.worker == worker and (record.callId == o.callId or sameProcess(record.callId)) then return 'same', f, record end
    if record.attempts >= o.maxDeliveries then return 'dead', f, record end
    return 'again', f, record
  end

  local plans, fields, recordOf, keys = {}, {}, {}, {}
  local n = 1
  while n <= #values do
    local entryAt = entryOf[n]
    local entry = entries[entryAt]
    local last = n
    while entryOf[last + 1] == entryAt do last = last + 1 end
    local owner, live = nil, 0
    for t = n, last do
      local key = prefix .. ids[t]
      local plan, f, record = decide(t, key)
      plans[t], fields[t], recordOf[t], keys[t] = plan, f, record, key
      if plan ~= 'skip' then live = live + 1 end
      if plan == 'defer' and not owner then owner = record.worker end
    end
    if owner then
      redis.call('XCLAIM', stream, group, owner, 0, entry, 'IDLE', o.idle, 'JUSTID')
      deferred = deferred + live
    else
      local fired = false
      local freshTail = ' ' .. now .. ' 1 ' .. entry
      for t = n, last do
        local plan, f, record, id, key = plans[t], fields[t], recordOf[t], ids[t], keys[t]
        if plan == 'first' then
          local idem = f[6]
          written[#written + 1] = id
          written[#written + 1] = idem and freshRecord .. idem or freshRecord
          addFire(values[t], key, f, freshTail)
          fired = true
        elseif plan == 'skip' then
          dropped = dropped + 1
        elseif plan == 'dead' then
          endTask(key, id, 'DEAD', now, o.retention, record.idem and o.idemPrefix .. record.idem, o.deadIndex, o.totals, 'dead',
            {'a', record.attempts, 'w', record.worker, 'f', record.firedAt})
          ended[#ended + 1] = id
          dead[#dead + 1] = id
        elseif plan == 'same' then
          addFire(values[t], key, f, ' ' .. record.firedAt .. ' ' .. record.attempts .. ' ' .. entry)
          fired = true
        else
          local attempts = record.attempts + 1
          written[#written + 1] = id
          written[#written + 1] = worker .. '|' .. attempts .. recordTail .. (record.idem or '')
          addFire(values[t], key, f, ' ' .. now .. ' ' .. attempts .. ' ' .. entry)
          fired = true
        end
      end
      if not fired and not partial then dropEntry(stream, group, entry) end
    end
    n = last + 1
  end
  if #written > 0 then sliced('HSET', o.firing, written, 2) end
  if #ended > 0 then sliced('HDEL', o.firing, ended, 1) end
  return fire, dead, dropped, deferred
end
