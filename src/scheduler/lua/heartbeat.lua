#!lua
--[[
  heartbeat: record that a worker is alive, in one partition, by Redis time. Besides the
  last beat it keeps since when the worker has beaten without a gap, so claim can tell a
  dead worker (silent while others beat) from a Redis that paused everyone (all silent).

  KEYS[1]  the partition's liveness hash: worker name -> "lastBeatMs:aliveSinceMs"
  ARGV[1]  worker name
  ARGV[2]  gap ms: a longer silence restarts aliveSince
  ARGV[3]  '1' to remove the worker instead (it is stopping)

  Reply  nowMs
]]
local now = redisNowMs()
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return now
end
local since = now
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if prior then
  local last, aliveSince = string.match(prior, '^(%d+):(%d+)$')
  if last and now - tonumber(last) <= tonumber(ARGV[2]) then since = tonumber(aliveSince) end
end
redis.call('HSET', KEYS[1], ARGV[1], now .. ':' .. since)
return now
