--[[
  A lookup's reads in one round trip: the exact key first (unless ARGV[2] is '0'), then the query's band
  buckets in every live generation of the scope (see semantic-set.lua), one HMGET per generation. When the exact
  entry exists it is answered (and marked used) and the buckets are not read at all.

  KEYS[1]  entry of the normalised prompt (see includes/entry-record.lua)
  KEYS[2]  LRU sorted set of the scope
  KEYS[3]  gens sorted set of the scope (generation -> expiry of its buckets)
  ARGV[1]  id
  ARGV[2]  '1': read the exact entry first; '0': the buckets only
  ARGV[3]  band key prefix (+ generation = its hash of buckets)
  ARGV[4]  most generations to read (those whose buckets expire last)
  ARGV[5]  the query's bands as "band index:value (base 36)" (the hash fields), comma-separated, in band
           order (one argument: each argument costs the client a few strings to encode)

  Returns { 1, value JSON, prompt, stored at } on an exact hit,
          { 0, generations (comma-separated), buckets } otherwise: every bucket found in the generations read,
          concatenated (packed 3-byte slot codes; the caller counts each slot's occurrences, which is all a
          bucket boundary told it). One reply string instead of one per band and generation: ~160 at
          100k entries, each an object for the client to allocate.
]]
-- #include entry-record

if ARGV[2] == '1' then
  local r = readEntry(KEYS[1])
  if r then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now), ARGV[1])
    return { 1, r[1], r[2], r[3] }
  end
end
local gens = {}
-- the range's ends as strings: a number given to redis.call is formatted with sprintf (~3.5k instructions each,
-- ~4% of a miss's call)
for _, gen in ipairs(redis.call('ZRANGE', KEYS[3], '-' .. ARGV[4], '-1')) do
  -- hash generations only: entries of older layouts are found by their exact key until they expire
  if string.byte(gen, 1) == 104 then gens[#gens + 1] = gen end
end
local out = { 0, table.concat(gens, ',') }
local fields = {}
for f in string.gmatch(ARGV[5] or '', '[^,]+') do fields[#fields + 1] = f end
if #fields == 0 then return out end
local found = {}
for _, gen in ipairs(gens) do
  local vals = redis.call('HMGET', ARGV[3] .. gen, unpack(fields))
  for i = 1, #fields do
    local v = vals[i]
    if v then
      -- whole codes only, so one bucket's stray bytes never shift the next one's codes
      local stray = #v % 3
      if stray ~= 0 then v = string.sub(v, 1, #v - stray) end
      found[#found + 1] = v
    end
  end
end
out[3] = table.concat(found)
return out
