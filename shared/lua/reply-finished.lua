--[[
  Hands the outcomes of jobs a worker has just finished to the producers waiting for them, like
  reply-waiters.lua, but sent by the worker on the connection that carries BullMQ's moveToFinished of
  those jobs, right behind it: it runs once the finish did, so the reply costs no round trip of its own
  after the finish. A job that is not in its finished set (its finish failed: lock lost, job gone) gets no
  reply, and its waiters stay registered for the run that does finish it.

  KEYS[1..] per job: its finished set ({prefix}:{queue}:completed or :failed), its waiter set
            ({prefix}:{queue}:{jobId}:cell0-waiters), then its hash ({prefix}:{queue}:{jobId})
  ARGV[1] inbox key prefix ({prefix}:{queue}:cell0-reply:), followed by each producer id
  ARGV[2] inbox lifetime, ms
  ARGV[3..] per job: its id, its reply (encoded by the worker), then the producer that added it ('' none,
            '?' unknown to the worker: read from the job's options)

  Returns, per job, the number of producers its reply went to, or -1 when the job is not finished.
]]
-- #include inbox-replies
local counts = {}
local acc = { lists = {}, order = {} }
for i = 1, #KEYS / 3 do
  if redis.call("ZSCORE", KEYS[3 * i - 2], ARGV[3 * i]) then
    local adder = adderOf(KEYS[3 * i], ARGV[3 * i + 2])
    counts[i] = popWaiters(acc, KEYS[3 * i - 1], ARGV[1], ARGV[3 * i + 1], adder)
  else
    counts[i] = -1
  end
end
pushReplies(acc, ARGV[2])
return counts
