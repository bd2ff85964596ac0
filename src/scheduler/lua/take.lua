#!lua
--[[
  take: promote and claim in one call, for a worker that is idle when a partition's head
  comes due. Promotes as promote.lua does, then reads the partition's unread due entries
  for this worker (as claim.lua given `unread` does) and claims them. The worker prints what
  this returns at once: the three hops between a due time and the print (promote, the stream
  waking the blocked read, claim) become one. Other workers' reads are unaffected: the
  entries are delivered to this worker, pending for it, exactly as if its own read had
  returned them.

  Safe to send again, as claim.lua is. Past its deadline it only promotes: what it would
  have claimed waits in the stream for the first worker free to read it.

  KEYS, ARGV[1..11]  as acquireOptions (firing.lua) says
  KEYS[7]   the partition's schedule
  ARGV[12]  promote limit: most tasks moved
  ARGV[13]  fire limit: entries read and claimed (an entry names one task or more)
  ARGV[14]  chunk: most tasks per due entry promoted
  ARGV[15]  tasks wanted: more entries are read while they name fewer (readUnread)

  Reply {'OK', nowMs, moved, nextDueMs, fire, dead, dropped, deferred}
    moved and nextDueMs as promote.lua replies them, the last four as claim.lua does
]]
local now = redisNowMs()
local o = acquireOptions()
local moved, nextDue = promoteDue(KEYS[7], o.stream, tonumber(ARGV[12]), tonumber(ARGV[14]), now)
if now > o.deadline then return {'OK', now, moved, nextDue, {}, {}, 0, 0} end
local fire, dead, dropped, deferred = claimEntries(o, readForCall(o, tonumber(ARGV[13]), tonumber(ARGV[15])), now)
return {'OK', now, moved, nextDue, fire, dead, dropped, deferred}
