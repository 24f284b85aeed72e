--[[
  Exact key first, then the query's band buckets: one round trip for a lookup whose embedding is cheap to
  compute up front (the in-process hashed embedder). When the exact entry exists it is answered (and
  marked used) and the buckets are not read at all.

  KEYS[1]  entry hash of the normalised prompt
  KEYS[2]  LRU sorted set of the scope
  KEYS[3..] the query's band buckets (strings of packed 3-byte slot numbers)
  ARGV[1]  id

  Returns { 1, value JSON, prompt, stored at } on an exact hit,
          { 0, bucket 1, bucket 2, ... } otherwise (a missing bucket is nil)
]]
local r = redis.call('HMGET', KEYS[1], 'v', 'p', 't')
if r[1] then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now), ARGV[1])
  return { 1, r[1], r[2], r[3] }
end
local out = { 0 }
for i = 3, #KEYS do out[i - 1] = redis.call('GET', KEYS[i]) end
return out
