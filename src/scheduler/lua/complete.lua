#!lua
--[[
  complete: the commit point of firing, run after the batch was printed. For each task
  still FIRING (its record is in the firing hash): mark it FIRED with its attempt's fields,
  set its expiry, drop its record; then append the batch's events to the partition's fired
  log as one entry, acknowledge the due entries the worker says are done, trim the entries
  every worker is done with from the stream, and publish the batch's events on the taskFired channel in one
  message. A task already FIRED (a second completion after a reclaim) is left as it is, its
  entry acknowledged with the others: the event is published once, whatever happens
  around it.

  A due entry names one task or more (`id/g id/g ...`, task-state.lua). The worker names the
  entries to acknowledge: those whose every task its claim gave it to fire is in this
  commit. An entry with a task left out (its print failed) stays pending for the sweep.

  The worker sends each task's event, built from what its claim returned: rebuilding it
  here from the hash (a read of every field and a JSON encode per task) was a fifth of
  this script's cost (BENCHMARKS.md). It is used only when the record still shows this
  worker's claim (same worker, same attempt); a task another worker took over since is
  described from its hash and record instead.

  KEYS[1]  the partition's due stream
  KEYS[2]  the partition's fired log (capped stream, one entry per committed batch)
  KEYS[3]  the partition's totals hash (`fired` counts tasks this marked FIRED, `logged`
           the events the fired log holds)
  KEYS[4]  the partition's firing hash (task id -> firing record, task-state.lua)
  ARGV[1]  consumer group
  ARGV[2]  task key prefix (`{P:n}:task:`)
  ARGV[3]  taskFired channel
  ARGV[4]  fired log cap, in events (kept to about it, see trimLog)
  ARGV[5]  retention ms for fired tasks (the FIRED task's expiry, and its idempotency key's)
  ARGV[6]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[7]  partition number
  ARGV[8]  this worker's name
  ARGV[9]  the tasks' events as one JSON array, in order, with nothing between them but a
           comma: the published task list when every task completes with its own event
           (joining them here cost more than any other part of this script but the writes),
           and where each task's event is cut from, so no event is sent twice
  ARGV[10] m, the number of due entries to acknowledge
  ARGV[11 .. 10 + m] the due entries' ids
  ARGV[11 + m ..] the tasks, in runs of tasks claimed with the same attempt and fired-at
           time: the run's task count k, the attempt, the fired-at ms (as claimed), then per
           task its id and the length of its event in ARGV[9], bytes (2 values a task rather
           than 4: each argument costs Redis more than its bytes)

  Reply {completed, alreadyDone}

  Fired log entry, one per batch that completed a task: fields `n` (its event count) and
  `e` (its events, the JSON array published as "tasks"), each event
  {"id","message","time","createdAt","firedAt","attempts","firedBy"} (lateness is
  firedAt - time). Each event has a seq shaped as a stream id: the entry's id is its last
  event's, `ms-k`, and the n events are `ms-(k-n+1)` ... `ms-k`, so a cursor names an event
  and `XRANGE (cursor` starts at the entry that holds the next one. An entry of an earlier
  version holds one event object in `e` and no `n` (and its events also "lateByMs" and
  "status"): a batch of one.

  Published message: {"partition":n,"prev":"<fired log id before the batch>","last":"<the
  batch's entry id>","tasks":[{...}, ...]}: the events' seqs count down from `last` (no
  number is formatted per task here). `prev` lets a reader of the channel see that a message
  before this one was lost (pub/sub drops messages while a subscriber is cut off). Workers
  of an earlier version publish "seqs":["<seq>", ...] instead of "last".
]]
local stream, log, firing, group, prefix = KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2]
local channel, cap, retention, worker = ARGV[3], ARGV[4], ARGV[5], ARGV[8]
local ACKED = tonumber(ARGV[10])
local list = ARGV[9]

