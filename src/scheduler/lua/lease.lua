#!lua
--[[
  lease: take, renew or give up a worker's name, so that two live processes never fire as
  one consumer (they would claim each other's entries as their own, and one leaving the
  group could drop entries just delivered to the other). A worker takes its name at start,
  renews it with every heartbeat, and gives it up when it stops; a crashed one's lease lapses
  after its time.

  KEYS[1]  the name's lease key
  ARGV[1]  this process's token (host, pid and a random part)
  ARGV[2]  how long the lease lasts, ms; 0 gives it up

  Reply  '' when this process holds the name (with 0: no longer holds it); otherwise the
         token of the process that holds it, which keeps it
]]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
if tonumber(ARGV[2]) == 0 then
  if holder then redis.call('DEL', KEYS[1]) end
  return ''
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return ''
