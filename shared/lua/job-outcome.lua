--[[
  Reads where a job stands in one round trip: finished or not, and its result or failure.

  KEYS[1] completed zset   ({prefix}:{queue}:completed)
  KEYS[2] failed zset      ({prefix}:{queue}:failed)
  KEYS[3] job hash         ({prefix}:{queue}:{jobId})
  ARGV[1] job id

  Returns { status, value, finishedOn }
    status  -1 no such job, 0 not finished (waiting, active, delayed, ...), 1 completed, 2 failed
    value   the job's returnvalue (JSON text) when completed, its failedReason when failed, else false
    finishedOn  the worker's finish time in ms (string) when finished, else false
]]
local rcall = redis.call
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
