--[[
  Registers a producer as a waiter of a job and reads where the job stands, in one step, so that no
  outcome can slip between the two: a job that finishes after this script finds the producer in its
  waiter set (and the worker replies to it); one that finished before is returned here.

  KEYS[1] completed zset   ({prefix}:{queue}:completed)
  KEYS[2] failed zset      ({prefix}:{queue}:failed)
  KEYS[3] job hash         ({prefix}:{queue}:{jobId})
  KEYS[4] waiter set       ({prefix}:{queue}:{jobId}:cell0-waiters)
  ARGV[1] job id
  ARGV[2] producer id (its reply inbox is {prefix}:{queue}:cell0-reply:{producer id})
  ARGV[3] waiter set lifetime, ms

  Returns { status, value, finishedOn }, as job-outcome.lua:
    status  -1 no such job, 0 not finished (waiting, active, delayed, ...), 1 completed, 2 failed
    value   the job's returnvalue (JSON text) when completed, its failedReason when failed, else false
    finishedOn  the worker's finish time in ms (string) when finished, else false
]]
local rcall = redis.call
rcall("SADD", KEYS[4], ARGV[2])
rcall("PEXPIRE", KEYS[4], ARGV[3])
if rcall("EXISTS", KEYS[3]) ~= 1 then
  return { -1, false, false }
end
if rcall("ZSCORE", KEYS[1], ARGV[1]) then
  local v = rcall("HMGET", KEYS[3], "returnvalue", "finishedOn")
  return { 1, v[1], v[2] }
end
if rcall("ZSCORE", KEYS[2], ARGV[1]) then
  local v = rcall("HMGET", KEYS[3], "failedReason", "finishedOn")
  return { 2, v[1], v[2] }
end
return { 0, false, false }
