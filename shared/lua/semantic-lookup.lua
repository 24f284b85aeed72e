--[[
  A lookup's reads in one round trip: the exact key first (unless ARGV[2] is '0'), then the query's band
  buckets in every live generation of the scope (see semantic-set.lua), one HMGET per generation. When the exact
  entry exists it is answered (and marked used) and the buckets are not read at all.

  KEYS[1]  entry hash of the normalised prompt
  KEYS[2]  LRU sorted set of the scope
  KEYS[3]  gens sorted set of the scope (generation -> expiry of its buckets)
  ARGV[1]  id
  ARGV[2]  '1': read the exact entry first; '0': the buckets only
  ARGV[3]  band key prefix (+ generation = its hash of buckets)
  ARGV[4]  most generations to read (those whose buckets expire last)
  ARGV[5..] the query's bands as "band index:value (base 36)" (the hash fields), in band order

  Returns { 1, value JSON, prompt, stored at } on an exact hit,
          { 0, generations (comma-separated), bucket 1, bucket 2, ... } otherwise: the buckets of the first
          generation in band order, then those of the next (a missing bucket is nil)
]]
if ARGV[2] == '1' then
  local r = redis.call('HMGET', KEYS[1], 'v', 'p', 't')
  if r[1] then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now), ARGV[1])
    return { 1, r[1], r[2], r[3] }
  end
end
local gens = {}
for _, gen in ipairs(redis.call('ZRANGE', KEYS[3], -tonumber(ARGV[4]), -1)) do
  -- hash generations only: entries of older layouts are found by their exact key until they expire
  if string.byte(gen, 1) == 104 then gens[#gens + 1] = gen end
end
local out = { 0, table.concat(gens, ',') }
if #ARGV < 5 then return out end
for _, gen in ipairs(gens) do
  local vals = redis.call('HMGET', ARGV[3] .. gen, unpack(ARGV, 5, #ARGV))
  for i = 1, #ARGV - 4 do out[#out + 1] = vals[i] end
end
return out
