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
-- #include job-status
redis.call("SADD", KEYS[4], ARGV[2])
redis.call("PEXPIRE", KEYS[4], ARGV[3])
return jobStatus(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
