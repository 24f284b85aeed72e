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
local rcall = redis.call
local counts = {}
local inboxes = {}
local order = {}
for i = 1, #KEYS do
  -- A count past any waiter set's size pops the whole set and deletes it.
  local waiters = rcall("SPOP", KEYS[i], 1000000)
  counts[i] = #waiters
  for w = 1, #waiters do
    local inbox = ARGV[1] .. waiters[w]
    local list = inboxes[inbox]
    if not list then
      list = {}
      inboxes[inbox] = list
      order[#order + 1] = inbox
    end
    list[#list + 1] = ARGV[i + 2]
  end
end
for n = 1, #order do
  local inbox = order[n]
  local list = inboxes[inbox]
  -- unpack() is bounded by Lua's C stack: push in slices.
  for s = 1, #list, 1000 do
    rcall("RPUSH", inbox, unpack(list, s, math.min(s + 999, #list)))
  end
  rcall("PEXPIRE", inbox, ARGV[2])
end
return counts
