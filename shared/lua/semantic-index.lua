--[[
  Adds a scope to an index set (the scopes of one model, or of one tenant) and keeps the set alive as long
  as the longest-lived entry that needs it.

  KEYS[1]  index set
  ARGV[1]  scope hash
  ARGV[2]  TTL of the entry being stored, ms

  Returns 1
]]
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
