--[[ Shared by the semantic-cache scripts (inserted where a script says `-- #include slot-codes`):
  code(slot): the 3-byte code of an entry slot; withoutCode(s, c): a bucket without one code (only at a
  3-byte boundary); unpackFrom(key, c): removes one code from a string bucket, deleting it when it empties;
  leaveFields(key, c, fields): the same for the buckets of a hash (earlier versions); parseMeta(rec),
  bandFields(bands), bandKey(prefix, gen, i, v) and leaveBands(prefix, slot, bands, gen, slotText) read the
  meta record and find an entry's buckets; dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member, held, holdUntil) removes one entry
  everywhere and returns (entry keys deleted, whether its slot went back on the free list): with `held`
  given (an entry that may still be live), its slot is held until holdUntil instead (holdSlot).

  Layouts of band buckets: a generation named "h<class>.<g>" has its buckets in the processes' mirrors only
  (semantic-mirror.ts), kept from the scope's band stream: a store, eviction or cleanup changes no bucket in
  Redis, it notes band events, and publishBands(stream, meta) appends the call's events as ONE stream entry
  (field "e": lines "+slot generation fields" for an entry that joined its buckets, "-slot generation
  fields" for one that left them, fields = its band fields, comma-separated, joined by LF), the stream
  trimmed to about BAND_STREAM_LEN entries; a new stream gets the scope's expiry, and with the scope emptied
  the stream goes. A mirror is built from the meta records (semantic-mirror.lua). Hashes of such
  generations written by earlier versions (one hash per generation, field "band index:value") are left to
  expire. Older generations ("<class>.<g>") and entries without one kept one string key per bucket, still
  understood here so their entries are removed cleanly. ]]
local BAND_STREAM_LEN = '2048'
local bandEvents = {}
-- The same events as the storing process needs them (semantic-set.lua's reply): a join of one of the call's
-- own entries as "*id slot generation", without the band fields that process sent; the others as they are.
local ownEvents = {}

-- id: the entry's id when it is one of a store call's own entries (its join then goes to ownEvents short)
local function joinedEvent(slotText, gen, fields, id)
  local line = '+' .. slotText .. ' ' .. gen .. ' ' .. fields
  bandEvents[#bandEvents + 1] = line
  ownEvents[#ownEvents + 1] = id and ('*' .. id .. ' ' .. slotText .. ' ' .. gen) or line
end

-- slotText: the slot's decimal text; fields: its band fields as text ("index:value", comma-separated)
local function leftEvent(slotText, gen, fields)
  local line = '-' .. slotText .. ' ' .. gen .. ' ' .. fields
  bandEvents[#bandEvents + 1] = line
  ownEvents[#ownEvents + 1] = line
end

-- Appends the call's events to the stream as one entry; returns its id (nil when there were none).
local function publishBands(stream, meta)
  if #bandEvents == 0 then return nil end
  local text = table.concat(bandEvents, '\n')
  bandEvents = {}
  -- NOMKSTREAM: an existing stream (the common case) takes the entry and keeps its expiry, with no PTTL to
  -- ask whether the stream is new
  local id = redis.call('XADD', stream, 'NOMKSTREAM', 'MAXLEN', '~', BAND_STREAM_LEN, '*', 'e', text)
  if not id then
    -- a new stream: as long as the scope; with the scope emptied, gone (a mirror that read it rebuilds)
    id = redis.call('XADD', stream, 'MAXLEN', '~', BAND_STREAM_LEN, '*', 'e', text)
    local left = redis.call('PTTL', meta)
    if left > 0 then redis.call('PEXPIRE', stream, left) else redis.call('DEL', stream) end
  end
  return id
end
local function code(slot)
  return string.char(math.floor(slot / 65536) % 256, math.floor(slot / 256) % 256, slot % 256)
end

local function withoutCode(s, c)
  local pos = 1
  while true do
    local i = string.find(s, c, pos, true)
    if not i then return s end
    if (i - 1) % 3 == 0 then return string.sub(s, 1, i - 1) .. string.sub(s, i + 3) end
    pos = i + 1
  end
end

local function unpackFrom(key, c)
  local s = redis.call('GET', key)
  if not s then return end
  local out = withoutCode(s, c)
  if out == s then return end
  if out == '' then
    redis.call('DEL', key)
  else
    redis.call('SET', key, out, 'KEEPTTL')
  end
end

-- Removes code c from the fields of one hash generation (one HMGET, then at most one HSET and one HDEL).
local function leaveFields(key, c, fields)
  if #fields == 0 then return end
  local vals = redis.call('HMGET', key, unpack(fields))
  local set, del = {}, {}
  for k = 1, #fields do
    local s = vals[k]
    if s then
      local out = withoutCode(s, c)
      if out == '' then
        del[#del + 1] = fields[k]
      elseif out ~= s then
        set[#set + 1] = fields[k]
        set[#set + 1] = out
      end
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
end

-- True for a generation whose buckets are one hash.
local function isHashGen(gen)
  return gen ~= nil and string.byte(gen, 1) == 104 -- 'h'
end

-- The hash fields ("band index:value") of a meta record's bands: its band fields as they are (the form
-- semantic-set.lua writes), or comma-separated band values in band order (records of earlier stores).
local function bandFields(bands)
  local fields = {}
  if string.find(bands, ':', 1, true) then
    for f in string.gmatch(bands, '[^,]+') do fields[#fields + 1] = f end
    return fields
  end
  local i = 0
  for v in string.gmatch(bands, '[^,]+') do
    fields[#fields + 1] = i .. ':' .. v
    i = i + 1
  end
  return fields
end

-- A meta record: "slot|band values" (older entries, band keys without a generation) or
-- "slot|bands|generation" (band keys of that generation; bands: band fields, or band values in records of
-- earlier stores, see bandFields). Returns slot, bands, generation.
local function parseMeta(rec)
  local bar = string.find(rec, '|', 1, true)
  local rest = string.sub(rec, bar + 1)
  local bar2 = string.find(rest, '|', 1, true)
  if bar2 then
    return tonumber(string.sub(rec, 1, bar - 1)), string.sub(rest, 1, bar2 - 1), string.sub(rest, bar2 + 1)
  end
  return tonumber(string.sub(rec, 1, bar - 1)), rest, nil
end

-- The band bucket key of band i (0-based) with value v (base 36) in generation gen (nil: none).
local function bandKey(bprefix, gen, i, v)
  if gen then return bprefix .. gen .. ':' .. i .. ':' .. v end
  return bprefix .. i .. ':' .. v
end

-- Takes a slot (a number; slotText its decimal text when the caller has it) out of the buckets named by a
-- meta record's bands and generation.
local function leaveBands(bprefix, slot, bands, gen, slotText)
  if isHashGen(gen) then
    -- the buckets are the mirrors': an event only, naming the band fields: the record's own text when it
    -- holds them in that form (as semantic-set.lua writes it: not split and joined again), else made from
    -- its band values
    local fields = bands
    if not string.find(bands, ':', 1, true) then fields = table.concat(bandFields(bands), ',') end
    if fields ~= '' then leftEvent(slotText or string.format('%d', slot), gen, fields) end
    return
  end
  -- string keys per bucket: older entries only, their records hold band values
  local c = code(slot)
  local i = 0
  for v in string.gmatch(bands, '[^,]+') do
    unpackFrom(bandKey(bprefix, gen, i, v), c)
    i = i + 1
  end
end

-- Frees a slot whose entry may still be live (evicted, invalidated, reported, stored again): a process that
-- read its candidate record keeps it for up to the record trust time (lookup-records.ts), so the slot goes
-- to the held set, reusable from holdUntil (ms) on, not to the free list. A slot freed after its entry
-- expired goes to the free list: no process trusts a record past its expiry.
local function holdSlot(held, slot, holdUntil)
  redis.call('ZADD', held, holdUntil, slot)
end

local function dropEntry(lru, exp, meta, vec, free, eprefix, bprefix, member, held, holdUntil)
  local pushed = false
  local rec = redis.call('HGET', meta, member)
  if rec then
    local slot, bands, gen = parseMeta(rec)
    if slot >= 0 then
      leaveBands(bprefix, slot, bands, gen)
      redis.call('HDEL', vec, slot)
      if held then
        holdSlot(held, slot, holdUntil)
      else
        redis.call('RPUSH', free, slot)
        pushed = true
      end
    end
    redis.call('HDEL', meta, member)
  end
  redis.call('ZREM', lru, member)
  redis.call('ZREM', exp, member)
  return redis.call('DEL', eprefix .. member), pushed
end
