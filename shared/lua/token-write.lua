--[[
  The writes of token streams by the workers running attempts (workers/token-stream-writer.ts): every write
  one connection was given in one turn of its event loop, in one command (each was one call of its own, and
  at 100 concurrent streams those calls were the worker's most frequent command). Each write, in order:
  honours a cancel mark, or appends its entries and, when asked to (or when it made the stream), sets its
  stream's lifetime. A write that does not renew the lifetime appends with NOMKSTREAM: a stream that is gone
  (deleted by a cancel another attempt honoured, or expired) is made again by a plain XADD and given its
  lifetime in the same call, so no stream ever lives without one. A cancel honoured deletes
  the mark and the stream and writes nothing, so no reader ever reads text of an attempt that stopped; a
  reader that came back since deleted the mark (its marks do), and the attempt goes on. A write that Redis
  refuses (a key of the wrong type) is reported as its own error; the other writes go on.

  KEYS[1..] per write: its token stream ({prefix}:inference:{jobId}:cell0-tokens), then its cancel mark
            ({prefix}:inference:{jobId}:cell0-cancel)
  ARGV[1]   the number of writes; then per write, in order:
              '1' to honour a cancel mark first, '0' to write without looking at it (the attempt's start
              entry, which the first text's write can pass on its way);
              '1' to empty the stream before the entries (a new attempt; the stream keeps its last id);
              most entries kept (XADD MAXLEN ~);
              the stream's lifetime after this write, ms;
              '1' to set that lifetime, '0' to keep the one the stream has (the writer renews it at most every
              half lifetime, and with the end entry); a stream this write makes gets it either way;
              the number of values that follow; then the entries: each is its number of fields and values,
              then those (encodeEntry's list)

  Returns per write: 1 when a cancel mark was honoured (nothing written; the stream deleted), when written
  a list of the id of its last entry (empty for a write of no entry: the writer hands its entries to the
  readers of its own process and tells them where the stream stands), or the error's message.
]]
local out = {}
local a = 2
for w = 1, tonumber(ARGV[1]) do
  local stream, cancel = KEYS[2 * w - 1], KEYS[2 * w]
  local maxLen, ttl, renew = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4] == "1"
  local i, last = a + 6, a + 5 + tonumber(ARGV[a + 5])
  if ARGV[a] == "1" and redis.call("EXISTS", cancel) == 1 then
    redis.call("DEL", cancel, stream)
    out[w] = 1
  else
    local err
    local lastId
    if ARGV[a + 1] == "1" then
      local r = redis.pcall("XTRIM", stream, "MAXLEN", 0)
      if type(r) == "table" and r.err then err = r.err end
    end
    while not err and i <= last do
      local n = tonumber(ARGV[i])
      local r = false
      if not renew then
        r = redis.pcall("XADD", stream, "NOMKSTREAM", "MAXLEN", "~", maxLen, "*", unpack(ARGV, i + 1, i + n))
        -- No stream (nil): it is made below, and given its lifetime.
        if not r then renew = true end
      end
      if not r then r = redis.pcall("XADD", stream, "MAXLEN", "~", maxLen, "*", unpack(ARGV, i + 1, i + n)) end
      if type(r) == "table" and r.err then err = r.err else lastId = r end
      i = i + n + 1
    end
    if not err and renew then redis.call("PEXPIRE", stream, ttl) end
    out[w] = err or { lastId }
  end
  a = last + 1
end
return out
