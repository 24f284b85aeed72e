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
  ARGV[7..6+n] the entries' ids, in the order of KEYS[10..] (n entries; together, so the HMGET of their
           previous records takes them as they are)
  ARGV[7+n..] six per entry, in the same order: value JSON, prompt, the prompt's length in bytes (decimal
           text, for the entry record: see includes/entry-record.lua), vector bytes, TTL (ms), band fields
           ("band index:value (base 36)", comma-separated, in band order: the lookup's form, so the script
           appends to them as they come; empty when the vector is zero)

  Numbers become text through string.format('%d') (the ms values are integers, well below 2^53): Lua's own
  conversion (tostring, a number in a concatenation) and string.format('%.0f') go through sprintf's floating
  point path, ~3,500 and ~5,000 instructions each against ~2,000. Per entry the script keeps few tables:
  each Lua operation costs Redis ~100-150 instructions, and a value put in a growing table ~500.

  Returns { evicted, expired removed, 1 when the scope's index records (semantic-index.lua: the model and
            tenant sets invalidate() and the sweep walk) are to be renewed, else 0: this call created a
            generation, or set the containers' expiry (a new scope, or one whose expiry it extended: so a
            scope whose entries join no generation, stored for their exact key only, is indexed from its
            first store), then the ms those records must live at least (until the longest-lived generation
            the call joined expires, or the containers' expiry it set), the call's time (ms: each entry's candidate record starts with
            it plus the entry's TTL), then each entry's slot in the order of KEYS[10..] (-1: none), so the
            process can keep the candidate records it just wrote (lookup-records.ts) instead of reading them;
            then, when ARGV[6] is given and the call published an entry: that entry's id, the id of the
            stream entry before it (ARGV[6] when the stream held nothing after it), and its events as the
            process applies them to its mirror (includes/slot-codes.lua ownEvents: its own entries' joins
            without their band fields) }
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
  holdText = holdText or string.format('%d', now + tonumber(ARGV[5]))
  return holdText
end
local since = ARGV[6]
local n = #KEYS - 9
local I = 6 -- the ids are ARGV[I + 1 .. I + n]
local A = 6 + n -- the entries' other arguments start after ARGV[A], six each

-- #include slot-codes
-- #include entry-record

-- Removes entries everywhere, as includes/slot-codes.lua dropEntry does one by one, with one command of each
-- kind for all of them (an HMGET of their records, then one HDEL, RPUSH or ZADD, ZREM, DEL each): the
-- expired ones of a call (`hold` nil: their slots back on the free list) or the ones it evicts (their slots
-- held until `hold`, they may still be live). A store call of a full scope or one whose entries expire
-- removes about as many entries as it stores; one by one that was seven commands per entry.
local function dropEntries(members, hold)
  if #members == 0 then return end
  local recs = redis.call('HMGET', meta, unpack(members))
  local freed, holds, gone, entryKeys = {}, {}, {}, {}
  for i, member in ipairs(members) do
    local rec = recs[i]
    if rec then
      local slot, bands, gen = parseMeta(rec)
      if slot >= 0 then
        -- the slot as the record's text (the digits a number would be formatted to, without sprintf)
        local slotText = string.sub(rec, 1, string.find(rec, '|', 1, true) - 1)
        leaveBands(bprefix, slot, bands, gen, slotText)
        freed[#freed + 1] = slotText
        if hold then
          holds[#holds + 1] = hold
          holds[#holds + 1] = slotText
        end
      end
      gone[#gone + 1] = member
    end
    entryKeys[i] = eprefix .. member
  end
  if #freed > 0 then
    redis.call('HDEL', vec, unpack(freed))
    if hold then
      redis.call('ZADD', held, unpack(holds))
      heldAny = true
    else
      redis.call('RPUSH', free, unpack(freed))
      pushed = true
    end
  end
  if #gone > 0 then redis.call('HDEL', meta, unpack(gone)) end
  redis.call('ZREM', lru, unpack(members))
  redis.call('ZREM', exp, unpack(members))
  redis.call('DEL', unpack(entryKeys))
end

local vecArgs, metaArgs, lruArgs, expArgs = {}, {}, {}, {}
local genOrder, genSeen, genExpiry = {}, {}, {} -- the generations joined, and each one's bucket expiry
local maxTtl = 0
local newGen = 0
local genLeft = 0
-- The reply: its first five fields are set at the end; each entry's slot from the sixth on (-1: none).
local out = { 0, 0, 0, 0, 0 }
-- 1. Each entry's generation, and its previous record (one HMGET for all): a prompt stored again leaves its
--    old buckets (the generation may differ) and its slot, which is held (a process may hold the old record
--    for a while, see ARGV[5]); it takes a new one.
local olds = redis.call('HMGET', meta, unpack(ARGV, I + 1, I + n))
local needSlots = 0
-- Each TTL's expiry, generation and their texts, made once per call: a call's stores mostly share one TTL
local byTtl = {}
for k = 1, n do
  local b = A + (k - 1) * 6
  local ttlArg = ARGV[b + 5]
  if not byTtl[ttlArg] then
    local ttl = tonumber(ttlArg)
    if ttl > maxTtl then maxTtl = ttl end
    local expiresAt = now + ttl
    local class = 0
    while 2 ^ class < ttl do class = class + 1 end
    local granule = 2 ^ class
    local g = math.ceil(expiresAt / granule)
    local at = string.format('%d', expiresAt)
    local e = {
      gen = string.format('h%d.%d', class, g),
      at = at, -- the expiry sorted set's score
      record = string.rep('0', 15 - #at) .. at, -- the candidate record's first 15 digits
    }
    genExpiry[e.gen] = (g + 1) * granule
    byTtl[ttlArg] = e
  end
  out[5 + k] = -1
  local old = olds[k]
  if old then
    local oldSlot, oldBands, oldGen = parseMeta(old)
    if oldSlot >= 0 then
      leaveBands(bprefix, oldSlot, oldBands, oldGen)
      redis.call('HDEL', vec, oldSlot)
      holdSlot(held, oldSlot, holdUntil())
      heldAny = true
    end
  end
  if ARGV[b + 6] ~= '' then needSlots = needSlots + 1 end
end

-- 2. Slots for the new entries with band fields, in order: held ones whose hold has passed first (one
--    ZRANGEBYSCORE, one ZREM), then freed ones (one LPOP), then fresh ones (one INCRBY).
local slotTexts = {}
if needSlots > 0 then
  local taken = redis.call('ZRANGEBYSCORE', held, '-inf', nowText, 'LIMIT', '0', string.format('%d', needSlots))
  if #taken > 0 then redis.call('ZREM', held, unpack(taken)) end
  if #taken < needSlots then
    local popped = redis.call('LPOP', free, string.format('%d', needSlots - #taken))
    if popped then
      for _, slot in ipairs(popped) do taken[#taken + 1] = slot end
    end
  end
  local fresh = needSlots - #taken
  local last = fresh > 0 and redis.call('INCRBY', nextSlot, string.format('%d', fresh)) or 0
  local i = 0
  for k = 1, n do
    if ARGV[A + (k - 1) * 6 + 6] ~= '' then
      i = i + 1
      local slot = taken[i] and tonumber(taken[i]) or (last - fresh + (i - #taken) - 1)
      -- out of slots: found by its exact key only
      if slot <= MAX_SLOT then
        out[5 + k] = slot
        -- its text for the vec hash's field and the meta record: as the free list or held set holds it
        -- (pushed from the number, so the same digits), else made once here
        slotTexts[k] = taken[i] or string.format('%d', slot)
      end
    end
  end
end

-- 3. The entries and their records.
for k = 1, n do
  local b = A + (k - 1) * 6
  local id, slot, e = ARGV[I + k], out[5 + k], byTtl[ARGV[b + 5]]
  local gen = e.gen
  local prompt = ARGV[b + 2]
  redis.call('SET', KEYS[9 + k], entryRecord(prompt, ARGV[b + 3], ARGV[b + 1], nowText), 'PX', ARGV[b + 5])
  local bands, slotText = '', '-1'
  if slot >= 0 then
    bands, slotText = ARGV[b + 6], slotTexts[k]
    local v = #vecArgs
    vecArgs[v + 1], vecArgs[v + 2] = slotText, e.record .. id .. '\n' .. ARGV[b + 4] .. prompt
    joinedEvent(slotText, gen, bands, id)
    if not genSeen[gen] then
      genSeen[gen] = true
      genOrder[#genOrder + 1] = gen
    end
    if genExpiry[gen] - now > genLeft then genLeft = genExpiry[gen] - now end
  end
  local m = 2 * k
  metaArgs[m - 1], metaArgs[m] = id, slotText .. '|' .. bands .. '|' .. gen
  lruArgs[m - 1], lruArgs[m] = nowText, id
  expArgs[m - 1], expArgs[m] = e.at, id
end

if #vecArgs > 0 then redis.call('HSET', vec, unpack(vecArgs)) end
for _, gen in ipairs(genOrder) do
  local bucketExpiry = string.format('%d', genExpiry[gen])
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
local containersLife = 0 -- the containers' expiry this call set (ms from now), 0 when it set none
if left < maxTtl then
  local life = math.max(2 * maxTtl + 1000, left)
  containersLife = life
  local lifeText = string.format('%d', life)
  for _, key in ipairs({ lru, exp, meta, vec, gens, free, held, stream }) do redis.call('PEXPIRE', key, lifeText) end
  -- The slot counter is never shortened: it outlives every entry numbered from it, and the scope's deletion
  -- by the hold time (semantic-drop.lua), so no slot number is given out again while a process may use a
  -- record of it.
  if redis.call('PTTL', nextSlot) < life then redis.call('PEXPIRE', nextSlot, lifeText) end
end

local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', nowText, 'LIMIT', '0', ARGV[4])
dropEntries(expired)

local evicted = 0
local over = redis.call('ZCARD', lru) - maxEntries
if over > 0 then
  -- The least recently used go first; the new entries may tie with the oldest on the millisecond, so they
  -- are skipped here (spares) and go only when the others are not enough, earliest stored first (as if
  -- each store had evicted on its own).
  local stored = {}
  for k = 1, n do stored[ARGV[I + k]] = true end
  local victims = redis.call('ZRANGE', lru, '0', string.format('%d', over + n - 1))
  local evict = {}
  for _, member in ipairs(victims) do
    if evicted >= over then break end
    if not stored[member] then
      evict[#evict + 1] = member
      evicted = evicted + 1
    end
  end
  for k = 1, n - 1 do
    if evicted >= over then break end
    evict[#evict + 1] = ARGV[I + k]
    out[5 + k] = -1
    evicted = evicted + 1
  end
  dropEntries(evict, holdUntil())
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
-- The stream's last entry before this call's own (the entry this call's follows), for the storing process's
-- mirror at ARGV[6]: none after that position (the common case) means its position is that entry; else the
-- last one after it. An exclusive range: no entry's text is read when there is none; backwards from the
-- stream's end, so that it does not walk the position's stream node from the node's first entry (see
-- semantic-lookup.lua). The process applies the call's own events from the reply (short: its own joins
-- without their band fields, includes/slot-codes.lua ownEvents) once its mirror is at that entry, at once or
-- when a lookup's catch-up or another store's reply brings it there, instead of reading them back through its
-- next lookup.
local prevId
if since ~= '' then
  local r = redis.call('XREVRANGE', stream, '+', '(' .. since, 'COUNT', '1')
  prevId = r[1] and r[1][1] or since
end
local streamId = publishBands(stream, meta)
if containersLife > 0 then
  newGen = 1
  if containersLife > genLeft then genLeft = containersLife end
end
out[1], out[2], out[3], out[4], out[5] = evicted, #expired, newGen, genLeft, now
if prevId and streamId then
  out[6 + n] = streamId
  out[7 + n] = prevId
  out[8 + n] = table.concat(ownEvents, '\n')
end
return out
