--[[
  Stores one entry of the semantic cache, then keeps its scope tidy: removes up to ARGV[10] expired
  entries and evicts the least recently used entries beyond ARGV[6].

  Each entry holds a slot number (0 .. 2^24-1, reused after it goes). Band buckets are strings of packed
  3-byte slot numbers (a lookup reads all of its buckets with one MGET and counts in Node); the vec hash
  maps a slot to "expires at (15 digits) .. id .. LF .. int8 vector .. prompt", what the re-rank needs.

  Every key is in the scope's hash slot ({scope hash} tag). Entry keys and band keys of evicted or expired
  entries are built from ARGV[7]/ARGV[8] (same tag, so the same cluster slot).

  KEYS[1]  entry hash: v = value JSON, p = prompt, t = stored at (ms, Redis clock)
  KEYS[2]  LRU sorted set: id -> last store or hit (ms)
  KEYS[3]  expiry sorted set: id -> expires at (ms)
  KEYS[4]  meta hash: id -> "slot|band values" (band values comma-separated, base 36, in band order)
  KEYS[5]  vec hash: slot -> candidate record (see above)
  KEYS[6]  free slots list
  KEYS[7]  next-slot counter
  KEYS[8..] the entry's band buckets, in band order (none when the vector is zero)
  ARGV[1]  id
  ARGV[2]  value JSON
  ARGV[3]  prompt
  ARGV[4]  vector bytes
  ARGV[5]  TTL, ms
  ARGV[6]  most entries in the scope
  ARGV[7]  entry key prefix (+ id = entry key)
  ARGV[8]  band key prefix (+ band index .. ':' .. value = band bucket key)
  ARGV[9]  band values, comma-separated, in band order (base 36)
  ARGV[10] most expired entries to remove in this call

  Returns { evicted, expired removed }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local ttl = tonumber(ARGV[5])
local maxEntries = tonumber(ARGV[6])
local eprefix, bprefix = ARGV[7], ARGV[8]
local lru, exp, meta, vec, free, nextSlot = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local MAX_SLOT = 16777215

-- #include slot-codes

local function leaveBands(slot, bands)
  local c = code(slot)
  local i = 0
  for v in string.gmatch(bands, '[^,]+') do
    unpackFrom(bprefix .. i .. ':' .. v, c)
    i = i + 1
  end
end

local function parseMeta(rec)
  local bar = string.find(rec, '|', 1, true)
  return tonumber(string.sub(rec, 1, bar - 1)), string.sub(rec, bar + 1)
end

local function drop(member)
  local rec = redis.call('HGET', meta, member)
  if rec then
    local slot, bands = parseMeta(rec)
    if slot >= 0 then
      leaveBands(slot, bands)
      redis.call('HDEL', vec, slot)
      redis.call('RPUSH', free, slot)
    end
    redis.call('HDEL', meta, member)
  end
  redis.call('ZREM', lru, member)
  redis.call('ZREM', exp, member)
  redis.call('DEL', eprefix .. member)
end

-- A container lives as long as its longest-lived member.
local function extend(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

local bands = ARGV[9]
local slot = -1
local append = true
local old = redis.call('HGET', meta, id)
if old then
  -- The same prompt again: keep its slot; move it only if its vector (so its buckets) changed.
  local oldSlot, oldBands = parseMeta(old)
  if oldSlot >= 0 then
    if oldBands == bands then
      append = false
    else
      leaveBands(oldSlot, oldBands)
    end
    if bands ~= '' then
      slot = oldSlot
    else
      redis.call('HDEL', vec, oldSlot)
      redis.call('RPUSH', free, oldSlot)
    end
  end
end
if slot < 0 and bands ~= '' then
  slot = tonumber(redis.call('LPOP', free) or (redis.call('INCR', nextSlot) - 1))
  if slot > MAX_SLOT then slot = -1 end -- out of slots: found by its exact key only
end
if slot < 0 then bands = '' end

local expiresAt = string.format('%015.0f', now + ttl)
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'p', ARGV[3], 't', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ttl)
if slot >= 0 then
  redis.call('HSET', vec, slot, expiresAt .. id .. '\n' .. ARGV[4] .. ARGV[3])
  local c = code(slot)
  for i = 8, #KEYS do
    if append then redis.call('APPEND', KEYS[i], c) end
    extend(KEYS[i])
  end
  extend(vec)
end
redis.call('HSET', meta, id, slot .. '|' .. bands)
redis.call('ZADD', lru, string.format('%.0f', now), id)
redis.call('ZADD', exp, string.format('%.0f', now + ttl), id)
extend(meta)
extend(lru)
extend(exp)
extend(nextSlot)

local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', string.format('%.0f', now), 'LIMIT', 0, tonumber(ARGV[10]))
for _, member in ipairs(expired) do drop(member) end

local evicted = 0
local over = redis.call('ZCARD', lru) - maxEntries
if over > 0 then
  -- one spare: the new entry may tie with the oldest on the millisecond and must not evict itself
  local victims = redis.call('ZRANGE', lru, 0, over)
  for _, member in ipairs(victims) do
    if evicted >= over then break end
    if member ~= id then
      drop(member)
      evicted = evicted + 1
    end
  end
end
if redis.call('EXISTS', free) == 1 then extend(free) end
return { evicted, #expired }
