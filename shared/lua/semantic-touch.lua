--[[
  Marks one entry used (LRU), with Redis's clock as every other mark. Sent without waiting for it when a
  similarity hit answers with the entry the candidates script already read (semantic-candidates.lua).

  KEYS[1]  LRU sorted set of the scope
  ARGV[1]  id

  Returns 1 when the entry was marked, 0 when it is not in the set (removed meanwhile)
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%.0f', now), ARGV[1])
