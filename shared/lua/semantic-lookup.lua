--[[
  The reads of one or more lookups in one round trip (a process sends the lookups of one event-loop turn
  together: one script call instead of one per lookup). For each lookup: the exact key first (unless its
  flag is '0'), then the live generations of its scope and the scope's band stream entries its process's
  mirror of the buckets has not applied yet (see semantic-set.lua). When the exact entry exists it is
  answered (and marked used) and nothing else is read. A scope's generations are read with one ZRANGE per
  call, and its stream once per call and mirror position.

  KEYS[1..] four per lookup: entry of the normalised prompt (see includes/entry-record.lua), LRU sorted set
           of the scope, gens sorted set of the scope (generation -> expiry of its buckets), band stream of
           the scope (see includes/slot-codes.lua publishBands)
  ARGV[1]  most generations to read (those whose buckets expire last)
  ARGV[2..] five per lookup, in the order of its keys: id; '1' to read the exact entry first, '0' for the
           stream only; unused (sent empty); non-empty when the query has band fields ('' when it has none:
           nothing to rank; the process ranks from its mirror, so the fields themselves are not sent); the id of the
           last band stream entry the process's mirror of the scope's buckets has applied
           (semantic-mirror.ts; '0-0' for a mirror of a scope that had no stream)

  Returns four fields per lookup, in order, in one flat array (a nested table costs the reply's conversion
          a few field probes each): 1, value JSON, prompt, stored at on an exact hit; otherwise 0,
          generations (comma-separated), then
          - when the mirror's last entry is still in the stream (nothing after it was trimmed): the band
            stream's entries after it, as lines ("#" entry id, then the entry's event lines; '' when none,
            and for the call's other lookups of the same scope and mirror position: the first carries
            them), and '1'. The process ranks the slots in its mirror, caught up, of the generations listed;
          - else nil and '0': the mirror fell behind (or the lookup has no band fields) and must be rebuilt.
          No bucket is read here: the buckets live in the processes' mirrors only (see semantic-set.lua).
]]
-- Most stream entries a lookup call returns to one mirror: one further behind is rebuilt instead.
local CATCH_UP = 512
-- #include entry-record

local n = #KEYS / 4
-- per band stream and mirror position: its entries after that position as lines, or false (fell behind)
local caught = {}
local replies = {}
local now
local o = 0 -- the last field of the reply written
-- per gens key: its generations (hash generations only) and their text, read once per call
local gensOf, textOf = {}, {}
for k = 1, n do
  local a = 1 + (k - 1) * 5
  local hit = false
  if ARGV[a + 2] == '1' then
    local r = readEntry(KEYS[4 * k - 3])
    if r then
      if not now then
        local t = redis.call('TIME')
        now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
      end
      redis.call('ZADD', KEYS[4 * k - 2], 'XX', now, ARGV[a + 1])
      replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 1, r[1], r[2], r[3]
      hit = true
    end
  end
  if not hit then
    local gkey = KEYS[4 * k - 1]
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
    replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 0, textOf[gkey], false, '0'
    local since = ARGV[a + 5]
    local mirrored = false
    if ARGV[a + 4] ~= '' and since ~= '' then
      local skey = KEYS[4 * k]
      local at = skey .. ' ' .. since
      local lines = caught[at]
      if lines == nil then
        -- from the mirror's last entry on: when that entry is still there, nothing after it was trimmed.
        -- '0-0': a mirror of an empty scope (no stream then): every entry of the stream is newer, and none
        -- was trimmed while the stream holds fewer than its length bound (a stream deleted meanwhile went
        -- with every entry it told of: the scope was emptied)
        local r, first, ok
        if since == '0-0' then
          r = redis.call('XRANGE', skey, '-', '+', 'COUNT', CATCH_UP)
          first, ok = 1, #r < CATCH_UP
        else
          r = redis.call('XRANGE', skey, since, '+', 'COUNT', CATCH_UP + 1)
          first, ok = 2, r[1] ~= nil and r[1][1] == since and #r <= CATCH_UP
        end
        if ok then
          local parts = {}
          for j = first, #r do
            parts[#parts + 1] = '#' .. r[j][1]
            local f = r[j][2]
            if f[2] and f[2] ~= '' then parts[#parts + 1] = f[2] end
          end
          replies[o + 3] = table.concat(parts, '\n')
          caught[at] = true
          mirrored = true
        else
          caught[at] = false
        end
      elseif lines then
        replies[o + 3] = ''
        mirrored = true
      end
      replies[o + 4] = mirrored and '1' or '0'
    end
  end
  o = o + 4
end
return replies
