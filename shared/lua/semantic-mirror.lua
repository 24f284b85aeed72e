--[[
  What a process needs to build its mirror of one scope's band buckets (semantic-mirror.ts), read together
  (one script: no store falls between them): the id of the band stream's last entry, the live generations
  a lookup reads, and every entry's meta record ("slot|band fields|generation": the buckets it is in). The
  mirror then applies the stream's entries after that id. A missing stream of a scope with entries gets an
  empty entry (as long-lived as the scope), so the mirror has an id to read on from that proves, while it
  is in the stream, that nothing after it was trimmed; an empty scope gives '0-0', never in a stream.

  KEYS[1]  gens sorted set of the scope (generation -> expiry of its buckets)
  KEYS[2]  band stream of the scope (see includes/slot-codes.lua publishBands)
  KEYS[3]  meta hash of the scope (id -> "slot|band fields|generation")
  ARGV[1]  most generations to read (those whose buckets expire last)

  Returns { last stream entry id, number of generations, the generations (hash generations only, as the
            lookup reads them), then the meta records }
]]
local gens, stream, meta = KEYS[1], KEYS[2], KEYS[3]
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', '1')
local id = '0-0'
if last[1] then
  id = last[1][1]
else
  local left = redis.call('PTTL', meta)
  if left > 0 then
    id = redis.call('XADD', stream, '*', 'e', '')
    redis.call('PEXPIRE', stream, left)
  end
end
local names = {}
for _, gen in ipairs(redis.call('ZRANGE', gens, '-' .. ARGV[1], '-1')) do
  if string.byte(gen, 1) == 104 then names[#names + 1] = gen end
end
local out = { id, #names }
for _, gen in ipairs(names) do out[#out + 1] = gen end
for _, rec in ipairs(redis.call('HVALS', meta)) do out[#out + 1] = rec end
return out
