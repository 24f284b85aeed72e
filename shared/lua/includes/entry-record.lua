--[[
  An entry of the semantic cache is one string, written with one SET .. PX (its value and its expiry in one
  command): "stored at (ms, Redis clock) LF prompt length (bytes) LF prompt .. value JSON".
  entryRecord(prompt, promptLength, value, storedAt) builds it (the prompt's length as the storing process
  sends it, decimal text: Lua turns a number into text with sprintf, ~3,000 instructions); readEntry(key)
  returns { value JSON, prompt, stored at } or nil. Entries of the older layout (a hash with fields v, p, t)
  are still read until they expire.
]]
local function entryRecord(prompt, promptLength, value, storedAt)
  return storedAt .. '\n' .. promptLength .. '\n' .. prompt .. value
end

local function readEntry(key)
  local s = redis.pcall('GET', key)
  if type(s) == 'table' and s.err then
    -- WRONGTYPE: the older layout
    local r = redis.call('HMGET', key, 'v', 'p', 't')
    if not r[1] then return nil end
    return r
  end
  if not s then return nil end
  local a = string.find(s, '\n', 1, true)
  local b = a and string.find(s, '\n', a + 1, true)
  if not b then return nil end
  local plen = tonumber(string.sub(s, a + 1, b - 1))
  if not plen then return nil end
  return { string.sub(s, b + 1 + plen), string.sub(s, b + 1, b + plen), string.sub(s, 1, a - 1) }
end
