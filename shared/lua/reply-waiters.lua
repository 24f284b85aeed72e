--[[
  Hands finished jobs' outcomes to every producer waiting for them: appends each outcome to the reply
  inbox of the producer that added its job and of each of its job's waiters, and forgets the waiters. Run
  by a worker after the jobs were moved to completed (or finally failed), so a producer that registers
  later reads the outcome itself (register-waiters.lua). One call serves a whole batch of finished jobs:
  each waiter set is emptied with one SPOP, and each inbox gets all of its replies in one RPUSH and one
  PEXPIRE.

  KEYS[1..] per finished job: its waiter set ({prefix}:{queue}:{jobId}:cell0-waiters), then its hash
            ({prefix}:{queue}:{jobId})
  ARGV[1] inbox key prefix ({prefix}:{queue}:cell0-reply:), followed by each producer id
  ARGV[2] inbox lifetime, ms (an inbox nobody reads any more expires)
  ARGV[3..] per job, in the order of KEYS: its reply (encoded by the worker), then the producer that added
            it ('' none, '?' unknown to the worker: read from the job's options)

  Returns, per job, the number of producers its reply went to.
]]
-- #include inbox-replies
local counts = {}
local acc = { lists = {}, order = {} }
for i = 1, #KEYS / 2 do
  local adder = adderOf(KEYS[2 * i], ARGV[2 * i + 2])
  counts[i] = popWaiters(acc, KEYS[2 * i - 1], ARGV[1], ARGV[2 * i + 1], adder)
end
pushReplies(acc, ARGV[2])
return counts
