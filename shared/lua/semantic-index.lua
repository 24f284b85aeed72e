--[[
  Adds a scope to an index set (the scopes of one model, or of one tenant) and keeps the set alive as long
  as the longest-lived entry that needs it (extended to twice the TTL, so not on every store).

  KEYS[1]  index set
  ARGV[1]  scope hash
  ARGV[2]  TTL of the entry being stored, ms

  Returns 1
]]
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < ttl then redis.call('PEXPIRE', KEYS[1], math.max(2 * ttl, left)) end
return 1
