--[[ Shared by job-outcome.lua, register-waiter.lua and register-waiters.lua (inserted where a script says
  `-- #include job-status`): jobStatus(completedKey, failedKey, jobKey, jobId) reads where one job stands
  and returns { status, value, finishedOn }:
    status  -1 no such job, 0 not finished (waiting, active, delayed, ...), 1 completed, 2 failed
    value   the job's returnvalue (JSON text) when completed, its failedReason when failed, else false
    finishedOn  the worker's finish time in ms (string) when finished, else false ]]
local function jobStatus(completedKey, failedKey, jobKey, jobId)
  if redis.call("EXISTS", jobKey) ~= 1 then
    return { -1, false, false }
  end
  if redis.call("ZSCORE", completedKey, jobId) then
    local v = redis.call("HMGET", jobKey, "returnvalue", "finishedOn")
    return { 1, v[1], v[2] }
  end
  if redis.call("ZSCORE", failedKey, jobId) then
    local v = redis.call("HMGET", jobKey, "failedReason", "finishedOn")
    return { 2, v[1], v[2] }
  end
  return { 0, false, false }
end
