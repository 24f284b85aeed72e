--[[
  Removes entries of one scope with everything that points at them (band bucket codes, slot and its
  candidate record, LRU, expiry and meta records). Three modes:
    ARGV[3] = 'ids'      remove the entries ARGV[5..]
    ARGV[3] = 'all'      remove up to ARGV[5] entries of the scope (call again while it returns more left);
                         when none are left, the scope's containers are deleted
    ARGV[3] = 'expired'  remove up to ARGV[5] entries whose expiry (Redis clock) has passed (call again while
                         it returns more left); what set() does lazily, for scopes nobody writes to any more
  Slots of entries that may still be live ('ids', 'all') are held for ARGV[4] ms before reuse (a process may
  use their candidate records that long; see includes/slot-codes.lua holdSlot). When the scope's containers
  are deleted, the slot counter is left for ARGV[4] ms more (unless it lives longer already), so no slot
  number is given out again while a process may use a record of it.

  KEYS[1]  LRU sorted set
  KEYS[2]  expiry sorted set
  KEYS[3]  meta hash (id -> "slot|bands|generation", see includes/slot-codes.lua parseMeta)
  KEYS[4]  vec hash (slot -> candidate record)
  KEYS[5]  free slots list
  KEYS[6]  next-slot counter
  KEYS[7]  gens sorted set (generations of band buckets)
  KEYS[8]  held slots sorted set (slot -> when it may be reused)
  KEYS[9]  band stream (the removals' band events, see includes/slot-codes.lua publishBands)
  ARGV[1]  entry key prefix
  ARGV[2]  band key prefix

  Returns { entries removed that still existed, entries left in the scope (mode 'all'), expired entries
            left (mode 'expired'), 0 (mode 'ids') }
]]
local lru, exp, meta, vec, free, nextSlot, gens, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local stream = KEYS[9]
local eprefix, bprefix = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))

-- #include slot-codes

-- an expired entry: its slot back on the free list
local function drop(member)
  return (dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member))
end

local holdUntil = string.format('%.0f', tonumber(now) + tonumber(ARGV[4]))
local heldAny = false
-- an entry that may still be live: its slot held
local function remove(member)
  heldAny = true
  return (dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member, held, holdUntil))
end

-- Deletes the scope's containers but the slot counter, which is left for the hold time at least.
local function deleteScope()
  -- the band stream too: a process whose mirror read it finds its last entry gone and rebuilds
  bandEvents = {}
  redis.call('DEL', lru, exp, meta, vec, free, gens, held, stream)
  if redis.call('PTTL', nextSlot) < tonumber(ARGV[4]) then redis.call('PEXPIRE', nextSlot, ARGV[4]) end
end

local function fixHeldTtl()
  if heldAny and redis.call('PTTL', held) == -1 then
    local left = redis.call('PTTL', meta)
    if left > 0 then redis.call('PEXPIRE', held, left) else redis.call('DEL', held) end
  end
end

local function fixFreeTtl()
  if redis.call('EXISTS', free) == 1 and redis.call('PTTL', free) < 0 then
    local left = redis.call('PTTL', meta)
    if left > 0 then redis.call('PEXPIRE', free, left) else redis.call('DEL', free) end
  end
end

local removed = 0
if ARGV[3] == 'ids' then
  for i = 5, #ARGV do removed = removed + remove(ARGV[i]) end
  fixFreeTtl()
  fixHeldTtl()
  publishBands(stream, meta)
  return { removed, 0 }
end

local limit = tonumber(ARGV[5])
if ARGV[3] == 'expired' then
  local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, limit)
  -- removed counts records cleaned up; their entry keys have usually expired on their own already
  for _, m in ipairs(expired) do drop(m); removed = removed + 1 end
  if redis.call('ZCARD', lru) + redis.call('HLEN', meta) == 0 then
    deleteScope()
    return { removed, 0 }
  end
  fixFreeTtl()
  publishBands(stream, meta)
  return { removed, redis.call('ZCOUNT', exp, '-inf', now) }
end
local members = redis.call('ZRANGE', lru, 0, limit - 1)
if #members == 0 then
  -- records without an LRU entry (should not happen; kept robust)
  local cursor = '0'
  repeat
    local scan = redis.call('HSCAN', meta, cursor, 'COUNT', limit)
    cursor = scan[1]
    for i = 1, #scan[2], 2 do members[#members + 1] = scan[2][i] end
  until cursor == '0' or #members >= limit
end
for _, m in ipairs(members) do removed = removed + remove(m) end
local left = redis.call('ZCARD', lru) + redis.call('HLEN', meta)
if left == 0 then
  deleteScope()
else
  fixFreeTtl()
  fixHeldTtl()
  publishBands(stream, meta)
end
return { removed, left }
