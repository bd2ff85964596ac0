#!lua flags=no-writes
--[[
  read: tasks of one partition as a reader sees them, each put together from where its
  state lives (task-state.lua): the hash, the firing record and the schedule. Writes nothing.

  KEYS[1]  the partition's schedule
  KEYS[2]  the partition's firing hash
  ARGV[1]  task key prefix (`{P:n}:task:`)
  ARGV[2 ..] task ids

  Reply  one list per id, as readTask gives it: field, value pairs; {} for a task that is gone
]]
local tasks = {}
for i = 2, #ARGV do tasks[#tasks + 1] = readTask(ARGV[1] .. ARGV[i], ARGV[i], KEYS[1], KEYS[2]) end
return tasks
