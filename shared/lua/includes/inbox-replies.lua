--[[ Shared by the result-path scripts that hand replies to producers (inserted where a script says
  `-- #include inbox-replies`): popWaiters(acc, waiterKey, prefix, reply) empties a job's waiter set and
  queues `reply` for the inbox (prefix .. producer id) of each waiter, returning how many there were;
  pushReplies(acc, ttl) then appends each inbox's replies in one RPUSH (in slices) and renews it with one
  PEXPIRE. acc is { lists = {}, order = {} }. ]]
local function popWaiters(acc, waiterKey, prefix, reply)
  -- A count past any waiter set's size pops the whole set and deletes it.
  local waiters = redis.call("SPOP", waiterKey, 1000000)
  for w = 1, #waiters do
    local inbox = prefix .. waiters[w]
    local list = acc.lists[inbox]
    if not list then
      list = {}
      acc.lists[inbox] = list
      acc.order[#acc.order + 1] = inbox
    end
    list[#list + 1] = reply
  end
  return #waiters
end

local function pushReplies(acc, ttl)
  for n = 1, #acc.order do
    local inbox = acc.order[n]
    local list = acc.lists[inbox]
    -- unpack() is bounded by Lua's C stack: push in slices.
    for s = 1, #list, 1000 do
      redis.call("RPUSH", inbox, unpack(list, s, math.min(s + 999, #list)))
    end
    redis.call("PEXPIRE", inbox, ttl)
  end
end
