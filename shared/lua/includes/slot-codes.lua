--[[ Shared by the semantic-cache scripts (inserted where a script says `-- #include slot-codes`):
  code(slot): the 3-byte code of an entry slot; unpackFrom(key, c): removes one code from a band bucket
  (only at a 3-byte boundary), deleting the bucket when it empties; parseMeta(rec), bandKey(prefix, gen, i, v)
  and leaveBands(prefix, c, bands, gen) read the meta record and find an entry's buckets. ]]
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

-- A meta record: "slot|band values" (older entries, band keys without a generation) or
-- "slot|band values|generation" (band keys of that generation). Returns slot, band values, generation.
local function parseMeta(rec)
  local bar = string.find(rec, '|', 1, true)
  local rest = string.sub(rec, bar + 1)
  local bar2 = string.find(rest, '|', 1, true)
  if bar2 then
    return tonumber(string.sub(rec, 1, bar - 1)), string.sub(rest, 1, bar2 - 1), string.sub(rest, bar2 + 1)
  end
  return tonumber(string.sub(rec, 1, bar - 1)), rest, nil
end

-- The band bucket key of band i (0-based) with value v (base 36) in generation gen (nil: none).
local function bandKey(bprefix, gen, i, v)
  if gen then return bprefix .. gen .. ':' .. i .. ':' .. v end
  return bprefix .. i .. ':' .. v
end

-- Takes slot code c out of the buckets named by a meta record's band values and generation.
local function leaveBands(bprefix, c, bands, gen)
  local i = 0
  for v in string.gmatch(bands, '[^,]+') do
    unpackFrom(bandKey(bprefix, gen, i, v), c)
    i = i + 1
  end
end
