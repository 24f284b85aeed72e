--[[
  A lookup's reads in one round trip: the exact key first (unless ARGV[2] is '0'), then the query's band
  buckets in every live generation of the scope (see semantic-set.lua), read with one MGET. When the exact
  entry exists it is answered (and marked used) and the buckets are not read at all.

  KEYS[1]  entry hash of the normalised prompt
  KEYS[2]  LRU sorted set of the scope
  KEYS[3]  gens sorted set of the scope (generation -> expiry of its buckets)
  ARGV[1]  id
  ARGV[2]  '1': read the exact entry first; '0': the buckets only
  ARGV[3]  band key prefix
  ARGV[4]  most generations to read (those whose buckets expire last)
  ARGV[5..] the query's bands as "band index:value (base 36)", in band order

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
local gens = redis.call('ZRANGE', KEYS[3], -tonumber(ARGV[4]), -1)
if #gens == 0 then return { 0, '' } end
local keys = {}
for _, gen in ipairs(gens) do
  for i = 5, #ARGV do keys[#keys + 1] = ARGV[3] .. gen .. ':' .. ARGV[i] end
end
local out = redis.call('MGET', unpack(keys))
table.insert(out, 1, table.concat(gens, ','))
table.insert(out, 1, 0)
return out
