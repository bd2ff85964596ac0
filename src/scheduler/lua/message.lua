--[[
  message: prepended to every script (scripts.ts). A message is kept in hash fields of at
  most 64 bytes (m, m2, m3, ...): 64 is Redis's hash-max-listpack-value, and a hash whose
  values all fit stays a compact listpack, which halves a task's memory against one long
  field. Lua strings are bytes, so a cut inside a UTF-8 character joins back exactly.
]]
local MESSAGE_PART = 64

-- The message as HSET arguments: 'm', part1, 'm2', part2, ...
local function messageFields(message)
  local fields = {'m', string.sub(message, 1, MESSAGE_PART)}
  local n = 2
  for start = MESSAGE_PART + 1, #message, MESSAGE_PART do
    fields[#fields + 1] = 'm' .. n
    fields[#fields + 1] = string.sub(message, start, start + MESSAGE_PART - 1)
    n = n + 1
  end
  return fields
end

-- The whole message of a task whose field m is `first` (false when the task is gone).
local function readMessage(key, first)
  if not first or #first < MESSAGE_PART then return first end
  local parts, n = {first}, 2
  while true do
    local part = redis.call('HGET', key, 'm' .. n)
    if not part then break end
    parts[#parts + 1] = part
    n = n + 1
  end
  return table.concat(parts)
end
