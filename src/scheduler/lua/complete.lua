#!lua
--[[
  complete: the commit point of firing, run after the batch was printed. For each task
  still FIRING (its record is in the firing hash): mark it FIRED with its attempt's fields,
  set its expiry, drop its record, append its event to the partition's fired log;
  then acknowledge the batch's entries, trim the entries every worker is done with from the
  stream, and publish the batch's events on the taskFired channel in one message. A task
  already FIRED (a second completion after a reclaim) only has its entry acknowledged: the
  event is published once, whatever happens around it.

  The worker sends each task's event, built from what its claim returned: rebuilding it
  here from the hash (a read of every field and a JSON encode per task) was a fifth of
  this script's cost (BENCHMARKS.md). It is used only when the record still shows this
  worker's claim (same worker, same attempt); a task another worker took over since is
  described from its hash and record instead.

  KEYS[1]  the partition's due stream
  KEYS[2]  the partition's fired log (capped stream)
  KEYS[3]  the partition's totals hash (`fired` counts tasks this marked FIRED)
  KEYS[4]  the partition's firing hash (task id -> firing record, task-state.lua)
  ARGV[1]  consumer group
  ARGV[2]  task key prefix (`{P:n}:task:`)
  ARGV[3]  taskFired channel
  ARGV[4]  fired log cap (approximate MAXLEN)
  ARGV[5]  retention ms for fired tasks (the FIRED task's expiry, and its idempotency key's)
  ARGV[6]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[7]  partition number
  ARGV[8]  this worker's name
  ARGV[9]  the tasks' events as one JSON array, in order, with nothing between them but a
           comma: the published task list when every task completes with its own event
           (joining them here cost more than any other part of this script but the writes),
           and where each task's event is cut from, so no event is sent twice
  ARGV[10 ..] per task: entry id, task id, attempt and fired-at ms (as claimed), the length
           of its event in ARGV[9], bytes

  Reply {completed, alreadyDone}
  Fired log field `e`: JSON {"id","message","time","createdAt","firedAt","attempts","firedBy"}
  (lateness is firedAt - time; entries of earlier versions also hold "lateByMs" and "status"). Published message: {"partition":n,"prev":"<fired log id
  before the batch>","seqs":["<fired log id>", ...],"tasks":[{...}, ...]}, the i-th seq
  being the i-th task's, in fired log order. `prev` lets a reader of the channel see that a
  message before this one was lost (pub/sub drops messages while a subscriber is cut off).
]]
local stream, log, firing, group, prefix = KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2]
local channel, cap, retention, worker = ARGV[3], ARGV[4], ARGV[5], ARGV[8]
local FIRST, STRIDE = 10, 5

local list = ARGV[9]
-- Where the next task's event starts in the list: after its '['.
local at = 2
local ids = {}
for i = FIRST, #ARGV, STRIDE do ids[#ids + 1] = ARGV[i + 1] end
local records = sliced('HMGET', firing, ids, 1)

local completed, already, seqs, events, done = 0, 0, {}, {}, {}
local prev = nil
-- Whether the published list is ARGV[9] as sent: every task completed, each with its own event.
local asSent = true
for n, id in ipairs(ids) do
  local i = FIRST + STRIDE * (n - 1)
  local attempt, firedAt, length = ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local event = string.sub(list, at, at + length - 1)
  at = at + length + 1
  local value = records[n]
  if value then
    local key = prefix .. id
    local firedBy = worker
    -- This worker's claim, with no idempotency key (the record ends with '|'): the usual
    -- case, told by a plain find without parsing the record.
    local record = nil
    local mine = string.find(value, recordPrefix(worker, attempt), 1, true) == 1
    if not mine or string.byte(value, -1) ~= 124 then record = parseFiringRecord(value) end
    if not mine then
      asSent = false
      local h = redis.call('HMGET', key, 'm', 't', 'c')
      attempt, firedAt, firedBy = record.attempts, record.firedAt, record.worker
      event = cjson.encode({
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
    done[#done + 1] = id
    if prev == nil then
      local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
      prev = last[1] and last[1][1] or '0-0'
    end
    completed = completed + 1
    seqs[completed] = redis.call('XADD', log, '*', 'e', event)
    events[completed] = event
  else
    asSent = false
    already = already + 1
  end
end
if #done > 0 then sliced('HDEL', firing, done, 1) end
-- The cap, once per batch: trimming within each XADD cost a third of it.
if completed > 0 then redis.call('XTRIM', log, 'MAXLEN', '~', cap) end

-- The stream id right after id.
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- One XACK per slice of entries rather than one per entry. Slices keep unpack within Lua's stack.
local SLICE = 1000
for first = FIRST, #ARGV, STRIDE * SLICE do
  local entries = {}
  for i = first, math.min(first + STRIDE * SLICE - 1, #ARGV), STRIDE do entries[#entries + 1] = ARGV[i] end
  redis.call('XACK', stream, group, unpack(entries))
end

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
  local tasks = asSent and list or '[' .. table.concat(events, ',') .. ']'
  publish(channel, '{"partition":' .. ARGV[7] .. ',"prev":"' .. prev .. '","seqs":["' .. table.concat(seqs, '","') .. '"],"tasks":' .. tasks .. '}')
end
return {completed, already}
