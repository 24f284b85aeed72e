--[[
  Stores entries of one scope of the semantic cache, then keeps the scope tidy: removes up to ARGV[4]
  expired entries and evicts the least recently used entries beyond ARGV[1].

  Each entry holds a slot number (0 .. 2^24-1, reused after it goes). The vec hash maps a slot to "expires
  at (15 digits) .. id .. LF .. int8 vector .. prompt", what the re-rank needs (the vector dense, or sparse
  when that is shorter: see vector-codec.ts storedForm).

  Band buckets belong to a generation: a generation is "h<class>.<g>", class = ceil(log2(TTL ms)),
  G = 2^class ms, g = ceil(expires at / G), and its buckets expire at (g + 1) * G, after every entry in it.
  The gens sorted set maps each generation to that expiry; a lookup ranks the buckets of the live ones.
  The buckets themselves are kept by the processes (semantic-mirror.ts), not in Redis: a store notes each
  entry's "+slot generation fields" band event, and the call's events (with those of the entries it
  evicts or cleans up) go to the scope's band stream as one entry (includes/slot-codes.lua publishBands);
  the meta record ("slot|band fields|generation") is what a process builds its mirror from.
  The scope's containers share one expiry: extended (to twice the TTL, plus a second) only when the meta
  hash or the vec hash would not outlive the new entry.

  Every key is in the scope's hash slot ({scope hash} tag). Entry keys and band keys of evicted or expired
  entries are built from ARGV[2]/ARGV[3] (same tag, so the same cluster slot).

  One call stores one entry or several of one scope (a batch of set() calls, ids distinct): one band stream
  entry for the whole batch, the vec / meta / LRU / expiry records with one command each, and the scope's upkeep (container expiry, expired cleanup, size
  bound) runs once per call, not once per entry.

  KEYS[1]  LRU sorted set: id -> last store or hit (ms)
  KEYS[2]  expiry sorted set: id -> expires at (ms)
  KEYS[3]  meta hash: id -> "slot|band fields|generation" (the entry's ARGV band fields; see slot-codes)
  KEYS[4]  vec hash: slot -> candidate record (see above)
  KEYS[5]  free slots list
  KEYS[6]  next-slot counter
  KEYS[7]  gens sorted set: generation -> expiry of its buckets (ms)
  KEYS[8]  held slots sorted set: slot -> when it may be reused (ms); see includes/slot-codes.lua holdSlot
  KEYS[9]  band stream: the call's changes to the band buckets, one entry (see includes/slot-codes.lua
           publishBands), read by the processes' mirrors of the buckets (semantic-mirror.ts)
  KEYS[10..] entry of each entry (value JSON, prompt, stored at: one string with its TTL, see
           includes/entry-record.lua)
  ARGV[1]  most entries in the scope
  ARGV[2]  entry key prefix (+ id = entry key)
  ARGV[3]  band key prefix (+ generation = the generation's hash of band buckets)
  ARGV[4]  most expired entries to remove in this call
  ARGV[5]  how long a slot freed while its entry may still be live is held before reuse (ms): evicted
           entries and entries stored again (which move to a new slot)
  ARGV[6]  the id of the last band stream entry the storing process's mirror of the scope has applied
           (semantic-mirror.ts; '' when it has no mirror of the scope)
  ARGV[7..] six per entry, in the order of KEYS[10..]: id, value JSON, prompt, vector bytes, TTL (ms), band
           fields ("band index:value (base 36)", comma-separated, in band order: the lookup's form, so the
           script appends to them as they come; empty when the vector is zero)

  Returns { evicted, expired removed, 1 when this call created a generation (else 0), ms until the longest-
            lived generation it joined expires, the call's time (ms: each entry's candidate record starts with
            it plus the entry's TTL), then each entry's slot in the order of KEYS[10..] (-1: none), so the
            process can keep the candidate records it just wrote (lookup-records.ts) instead of reading them;
            then, when the band stream held nothing after ARGV[6] and the call published an entry: that
            entry's id and its events as the process applies them to its mirror (includes/slot-codes.lua
            ownEvents: its own entries' joins without their band fields) }
]]
-- #include clock
local now, nowText = clockNow()
local maxEntries = tonumber(ARGV[1])
local eprefix, bprefix = ARGV[2], ARGV[3]
local lru, exp, meta, vec, free, nextSlot, gens = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local held, stream = KEYS[8], KEYS[9]
local MAX_SLOT = 16777215
local pushed = false -- a slot went back on the free list (which may be new, without an expiry)
local heldAny = false -- a slot went to the held set (which may be new, without an expiry)
local holdText -- until when a slot freed now is held (text, made when first needed: see clock.lua)
local function holdUntil()
  holdText = holdText or string.format('%.0f', now + tonumber(ARGV[5]))
  return holdText
