--[[
  take: promote and claim in one call, for a worker that is idle when a partition's head
  comes due. Promotes as promote.lua does, then reads the partition's unread due entries
  for this worker (XREADGROUP, as the worker's blocking read would) and claims them as
  claim.lua does. The worker prints what this returns at once: the three hops between a
  due time and the print (promote, the stream waking the blocked read, claim) become one.
  Other workers' reads are unaffected: the entries are delivered to this worker, pending
  for it, exactly as if its own read had returned them.

  A take that runs late (Redis was paused or slow, so the worker has likely given up on the
  answer) claims nothing and is a plain promotion: what it would have claimed waits in the
  stream for the first worker free to read it, rather than pending for a worker that will
  only find it at its next sweep for abandoned entries.

  KEYS[1]  the partition's schedule
  KEYS[2]  the partition's due stream
  KEYS[3]  the partition's liveness hash (see heartbeat.lua)
  KEYS[4]  this worker's last-take key in the partition: what this call claimed, under its
           call id, for the worker to fire should the answer be lost (it reads the key once
           the claim deadline has passed)
  KEYS[5]  the partition's totals hash (`dead` counts tasks that became DEAD)
  KEYS[6]  the partition's DEAD index (task id by endedAt ms)
  ARGV[1]  promote limit: most tasks moved
  ARGV[2]  task key prefix (`{P:n}:task:`)
  ARGV[3]  consumer group
  ARGV[4]  this worker's name
  ARGV[5]  maximum deliveries
  ARGV[6]  retention ms for tasks that end DEAD
  ARGV[7]  idempotency key prefix (`{P:n}:idem:`)
  ARGV[8]  reclaim idle ms
  ARGV[9]  fire limit: most entries read and claimed
  ARGV[10] claim deadline: Redis time (ms) after which this call only promotes
  ARGV[11] call id, as claim.lua's (a lost take's claims, fired under it, count no new delivery)
  ARGV[12] how long the last-take key lives, ms

  Reply {moved, nextDueMs, nowMs, fire, dead, dropped, deferred}
    the first three as promote.lua replies, the last four as claim.lua does
]]
local now = redisNowMs()
local moved, nextDue = promoteDue(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], now)

if now > tonumber(ARGV[10]) then
  return {moved, nextDue, now, {}, {}, 0, 0}
end
local entries = readUnread(KEYS[2], ARGV[3], ARGV[4], tonumber(ARGV[9]))
local fire, dead, dropped, deferred = claimEntries({
  stream = KEYS[2], liveness = KEYS[3], totals = KEYS[5], deadIndex = KEYS[6], group = ARGV[3], prefix = ARGV[2], worker = ARGV[4],
  maxDeliveries = tonumber(ARGV[5]), retention = tonumber(ARGV[6]), idemPrefix = ARGV[7], idle = tonumber(ARGV[8]),
  callId = ARGV[11]
}, entries, now)
if #fire > 0 then
  local claimed = {ARGV[11]}
  for i = 1, #fire, 7 do
    claimed[#claimed + 1] = fire[i + 1]
    claimed[#claimed + 1] = fire[i]
  end
  redis.call('SET', KEYS[4], table.concat(claimed, ' '), 'PX', tonumber(ARGV[12]))
end
return {moved, nextDue, now, fire, dead, dropped, deferred}
