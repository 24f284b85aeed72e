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
-- #include job-status
return jobStatus(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
