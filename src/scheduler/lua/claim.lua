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

  Given `unread` and a count instead of entries, it first reads that many of the stream's
  unread entries for this worker (XREADGROUP as the worker's own read would, without BLOCK:
  a script cannot wait): a worker working through a backlog sends this as soon as a batch
  arrives, so Redis reads and claims the next batch while the worker prints this one. Read
  and claimed apart, the claim could only be sent once the worker, busy printing, had taken
  the read's answer. Should its answer be lost, what it claimed stays pending for the
  worker, FIRING under this call's id and never printed, and the worker fires it as its own
  abandoned entries.

  KEYS[1]  the partition's due stream
  KEYS[2]  the partition's liveness hash (see heartbeat.lua)
  KEYS[3]  the partition's totals hash (`dead` counts tasks that became DEAD)
  KEYS[4]  the partition's DEAD index (task id by endedAt ms)
  ARGV[1]  consumer group
  ARGV[2]  task key prefix (`{P:n}:task:`)
  ARGV[3]  this worker's name
  ARGV[4]  maximum deliveries
  ARGV[5]  retention ms for tasks that end DEAD
  ARGV[6]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[7]  reclaim idle ms
  ARGV[8]  call id: unique per claim call; the same call sent again (its answer was lost)
           claims what it claimed before without counting another delivery
  ARGV[9 ..] pairs: entry id, task id; or `unread`, then the most entries to read

  Reply {fire, dead, dropped, deferred}
    fire     flat list of 7-tuples to print: task id, entry id, message, due ms, fired-at ms,
             attempts, created-at ms
    dead     flat list of task ids that became DEAD
    dropped  number of entries acknowledged without firing
    deferred number of entries handed back to their worker, which may still be alive
]]
local entries = {}
if ARGV[9] == 'unread' then
  entries = readUnread(KEYS[1], ARGV[1], ARGV[3], tonumber(ARGV[10]))
else
  for i = 9, #ARGV do entries[#entries + 1] = ARGV[i] end
end
local fire, dead, dropped, deferred = claimEntries({
  stream = KEYS[1], liveness = KEYS[2], totals = KEYS[3], deadIndex = KEYS[4], group = ARGV[1], prefix = ARGV[2], worker = ARGV[3],
  maxDeliveries = tonumber(ARGV[4]), retention = tonumber(ARGV[5]), idemPrefix = ARGV[6], idle = tonumber(ARGV[7]),
  callId = ARGV[8]
}, entries, redisNowMs())
return {fire, dead, dropped, deferred}