end
local since = ARGV[6]
local n = #KEYS - 9
local A = 6 -- the entries' arguments start after ARGV[A]

-- #include slot-codes
-- #include entry-record

-- an expired entry: its slot back on the free list
local function drop(member)
  local _, freed = dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member)
  if freed then pushed = true end
end

-- an entry that may still be live (evicted): its slot held
local function evict(member)
  dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member, held, holdUntil())
  heldAny = true
end

local vecArgs, metaArgs, lruArgs, expArgs = {}, {}, {}, {}
local genOrder, genSeen, genExpiry = {}, {}, {} -- the generations joined, and each one's bucket expiry
local stored = {}
local maxTtl = 0
local newGen = 0
local genLeft = 0
-- 1. Each entry's generation, and its previous record (one HMGET for all): a prompt stored again leaves its
--    old buckets (the generation may differ) and its slot, which is held (a process may hold the old record
--    for a while, see ARGV[5]); it takes a new one.
local ids, slots, slotTexts, gensOf, bandsOf, expiries = {}, {}, {}, {}, {}, {}
for k = 1, n do
  local a = A + (k - 1) * 6
  ids[k] = ARGV[a + 1]
  bandsOf[k] = ARGV[a + 6]
  stored[ids[k]] = true
end
local olds = redis.call('HMGET', meta, unpack(ids))
local needSlot = {}
-- Each TTL's expiry, generation and their texts, made once per call: a call's stores mostly share one TTL, and
-- formatting numbers (string.format, a number turned into a string) was ~6% of the script's instructions
local byTtl = {}
for k = 1, n do
  local ttlArg = ARGV[A + (k - 1) * 6 + 5]
  local e = byTtl[ttlArg]
  if not e then
    local ttl = tonumber(ttlArg)
    if ttl > maxTtl then maxTtl = ttl end
    local expiresAt = now + ttl
    local class = 0
    while 2 ^ class < ttl do class = class + 1 end
    local granule = 2 ^ class
    local g = math.ceil(expiresAt / granule)
    e = {
      gen = 'h' .. class .. '.' .. string.format('%.0f', g),
      at = string.format('%.0f', expiresAt), -- the expiry sorted set's score
      record = string.format('%015.0f', expiresAt), -- the candidate record's first 15 digits
    }
    genExpiry[e.gen] = (g + 1) * granule
    byTtl[ttlArg] = e
  end
  expiries[k] = e
  gensOf[k] = e.gen
  slots[k] = -1
  if olds[k] then
    local oldSlot, oldBands, oldGen = parseMeta(olds[k])
    if oldSlot >= 0 then
      leaveBands(bprefix, code(oldSlot), oldBands, oldGen)
      redis.call('HDEL', vec, oldSlot)
      holdSlot(held, oldSlot, holdUntil())
      heldAny = true
    end
  end
  if slots[k] < 0 and bandsOf[k] ~= '' then needSlot[#needSlot + 1] = k end
end

-- 2. Slots for the new entries: held ones whose hold has passed first (one ZRANGEBYSCORE, one ZREM), then
--    freed ones (one LPOP), then fresh ones (one INCRBY).
if #needSlot > 0 then
  local taken = redis.call('ZRANGEBYSCORE', held, '-inf', nowText, 'LIMIT', '0', tostring(#needSlot))
  if #taken > 0 then redis.call('ZREM', held, unpack(taken)) end
  if #taken < #needSlot then
    local popped = redis.call('LPOP', free, #needSlot - #taken)
    if popped then
      for _, slot in ipairs(popped) do taken[#taken + 1] = slot end
    end
  end
  local fresh = #needSlot - #taken
  local last = fresh > 0 and redis.call('INCRBY', nextSlot, fresh) or 0
  for i, k in ipairs(needSlot) do
    local slot = taken[i] and tonumber(taken[i]) or (last - fresh + (i - #taken) - 1)
    -- out of slots: found by its exact key only
    if slot <= MAX_SLOT then
      slots[k] = slot
      -- its text for the vec hash's field and the meta record: as the free list or held set holds it
      -- (pushed from the number, so the same digits), else made once here
      slotTexts[k] = taken[i] or tostring(slot)
    end
  end
end

-- 3. The entries and their records.
for k = 1, n do
  local a = A + (k - 1) * 6
  local id, slot, gen = ids[k], slots[k], gensOf[k]
  local bands = slot >= 0 and bandsOf[k] or ''
  redis.call('SET', KEYS[9 + k], entryRecord(ARGV[a + 3], ARGV[a + 2], nowText), 'PX', ARGV[a + 5])
  local slotText = slotTexts[k] or slot
  if slot >= 0 then
    vecArgs[#vecArgs + 1] = slotText
    vecArgs[#vecArgs + 1] = expiries[k].record .. id .. '\n' .. ARGV[a + 4] .. ARGV[a + 3]
    if bands ~= '' then joinedEvent(slotText, gen, bands, id) end
    if not genSeen[gen] then
      genSeen[gen] = true
      genOrder[#genOrder + 1] = gen
    end
    if genExpiry[gen] - now > genLeft then genLeft = genExpiry[gen] - now end
  end
  metaArgs[#metaArgs + 1] = id
  metaArgs[#metaArgs + 1] = slotText .. '|' .. bands .. '|' .. gen
  lruArgs[#lruArgs + 1] = nowText
  lruArgs[#lruArgs + 1] = id
  expArgs[#expArgs + 1] = expiries[k].at
  expArgs[#expArgs + 1] = id
end

if #vecArgs > 0 then redis.call('HSET', vec, unpack(vecArgs)) end
for _, gen in ipairs(genOrder) do
  local bucketExpiry = string.format('%.0f', genExpiry[gen])
  if redis.call('ZADD', gens, 'GT', bucketExpiry, gen) == 1 then
    -- a new generation: forget those whose buckets have expired
    newGen = 1
    redis.call('ZREMRANGEBYSCORE', gens, '-inf', nowText)
  end
end
redis.call('HSET', meta, unpack(metaArgs))
redis.call('ZADD', lru, unpack(lruArgs))
redis.call('ZADD', exp, unpack(expArgs))

-- The containers live as long as their longest-lived member; all of them share one expiry, so one PTTL
-- tells it. The vec hash's when this call wrote to it: its entries are a subset of the meta hash's, so
-- whenever the meta hash was emptied (gone) and made anew by this call, so was the vec hash (PTTL -1), and
-- a vec hash made anew under a meta hash that stayed also shows -1.
local left = redis.call('PTTL', #vecArgs > 0 and vec or meta)
if left < maxTtl then
  local life = math.max(2 * maxTtl + 1000, left)
  for _, key in ipairs({ lru, exp, meta, vec, gens, free, held, stream }) do redis.call('PEXPIRE', key, life) end
  -- The slot counter is never shortened: it outlives every entry numbered from it, and the scope's deletion
  -- by the hold time (semantic-drop.lua), so no slot number is given out again while a process may use a
  -- record of it.
  if redis.call('PTTL', nextSlot) < life then redis.call('PEXPIRE', nextSlot, life) end
end

local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', nowText, 'LIMIT', '0', ARGV[4])
for _, member in ipairs(expired) do drop(member) end

local evicted = 0
local over = redis.call('ZCARD', lru) - maxEntries
if over > 0 then
  -- The least recently used go first; the new entries may tie with the oldest on the millisecond, so they
  -- are skipped here (spares) and go only when the others are not enough, earliest stored first (as if
  -- each store had evicted on its own).
  local victims = redis.call('ZRANGE', lru, 0, over + n - 1)
  for _, member in ipairs(victims) do
    if evicted >= over then break end
    if not stored[member] then
      evict(member)
      evicted = evicted + 1
    end
  end
  for k = 1, n - 1 do
    if evicted >= over then break end
    evict(ids[k])
    slots[k] = -1
    evicted = evicted + 1
  end
end
if pushed and redis.call('PTTL', free) == -1 then
  local left = redis.call('PTTL', meta)
  if left > 0 then redis.call('PEXPIRE', free, left) else redis.call('DEL', free) end
end
if heldAny and redis.call('PTTL', held) == -1 then
  -- as long as the scope (a held set that went with an emptied scope only loses slot numbers; the counter
  -- stays, so none is reused early)
  local left = redis.call('PTTL', meta)
  if left > 0 then redis.call('PEXPIRE', held, left) else redis.call('DEL', held) end
end
-- Whether the stream holds nothing after the storing process's mirror position: then this call's entry is
-- the next one for that mirror, and the process applies it from the reply (its own events, short) instead
-- of reading it back through its next lookup (includes/slot-codes.lua ownEvents). An exclusive range: no
-- entry's text is read when there is none.
local followsMirror = since ~= '' and #redis.call('XRANGE', stream, '(' .. since, '+', 'COUNT', '1') == 0
local streamId = publishBands(stream, meta)
local out = { evicted, #expired, newGen, genLeft, now }
for k = 1, n do out[5 + k] = slots[k] end
if followsMirror and streamId then
  out[6 + n] = streamId
  out[7 + n] = table.concat(ownEvents, '\n')
end
return out
