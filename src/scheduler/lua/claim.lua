#!lua
--[[
  claim: the step before printing. For each task of each entry a worker read from a due
  stream, mark it FIRING (a record in the partition's firing hash of the attempt, the
  worker, the fire time and the call), or skip it when it no longer wants firing:
  cancelled, rescheduled (its generation in the entry is stale), gone, or already fired. A
  task still FIRING from an earlier delivery that has used up its deliveries becomes DEAD
  instead. Because this runs atomically against cancel, a
  cancelled task is never claimed and a claimed task can no longer be cancelled.

  A task FIRING for another worker is taken over only when that worker has been silent for
  the reclaim idle time while this one has beaten steadily for as long. A pause of Redis
  itself silences every worker alike, so it makes nobody take over (and print again) what
  a live worker is about to commit; such a task's entry is handed back to that worker
  (XCLAIM), and its tasks are counted as deferred.

  Given `unread` and counts instead of entries, it first reads that many of the stream's
  unread entries for this worker (XREADGROUP as the worker's own read would, without BLOCK:
  a script cannot wait), and records them under the call's id: a worker working through a
  backlog sends this as soon as a batch arrives, so Redis reads and claims the next batch
  while the worker prints this one.

  Safe to send again: under the same call id it claims the same entries (the record says
  which, for `unread`) as the same delivery. Past its deadline it claims nothing: its caller
  has stopped sending it.

  An entry names one task or more (`id/g id/g ...`, task-state.lua); it is decided whole
  (claimEntries in firing.lua): handed back, or its tasks fired, ended DEAD or skipped, and
  acknowledged here only when none of them fires. The commit acknowledges the others.

  KEYS, ARGV[1..11]  as acquireOptions (firing.lua) says
  ARGV[12 ..]  pairs: entry id, entry value (`id/g id/g ...`); or `unread`, then the most
               entries to read and the tasks wanted (entries are read until they name
               as many, see readUnread in firing.lua; none: the entries); or `part`, then
               pairs whose values name only some of their
               entries' tasks (the rest are in the worker's hands): no entry is acknowledged

  Replies
    {'OK', nowMs, fire, dead, dropped, deferred}
      fire     flat list, three values per task to print: its task's value (`id/g`: the
               task id and its generation), its message, then its due ms, created-at ms,
               fired-at ms, attempts and entry id, one space apart (one value for five:
               each value of a reply costs Redis more than a few bytes do)
      dead     flat list of task ids that became DEAD
      dropped  number of tasks skipped without firing (cancelled, rescheduled, gone, fired)
      deferred number of tasks handed back to their worker, which may still be alive
    {'EXPIRED', nowMs}  past the deadline; nothing claimed
]]
local now = redisNowMs()
local o = acquireOptions()
if now > o.deadline then return {'EXPIRED', now} end
local entries, partial = {}, ARGV[12] == 'part'
if ARGV[12] == 'unread' then
  entries = readForCall(o, tonumber(ARGV[13]), tonumber(ARGV[14]))
else
  for i = partial and 13 or 12, #ARGV do entries[#entries + 1] = ARGV[i] end
end
local fire, dead, dropped, deferred = claimEntries(o, entries, now, partial)
return {'OK', now, fire, dead, dropped, deferred}
