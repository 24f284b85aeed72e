--[[
  Registers a producer as a waiter of several jobs of one queue and reads where each job stands, each in
  one step, so that no outcome can slip between the two: a job that finishes after this script finds the
  producer in its waiter set (and the worker replies to it); one that finished before is returned here.
  The batch form of register-waiter.lua, for the jobs a producer adds (or joins) in one round trip.

  KEYS[1] completed zset   ({prefix}:{queue}:completed)
  KEYS[2] failed zset      ({prefix}:{queue}:failed)
  KEYS[3..] per job: its hash ({prefix}:{queue}:{jobId}), then its waiter set
            ({prefix}:{queue}:{jobId}:cell0-waiters)
  ARGV[1] producer id (its reply inbox is {prefix}:{queue}:cell0-reply:{producer id})
  ARGV[2] waiter set lifetime, ms
  ARGV[3..] the job ids, in the order of KEYS

  Returns, per job, { status, value, finishedOn } as job-outcome.lua:
    status  -1 no such job, 0 not finished (waiting, active, delayed, ...), 1 completed, 2 failed
    value   the job's returnvalue (JSON text) when completed, its failedReason when failed, else false
    finishedOn  the worker's finish time in ms (string) when finished, else false
]]
-- #include job-status
local out = {}
for i = 3, #ARGV do
  local waiterKey = KEYS[2 * i - 2]
  redis.call("SADD", waiterKey, ARGV[1])
  redis.call("PEXPIRE", waiterKey, ARGV[2])
  out[#out + 1] = jobStatus(KEYS[1], KEYS[2], KEYS[2 * i - 3], ARGV[i])
end
return out
