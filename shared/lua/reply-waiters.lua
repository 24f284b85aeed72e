--[[
  Hands finished jobs' outcomes to every producer waiting for them: appends each outcome to the reply
  inbox of each of its job's waiters and forgets the waiters. Run by a worker after the jobs were moved
  to completed (or finally failed), so a producer that registers later reads the outcome itself
  (register-waiter.lua). One call serves a whole batch of finished jobs: each waiter set is emptied with
  one SPOP, and each inbox gets all of its replies in one RPUSH and one PEXPIRE.

  KEYS[1..] waiter sets, one per finished job ({prefix}:{queue}:{jobId}:cell0-waiters)
  ARGV[1] inbox key prefix ({prefix}:{queue}:cell0-reply:), followed by each waiter's producer id
  ARGV[2] inbox lifetime, ms (an inbox nobody reads any more expires)
  ARGV[3..] the replies (encoded by the worker), in the order of KEYS

  Returns, per job, the number of waiters its reply went to.
]]
-- #include inbox-replies
local counts = {}
local acc = { lists = {}, order = {} }
for i = 1, #KEYS do
  counts[i] = popWaiters(acc, KEYS[i], ARGV[1], ARGV[i + 2])
end
pushReplies(acc, ARGV[2])
return counts
