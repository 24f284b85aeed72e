--[[
  Reads one entry and, when it exists, marks it used (LRU). Used for the exact lookup and to fetch the
  value of the winning similarity candidate.

  KEYS[1]  entry (see includes/entry-record.lua)
  KEYS[2]  LRU sorted set of the scope
  ARGV[1]  id

  Returns { value JSON, prompt, stored at } or nil when the entry does not exist (or has expired)
]]
-- #include entry-record

local r = readEntry(KEYS[1])
if not r then return nil end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now), ARGV[1])
return r
