--[[
  Runs right behind a producer's adds of jobs of one queue, on their connection (so after them), and tells,
  per job, whether that add created it. An add that created its job needs no registration: the job's
  stored options carry the add's token (opts.cell0Reply, "<producer id>.<n>"), which names the producer the
  worker replies to. An add that met an existing job (another add got there first, in this process or
  another), and a plain join, register the producer as a waiter of the job and read where it stands, in one
  step, so that no outcome can slip between the two: a job that finishes after this script finds the
  producer in its waiter set (and the worker replies to it); one that finished before is returned here.

  KEYS[1] completed zset   ({prefix}:{queue}:completed)
  KEYS[2] failed zset      ({prefix}:{queue}:failed)
  ARGV[1] producer id (its reply inbox is {prefix}:{queue}:cell0-reply:{producer id})
  ARGV[2] waiter set lifetime, ms
  ARGV[3] the queue's job key prefix ({prefix}:{queue}:): a job's hash is <prefix><jobId>, its waiter set
          <prefix><jobId>:cell0-waiters (named here, not sent per job: the same hash tag as KEYS[1])
  ARGV[4..] per job: its id, then the token of the add just sent ('' for a join)

  Returns, per job, { status, value, finishedOn }:
    status   3 the add created the job: its reply comes to the adder (nothing registered)
            -2 the add met a job that is gone already (removed since): nothing registered, add again
            -1 no such job, 0 not finished (waiting, active, delayed, ...), 1 completed, 2 failed, as
               job-outcome.lua (registered as a waiter)
    value   the job's returnvalue (JSON text) when completed, its failedReason when failed, else false
    finishedOn  the worker's finish time in ms (string) when finished, else false
]]
-- #include job-status
local out = {}
local jobPrefix = ARGV[3]
for i = 1, (#ARGV - 3) / 2 do
  local jobId = ARGV[2 * i + 2]
  local jobKey = jobPrefix .. jobId
  local token = ARGV[2 * i + 3]
  if token ~= "" then
    local opts = redis.call("HGET", jobKey, "opts")
    if not opts then
      out[i] = { -2, false, false }
    elseif string.find(opts, '"cell0Reply":"' .. token .. '"', 1, true) then
      out[i] = { 3, false, false }
    end
  end
  if not out[i] then
    local waiterKey = jobKey .. ":cell0-waiters"
    redis.call("SADD", waiterKey, ARGV[1])
    redis.call("PEXPIRE", waiterKey, ARGV[2])
    out[i] = jobStatus(KEYS[1], KEYS[2], jobKey, jobId)
  end
end
return out
