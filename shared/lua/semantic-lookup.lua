--[[
  The reads of one or more lookups in one round trip (a process sends the lookups of one event-loop turn
  together: one script call instead of one per lookup). For each lookup: the exact key first (unless its
  flags say stream only), then the live generations of its scope and the scope's band stream entries its
  process's mirror of the buckets has not applied yet (see semantic-set.lua). When the exact entry exists it
  is answered (and marked used) and nothing else is read. A scope's generations are read with one ZRANGE per
  call, and its stream once per call and mirror position.

  KEYS[1..] one per lookup: entry of the normalised prompt ("<scope tag>:e:<id>", see
           includes/entry-record.lua). The scope's LRU sorted set, gens sorted set (generation -> expiry of
           its buckets) and band stream (see includes/slot-codes.lua publishBands) are named from it (the
           tag plus ":lru", ":gens", ":bx": the same {hash} tag, so the same cluster slot), and the id is its
           last part: ~150 bytes fewer per lookup for the client to encode and Redis to read, and two
           arguments fewer for Redis to move into Lua (~2,000 instructions each)
  ARGV[1]  most generations to read (those whose buckets expire last)
  ARGV[2..] two per lookup, in the order of its keys: flags, two characters: 'x' to read the exact entry
           first ('-': the stream only), then 'b' when the query has band fields ('-' when it has none:
           nothing to rank; the process ranks from its mirror, so the fields themselves are not sent); then
           the id of the last band stream entry the process's mirror of the scope's buckets has applied
           (semantic-mirror.ts; '0-0' for a mirror of a scope that had no stream)

  Returns four fields per lookup, in order, in one flat array (a nested table costs the reply's conversion
          a few field probes each): 1, value JSON, prompt, stored at on an exact hit; otherwise 0,
          generations (comma-separated), then
          - when the mirror's last entry is still in the stream (nothing after it was trimmed): the band
            stream's entries after it, as lines ("#" entry id, then the entry's event lines; '' when none,
            and for the call's other lookups of the same scope and mirror position: the first carries
            them), and '1'. The process ranks the slots in its mirror, caught up, of the generations listed;
          - else nil and '0': the mirror fell behind (or the lookup has no band fields) and must be rebuilt.
          A lookup without band fields and without a mirror position ('x-' with ''; an exact-only lookup)
          reads only its exact entry: on a miss, 0, '', nil, '0'.
          No bucket is read here: the buckets live in the processes' mirrors only (see semantic-set.lua).
]]
-- Most stream entries a lookup call returns to one mirror: one further behind is rebuilt instead.
local CATCH_UP = 512
-- its text, for XRANGE's COUNT (a number given to redis.call is formatted with sprintf)
local CATCH_UP_TEXT = '512'
-- #include entry-record
-- #include clock

local n = #KEYS
-- per scope tag: { lru, gens, stream } keys, named once per call, then per mirror position of its stream:
-- true once its entries after that position are in the reply, or false (the mirror fell behind)
local scopeKeys = {}
local replies = {}
local now
local o = 0 -- the last field of the reply written
-- per gens key: its generations (hash generations only) and their text, read once per call
local gensOf, textOf = {}, {}
for k = 1, n do
  local a = 2 * k
  local entryKey = KEYS[k]
  -- the tag ("<base>:{<scope hash>}") before the '}:e:' that precedes the id: the base has no braces
  -- (scope.ts keyBase), so the first '}' closes the tag. A plain find: string.match's '^(.+):e:([^:]+)$'
  -- backtracks from the key's end, ~5,000 instructions more per lookup.
  local close = string.find(entryKey, '}:e:', 1, true)
  local tag = string.sub(entryKey, 1, close)
  local sk = scopeKeys[tag]
  if not sk then
    -- its LRU, gens and stream keys, and its stream's entries by mirror position (see below)
    sk = { tag .. ':lru', tag .. ':gens', tag .. ':bx', {} }
    scopeKeys[tag] = sk
  end
  local flags = ARGV[a]
  local hit = false
  if string.byte(flags, 1) == 120 then -- 'x'
    local r = readEntry(entryKey)
    if r then
      if not now then
        local _
        _, now = clockNow()
      end
      redis.call('ZADD', sk[1], 'XX', now, string.sub(entryKey, close + 4)) -- the id
      replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 1, r[1], r[2], r[3]
      hit = true
    end
  end
  if not hit and string.byte(flags, 2) ~= 98 and ARGV[a + 1] == '' then
    -- exact only: no generation or stream entry is of use to it
    replies[o + 1], replies[o + 2], replies[o + 3], replies[o + 4] = 0, '', false, '0'
  elseif not hit then
    local gkey = sk[2]
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
    local since = ARGV[a + 1]
    local mirrored = false
    if string.byte(flags, 2) == 98 and since ~= '' then -- 'b'
      local skey, caught = sk[3], sk[4]
      local lines = caught[since]
      if lines == nil then
        -- the entries after the mirror's last one. '0-0': a mirror of an empty scope (no stream then): every
        -- entry of the stream is newer, and none was trimmed while the stream holds fewer than its length
        -- bound (a stream deleted meanwhile went with every entry it told of: the scope was emptied).
        -- Otherwise an exclusive range, so that no entry's text is read when there is none (the common case:
        -- a process applies its own stores' entries from their replies, semantic-set.lua): the mirror is then
        -- caught up. When there are some, the mirror's last entry must still be there (nothing after it was
        -- trimmed: trimming takes the oldest), read on its own. With none after it and the entry gone, the
        -- stream was deleted with the scope: the mirror holds slots of gone entries only, which a lookup
        -- never answers from (their records are gone), until the next store's entry makes it rebuild.
        -- Both ranges are read backwards from the stream's end: a forward range from an id walks the id's
        -- stream node from the node's first entry (up to 100 small entries when stores come one at a time),
        -- a reverse one only the entries after it. The entries are then put oldest first.
        local r, ok
        if since == '0-0' then
          r = redis.call('XRANGE', skey, '-', '+', 'COUNT', CATCH_UP_TEXT)
          ok = #r < CATCH_UP
        else
          local q = redis.call('XREVRANGE', skey, '+', '(' .. since, 'COUNT', CATCH_UP_TEXT)
          ok = #q == 0 or (#q < CATCH_UP and redis.call('XREVRANGE', skey, since, since)[1] ~= nil)
          r = q
          if #q > 1 then
            r = {}
            for j = #q, 1, -1 do r[#r + 1] = q[j] end
          end
        end
        if ok then
          local parts = {}
          for j = 1, #r do
            parts[#parts + 1] = '#' .. r[j][1]
            local f = r[j][2]
            if f[2] and f[2] ~= '' then parts[#parts + 1] = f[2] end
          end
          replies[o + 3] = table.concat(parts, '\n')
          caught[since] = true
          mirrored = true
        else
          caught[since] = false
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
