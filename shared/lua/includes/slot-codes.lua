--[[ Shared by the semantic-cache scripts (inserted where a script says `-- #include slot-codes`):
  code(slot): the 3-byte code of an entry slot; unpackFrom(key, c): removes one code from a band bucket
  (only at a 3-byte boundary), deleting the bucket when it empties. ]]
local function code(slot)
  return string.char(math.floor(slot / 65536) % 256, math.floor(slot / 256) % 256, slot % 256)
end

local function unpackFrom(key, c)
  local s = redis.call('GET', key)
  if not s then return end
  local pos = 1
  while true do
    local i = string.find(s, c, pos, true)
    if not i then return end
    if (i - 1) % 3 == 0 then
      if #s == 3 then
        redis.call('DEL', key)
      else
        redis.call('SET', key, string.sub(s, 1, i - 1) .. string.sub(s, i + 3), 'KEEPTTL')
      end
      return
    end
    pos = i + 1
  end
end
