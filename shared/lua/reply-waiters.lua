--[[
  Hands a finished job's outcome to every producer waiting for it: appends it to each waiter's reply
  inbox and forgets the waiters. Run by the worker after the job was moved to completed (or finally
  failed), so a producer that registers later reads the outcome itself (register-waiter.lua).

  KEYS[1] waiter set       ({prefix}:{queue}:{jobId}:cell0-waiters)
  ARGV[1] inbox key prefix ({prefix}:{queue}:cell0-reply:), followed by each waiter's producer id
  ARGV[2] the reply (encoded by the worker)
  ARGV[3] inbox lifetime, ms (an inbox nobody reads any more expires)

  Returns the number of waiters the reply went to.
]]
local rcall = redis.call
local waiters = rcall("SMEMBERS", KEYS[1])
for i = 1, #waiters do
  local inbox = ARGV[1] .. waiters[i]
  rcall("RPUSH", inbox, ARGV[2])
  rcall("PEXPIRE", inbox, ARGV[3])
end
if #waiters > 0 then
  rcall("DEL", KEYS[1])
end
return #waiters