-- Per task, from the runs after the acknowledged entries: its id, attempt, fired-at and
-- event length.
local ids, attempts, firedAts, lengths = {}, {}, {}, {}
local tasks, run = 0, 11 + ACKED
while run <= #ARGV do
  local count, attempt, firedAt = tonumber(ARGV[run]), ARGV[run + 1], ARGV[run + 2]
  for i = run + 3, run + 1 + 2 * count, 2 do
    tasks = tasks + 1
    ids[tasks], attempts[tasks], firedAts[tasks], lengths[tasks] = ARGV[i], attempt, firedAt, tonumber(ARGV[i + 1])
  end
  run = run + 3 + 2 * count
end
local records = sliced('HMGET', firing, ids, 1)

-- A completed task's event is cut from the list only when what is published is not the list
-- as sent (`asSent`: every task completed, each with its own event); `starts` says where
-- each one begins, `encoded` holds those described from the hash instead.
local completed, already, done, starts, encoded = 0, 0, {}, {}, {}
local asSent = true
-- This worker's record prefix by attempt (recordPrefix), made once per call.
local prefixes = {}
-- Where the next task's event starts in the list: after its '['.
local at = 2
for n = 1, tasks do
  local id, attempt, firedAt = ids[n], attempts[n], firedAts[n]
  starts[n], at = at, at + lengths[n] + 1
  local value = records[n]
  if value then
    local key = prefix .. id
    local firedBy = worker
    local mine = prefixes[attempt]
    if not mine then
      mine = recordPrefix(worker, attempt)
      prefixes[attempt] = mine
    end
    -- This worker's claim, with no idempotency key (the record ends with '|'): the usual
    -- case, told by a plain find without parsing the record.
    local record = nil
    mine = string.find(value, mine, 1, true) == 1
    if not mine or string.byte(value, -1) ~= 124 then record = parseFiringRecord(value) end
    if not mine then
      asSent = false
      local h = redis.call('HMGET', key, 'm', 't', 'c')
      attempt, firedAt, firedBy = record.attempts, record.firedAt, record.worker
      encoded[n] = cjson.encode({
        id = id, message = readMessage(key, h[1]), time = tonumber(h[2]), createdAt = tonumber(h[3]),
        firedAt = firedAt, attempts = attempt, firedBy = firedBy
      })
    end
    -- Fewest fields: lateness is f - t, and a missing attempts count means 1 (task-state.lua).
    if attempt == '1' or attempt == 1 then
      redis.call('HSET', key, 's', 'FIRED', 'f', firedAt, 'w', firedBy)
    else
      redis.call('HSET', key, 's', 'FIRED', 'f', firedAt, 'w', firedBy, 'a', attempt)
    end
    redis.call('PEXPIRE', key, retention)
    if record and record.idem then redis.call('PEXPIRE', ARGV[6] .. record.idem, retention) end
    completed = completed + 1
    done[completed] = id
  else
    asSent = false
    already = already + 1
  end
end
if completed > 0 then sliced('HDEL', firing, done, 1) end

-- The events of the completed tasks as one JSON array, in order.
local function completedEvents()
  if asSent then return list end
  local events = {}
  for n = 1, tasks do
    if records[n] then events[#events + 1] = encoded[n] or string.sub(list, starts[n], starts[n] + lengths[n] - 1) end
  end
  return '[' .. table.concat(events, ',') .. ']'
end

-- The stream id right after id.
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- The id of an entry of n events that follows the id `last` ('0-0': none) at Redis time
-- `now`: its first event is now-0, or right after `last` when the clock has not passed it;
-- its id is its last event's, n - 1 further in the same millisecond.
local function batchId(last, n, now)
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if now <= ms then return string.format('%d-%d', ms, seq + n) end
  return string.format('%d-%d', now, n - 1)
end

-- The last id a stream generated ('0-0' for none yet), or nil when there is no stream.
local function lastGeneratedId(key)
  if redis.call('EXISTS', key) == 0 then return nil end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return nil
end

--[[
  Appends a batch of n events (`list`, a JSON array) to the fired log as one entry with an
  explicit id (batchId). Returns its id and the id before it ('0-0' for none). The id before
  is the log's last entry's; only in an empty log is the stream asked for the last id it
  generated: a log emptied by trims would refuse an id at or below it.
]]
local function appendBatch(n, list)
  local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  local prev = newest and newest[1] or lastGeneratedId(log) or '0-0'
  local id = batchId(prev, n, redisNowMs())
  redis.call('XADD', log, id, 'n', n, 'e', list)
  return id, prev
end

-- The event count of a fired log entry's fields: `n`, or 1 for an entry of an earlier version.
local function eventCount(fields)
  for f = 1, #fields, 2 do
    if fields[f] == 'n' then return tonumber(fields[f + 1]) end
  end
  return 1
end

--[[
  Keeps the fired log to about `cap` events, after the entry `newest` (of n events) was
  added. The totals hash counts the events the log holds (`logged`); past the cap by more
  than TRIM_SLACK events (or a tenth of a smaller cap), whole oldest entries go until at most
  the cap remains, but never the newest: a log emptied here would no longer say where it
  ends. Each entry dropped is read for its `n`, which costs Redis a few us an entry (1,000 of
  one event each: 6-9 ms on the loaded test machine), so the slack is small: one call reads
  about TRIM_SLACK entries at most, and asks for entries by the log's events per entry, so a
  log of large batches reads one or two. A larger excess (the cap lowered) goes TRIM_PAGES
  pages per call. A log an earlier version wrote (an event per entry, no count) is counted by
  its length when the count starts; a count that says more than the log holds (its entries
  trimmed or deleted by hand) is set right once a trim reaches the newest entry.
]]
local TRIM_SLACK, TRIM_PAGE, TRIM_PAGES = 100, 200, 10
local function trimLog(totals, newest, n, cap)
  local logged = redis.call('HINCRBY', totals, 'logged', n)
  if logged == n then
    local older = redis.call('XLEN', log) - 1
    if older > 0 then logged = redis.call('HINCRBY', totals, 'logged', older) end
  end
  if logged <= cap + math.min(cap / 10, TRIM_SLACK) then return end
  local excess, dropped, last, start, alone = logged - cap, 0, nil, '-', false
  local perEntry = logged / redis.call('XLEN', log)
  for _ = 1, TRIM_PAGES do
    local count = math.min(TRIM_PAGE, math.ceil((excess - dropped) / perEntry) + 1)
    local entries = redis.call('XRANGE', log, start, '+', 'COUNT', count)
    for _, entry in ipairs(entries) do
      alone = entry[1] == newest
      if alone or dropped >= excess then break end
      dropped = dropped + eventCount(entry[2])
      last = entry[1]
    end
    if alone or dropped >= excess or #entries < count then break end
    start = '(' .. last
  end
  if last then redis.call('XTRIM', log, 'MINID', after(last)) end
  -- Down to the newest entry alone, the count is known whatever it said (a log trimmed by hand).
  if alone then
    redis.call('HSET', totals, 'logged', n)
  elseif last then
    redis.call('HINCRBY', totals, 'logged', -dropped)
  end
end

-- One XACK per slice of entries rather than one per entry.
local acked = {}
for i = 11, 10 + ACKED do acked[#acked + 1] = ARGV[i] end
sliced('XACK', stream, acked, 1, group)

-- Acknowledged entries leave the stream by a trim, not by XDEL: XDEL seeks every entry
-- and was a quarter of this script's cost (BENCHMARKS.md). The group delivers in id
-- order, so every entry before the oldest one still pending was delivered and is done;
-- with none pending, every entry the group delivered is done.
local pending = redis.call('XPENDING', stream, group)
local keep = pending[2]
if not keep then
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields['name'] == group then keep = after(fields['last-delivered-id']) end
  end
end
if keep then redis.call('XTRIM', stream, 'MINID', keep) end

if completed > 0 then
  redis.call('HINCRBY', KEYS[3], 'fired', completed)
  local published = completedEvents()
  local last, prev = appendBatch(completed, published)
  trimLog(KEYS[3], last, completed, tonumber(cap))
  publish(channel, '{"partition":' .. ARGV[7] .. ',"prev":"' .. prev .. '","last":"' .. last .. '","tasks":' .. published .. '}')
end
return {completed, already}
