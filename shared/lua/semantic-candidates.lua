--[[
  The second step of a similarity lookup. Node has ranked (from its mirror of the band buckets, semantic-mirror.ts)
  the slots found there by how many bands they share with the query; this script returns the candidate
  records of the first ARGV[4] of those slots whose entry is still alive, in that order, for the exact
  cosine re-rank in Node. Expired entries met on the way are removed with everything that points at them
  (lazy cleanup, at most ARGV[5] per call), and slots with no record are taken out of the query's buckets
  (band events for the mirrors), so neither is ever returned again.

  KEYS[1]  vec hash (slot -> "expires at (15 digits) .. id .. LF .. int8 vector (dense or sparse) .. prompt")
  KEYS[2]  LRU sorted set
  KEYS[3]  expiry sorted set
  KEYS[4]  meta hash (id -> "slot|bands|generation", see includes/slot-codes.lua parseMeta)
  KEYS[5]  free slots list
  KEYS[6]  band stream (band events of the codes taken out, see includes/slot-codes.lua publishBands)
  KEYS[7..] the band keys of the generations the lookup read (band prefix .. generation; only their names
           are used)
  ARGV[1]  entry key prefix
  ARGV[2]  band key prefix
  ARGV[3]  number of slots in ARGV[7]
  ARGV[4]  how many live candidates to return
  ARGV[5]  most stale entries to clean up in this call
  ARGV[6]  the query's band fields ("band index:value", comma-separated)
  ARGV[7]  slots, best first, comma-separated (one argument, not one per slot: cheaper for the client)
  ARGV[8]  '1': also read the entry of the first record returned (the best by shared bands)

  Returns { its id, value JSON, prompt, stored at, record1, record2, ... }: with ARGV[8] '1' the entry (see
  includes/entry-record.lua) of record1, so a similarity hit that answers with it needs no third call ('',
  '', '', '' when not asked, when no record is returned, or when the entry is gone). The entry is read, not
  marked used: the caller marks it only when it answers with it (the guard may refuse it, or the cosine
  re-rank put another first). At 100k entries in bench:semantic it is the answer of 95% of the similarity hits.
  (Picking among the first 1–4 records by their cosine with the query, computed here, cost this script 15–25 µs
  more per call than reading record1's entry, to win 0–3% more of the hits.)
]]
local vec, lru, exp, meta, free, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local eprefix, bprefix = ARGV[1], ARGV[2]
local slots = {}
for s in string.gmatch(ARGV[7] or '', '[^,]+') do slots[#slots + 1] = s end
local n = math.min(tonumber(ARGV[3]), #slots)
local want = tonumber(ARGV[4])
local maxStale = tonumber(ARGV[5])
local out = { '', '', '', '' }
if n == 0 or want < 1 then return out end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- #include slot-codes
-- #include entry-record

local function dropStale(slot, id)
  local rec = id and redis.call('HGET', meta, id)
  if rec then
    local _, bands, gen = parseMeta(rec)
    leaveBands(bprefix, slot, bands, gen)
    redis.call('HDEL', meta, id)
    redis.call('RPUSH', free, slot)
    if redis.call('PTTL', free) < 0 then
      local left = redis.call('PTTL', meta)
      if left > 0 then redis.call('PEXPIRE', free, left) else redis.call('DEL', free) end
    end
  else
    -- no record of where it is: take it out of the buckets at hand; the slot is not reused
    local fields = {}
    for f in string.gmatch(ARGV[6], '[^,]+') do fields[#fields + 1] = f end
    -- (the buckets are the mirrors': an event per generation read)
    if #fields > 0 then
      local slotText, text = string.format('%d', slot), table.concat(fields, ',')
      for k = 7, #KEYS do leftEvent(slotText, string.sub(KEYS[k], #bprefix + 1), text) end
    end
  end
  if id then
    redis.call('ZREM', lru, id)
    redis.call('ZREM', exp, id)
    redis.call('DEL', eprefix .. id)
    redis.call('HDEL', vec, slot)
  end
end

-- The records are read `want` at a time: the spares are read only when expired entries took places.
local stale = 0
local from = 1
while from <= n do
  local to = math.min(n, from + want - (#out - 4) - 1)
  local records = redis.call('HMGET', vec, unpack(slots, from, to))
  for j = 1, to - from + 1 do
    local r = records[j]
    if r and tonumber(string.sub(r, 1, 15)) > now then
      out[#out + 1] = r
      if #out - 4 >= want then break end
    elseif stale < maxStale then
      stale = stale + 1
      local id
      if r then
        local nl = string.find(r, '\n', 16, true)
        id = string.sub(r, 16, nl - 1)
      end
      dropStale(tonumber(slots[from + j - 1]), id)
    end
  end
  if #out - 4 >= want then break end
  from = to + 1
end

publishBands(stream, meta)

-- The likeliest answer: the entry of the first record, the best by shared bands.
if ARGV[8] == '1' and #out > 4 then
  local r = out[5]
  local nl = string.find(r, '\n', 16, true)
  if nl then
    local id = string.sub(r, 16, nl - 1)
    local e = readEntry(eprefix .. id)
    if e then out[1], out[2], out[3], out[4] = id, e[1], e[2], e[3] end
  end
end
return out
