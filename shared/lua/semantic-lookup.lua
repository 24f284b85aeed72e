--[[
  The reads of one or more lookups in one round trip (a process sends the lookups of one event-loop turn
  together: one script call instead of one per lookup). For each lookup: the exact key first (unless its
  flag is '0'), then the query's band buckets in every live generation of its scope (see semantic-set.lua).
  When the exact entry exists it is answered (and marked used) and the buckets are not read at all. A
  scope's generations are read with one ZRANGE per call.

  KEYS[1..] three per lookup: entry of the normalised prompt (see includes/entry-record.lua), LRU sorted set
           of the scope, gens sorted set of the scope (generation -> expiry of its buckets)
  ARGV[1]  most generations to read (those whose buckets expire last)
  ARGV[2..] four per lookup, in the order of its keys: id; '1' to read the exact entry first, '0' for the
           buckets only; band key prefix (+ generation = its hash of buckets); the query's bands as "band
           index:value (base 36)" (the hash fields), comma-separated, in band order (one argument: each
           argument costs the client a few strings to encode)

  Returns four fields per lookup, in order, in one flat array (a nested table costs the reply's conversion
          a few field probes each): 1, value JSON, prompt, stored at on an exact hit; 0, generations
          (comma-separated), buckets, nil otherwise (buckets nil when no band fields were given): every
          bucket found in the generations read, concatenated (packed 3-byte slot codes; the caller counts
          each slot's occurrences, which is all a bucket boundary told it). One reply string instead of one
          per band and generation: ~160 at 100k entries, each an object for the client to allocate.
]]
-- #include entry-record

local n = #KEYS / 3
local replies = {}
local now
local o = 0 -- the last field of the reply written
-- per gens key: its generations (hash generations only) and their text, read once per call
local gensOf, textOf = {}, {}
for k = 1, n do
  local a = 1 + (k - 1) * 4
  local hit = false
  if ARGV[a + 2] == '1' then
    local r = readEntry(KEYS[3 * k - 2])
    if r then
      if not now then
        local t = redis.call('TIME')
        now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
      end
      redis.call('ZADD', KEYS[3 * k - 1], 'XX', now, ARGV[a + 1])
      replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 1, r[1], r[2], r[3]
      hit = true
    end
  end
  if not hit then
    local gkey = KEYS[3 * k]
    local gens = gensOf[gkey]
    if not gens then
      gens = {}
      -- the range's ends as strings: a number given to redis.call is formatted with sprintf (~3.5k
      -- instructions each)
      for _, gen in ipairs(redis.call('ZRANGE', gkey, '-' .. ARGV[1], '-1')) do
        -- hash generations only: entries of older layouts are found by their exact key until they expire
        if string.byte(gen, 1) == 104 then gens[#gens + 1] = gen end
      end
      gensOf[gkey] = gens
      textOf[gkey] = table.concat(gens, ',')
    end
    replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 0, textOf[gkey], false, false
    local fields = {}
    for f in string.gmatch(ARGV[a + 4] or '', '[^,]+') do fields[#fields + 1] = f end
    if #fields > 0 then
      local found = {}
      local bprefix = ARGV[a + 3]
      for _, gen in ipairs(gens) do
        local vals = redis.call('HMGET', bprefix .. gen, unpack(fields))
        for i = 1, #fields do
          local v = vals[i]
          if v then
            -- whole codes only, so one bucket's stray bytes never shift the next one's codes
            local stray = #v % 3
            if stray ~= 0 then v = string.sub(v, 1, #v - stray) end
            found[#found + 1] = v
          end
        end
      end
      replies[o + 3] = table.concat(found)
    end
  end
  o = o + 4
end
return replies
