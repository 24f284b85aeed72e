--[[ Shared by the result-path scripts that hand replies to producers (inserted where a script says
  `-- #include inbox-replies`): adderOf(jobKey, adder) resolves the producer that added a job: `adder` as
  the worker knows it, '' for none, '?' when the worker does not know (then read from the job's stored
  options, opts.cell0Reply = "<producer id>.<n>"); popWaiters(acc, waiterKey, prefix, reply, adder) queues
  `reply` for the inbox (prefix .. producer id) of the job's adder and of each waiter in its waiter set,
  which it empties, returning how many producers that is; pushReplies(acc, ttl) then appends each inbox's
  replies in one RPUSH (in slices) and renews it with one PEXPIRE. acc is { lists = {}, order = {} }. ]]
local function adderOf(jobKey, adder)
  if adder ~= "?" then return adder end
  local opts = redis.call("HGET", jobKey, "opts")
  return opts and string.match(opts, '"cell0Reply":"(%w+)') or ""
end

local function queueReply(acc, inbox, reply)
  local list = acc.lists[inbox]
  if not list then
    list = {}
    acc.lists[inbox] = list
    acc.order[#acc.order + 1] = inbox
  end
  list[#list + 1] = reply
end

local function popWaiters(acc, waiterKey, prefix, reply, adder)
  local n = 0
  if adder ~= "" then
    queueReply(acc, prefix .. adder, reply)
    n = 1
  end
  -- A count past any waiter set's size pops the whole set and deletes it.
  -- (As a string: Redis 7.0 formats a Lua number given to redis.call with snprintf, a string it takes as is.)
  local waiters = redis.call("SPOP", waiterKey, "1000000")
  for w = 1, #waiters do
    -- The adder joined its own job again (a re-run): one reply is enough.
    if waiters[w] ~= adder then
      queueReply(acc, prefix .. waiters[w], reply)
      n = n + 1
    end
  end
  return n
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
