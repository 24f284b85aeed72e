--[[
  Stores one entry of the semantic cache, then keeps its scope tidy: removes up to ARGV[10] expired
  entries and evicts the least recently used entries beyond ARGV[6].

  Each entry holds a slot number (0 .. 2^24-1, reused after it goes). Band buckets are strings of packed
  3-byte slot numbers (a lookup reads all of its buckets with one MGET and counts in Node); the vec hash
  maps a slot to "expires at (15 digits) .. id .. LF .. int8 vector .. prompt", what the re-rank needs.

  Band buckets belong to a generation, so a store never has to read or extend the expiry of the buckets it
  joins: a generation is "h<class>.<g>", class = ceil(log2(TTL ms)), G = 2^class ms, g = ceil(expires at / G),
  and its buckets expire at (g + 1) * G, after every entry in it. A generation's buckets are the fields of
  one hash ("band index:value" -> packed codes, see slot-codes), so a store appends its code to its 20
  buckets with one HMGET and one HSET, and sets the hash's expiry only when it creates the hash. The gens
  sorted set maps each generation to that expiry; a lookup reads the buckets of the live ones (usually two
  per TTL in use) with one HMGET each.
  The scope's containers share one expiry: extended (to twice the TTL, plus a second) only when the meta
  hash or the vec hash would not outlive the new entry.

  Every key is in the scope's hash slot ({scope hash} tag). Entry keys and band keys of evicted or expired
  entries are built from ARGV[7]/ARGV[8] (same tag, so the same cluster slot).

  KEYS[1]  entry hash: v = value JSON, p = prompt, t = stored at (ms, Redis clock)
  KEYS[2]  LRU sorted set: id -> last store or hit (ms)
  KEYS[3]  expiry sorted set: id -> expires at (ms)
  KEYS[4]  meta hash: id -> "slot|band values|generation" (band values comma-separated, base 36)
  KEYS[5]  vec hash: slot -> candidate record (see above)
  KEYS[6]  free slots list
  KEYS[7]  next-slot counter
  KEYS[8]  gens sorted set: generation -> expiry of its buckets (ms)
  ARGV[1]  id
  ARGV[2]  value JSON
  ARGV[3]  prompt
  ARGV[4]  vector bytes
  ARGV[5]  TTL, ms
  ARGV[6]  most entries in the scope
  ARGV[7]  entry key prefix (+ id = entry key)
  ARGV[8]  band key prefix (+ generation = the generation's hash of band buckets)
  ARGV[9]  band values, comma-separated, in band order (base 36; empty when the vector is zero)
  ARGV[10] most expired entries to remove in this call

  Returns { evicted, expired removed, 1 when this store created its generation (else 0), ms until the
            generation's buckets expire }
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local ttl = tonumber(ARGV[5])
local maxEntries = tonumber(ARGV[6])
local eprefix, bprefix = ARGV[7], ARGV[8]
local lru, exp, meta, vec, free, nextSlot, gens = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local MAX_SLOT = 16777215
local pushed = false -- a slot went back on the free list (which may be new, without an expiry)

-- #include slot-codes

local function drop(member)
  local rec = redis.call('HGET', meta, member)
  if rec then
    local slot, bands, gen = parseMeta(rec)
    if slot >= 0 then
      leaveBands(bprefix, code(slot), bands, gen)
      redis.call('HDEL', vec, slot)
      redis.call('RPUSH', free, slot)
      pushed = true
    end
    redis.call('HDEL', meta, member)
  end
  redis.call('ZREM', lru, member)
  redis.call('ZREM', exp, member)
  redis.call('DEL', eprefix .. member)
end

local expiresAt = now + ttl
local class = 0
while 2 ^ class < ttl do class = class + 1 end
local granule = 2 ^ class
local g = math.ceil(expiresAt / granule)
local gen = 'h' .. class .. '.' .. string.format('%.0f', g)
local bucketExpiry = string.format('%.0f', (g + 1) * granule)

local bands = ARGV[9]
local slot = -1
local newGen = 0
local old = redis.call('HGET', meta, id)
if old then
  -- The same prompt again: keep its slot, leave its old buckets (the generation may differ).
  local oldSlot, oldBands, oldGen = parseMeta(old)
  if oldSlot >= 0 then
    leaveBands(bprefix, code(oldSlot), oldBands, oldGen)
    if bands ~= '' then
      slot = oldSlot
    else
      redis.call('HDEL', vec, oldSlot)
      redis.call('RPUSH', free, oldSlot)
      pushed = true
    end
  end
end
if slot < 0 and bands ~= '' then
  slot = tonumber(redis.call('LPOP', free) or (redis.call('INCR', nextSlot) - 1))
  if slot > MAX_SLOT then slot = -1 end -- out of slots: found by its exact key only
end
if slot < 0 then bands = '' end

redis.call('HSET', KEYS[1], 'v', ARGV[2], 'p', ARGV[3], 't', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ttl)
if slot >= 0 then
  redis.call('HSET', vec, slot, string.format('%015.0f', expiresAt) .. id .. '\n' .. ARGV[4] .. ARGV[3])
  local c = code(slot)
  local bkey = bprefix .. gen
  local fields = bandFields(bands)
  local cur = redis.call('HMGET', bkey, unpack(fields))
  local args = {}
  local created = true -- none of its fields there: the hash may be new (an existing one has this expiry)
  for k = 1, #fields do
    if cur[k] then created = false end
    args[#args + 1] = fields[k]
    args[#args + 1] = (cur[k] or '') .. c
  end
  redis.call('HSET', bkey, unpack(args))
  if created then redis.call('PEXPIREAT', bkey, bucketExpiry) end
  if redis.call('ZADD', gens, 'GT', bucketExpiry, gen) == 1 then
    -- a new generation: forget those whose buckets have expired
    newGen = 1
    redis.call('ZREMRANGEBYSCORE', gens, '-inf', string.format('%.0f', now))
  end
end
redis.call('HSET', meta, id, slot .. '|' .. bands .. '|' .. gen)
redis.call('ZADD', lru, string.format('%.0f', now), id)
redis.call('ZADD', exp, string.format('%.0f', expiresAt), id)

-- The containers live as long as their longest-lived member; all of them share one expiry.
local metaLeft = redis.call('PTTL', meta)
local vecLeft = slot >= 0 and redis.call('PTTL', vec) or metaLeft
if metaLeft < ttl or vecLeft < ttl then
  local life = math.max(2 * ttl + 1000, metaLeft, vecLeft)
  for _, key in ipairs({ lru, exp, meta, vec, nextSlot, gens, free }) do redis.call('PEXPIRE', key, life) end
end

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
if pushed and redis.call('PTTL', free) == -1 then
  local left = redis.call('PTTL', meta)
  if left > 0 then redis.call('PEXPIRE', free, left) else redis.call('DEL', free) end
end
return { evicted, #expired, newGen, (g + 1) * granule - now }
