--[[
  One write of a job's token stream by the worker running an attempt (workers/token-stream-writer.ts), in
  one command where it was a transaction of five (MULTI, XADD, PEXPIRE, the cancel's check, EXEC): honours
  a cancel mark, or appends the entries and renews the stream's lifetime. A cancel honoured deletes the
  mark and the stream and writes nothing, so no reader ever reads text of an attempt that stopped; a
  reader that came back since deleted the mark (its marks do), and the attempt goes on.

  KEYS[1] the token stream ({prefix}:inference:{jobId}:cell0-tokens)
  KEYS[2] the cancel mark  ({prefix}:inference:{jobId}:cell0-cancel)
  ARGV[1] '1' to honour a cancel mark first, '0' to write without looking at it (the attempt's start entry,
          which the first text's write can pass on its way)
  ARGV[2] '1' to empty the stream before the entries (a new attempt; the stream keeps its last id), else '0'
  ARGV[3] most entries kept (XADD MAXLEN ~)
  ARGV[4] the stream's lifetime after this write, ms
  ARGV[5..] the entries: each is its number of fields and values, then those (encodeEntry's list)

  Returns 1 when a cancel mark was honoured (nothing written; the stream deleted), else 0.
]]
if ARGV[1] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("DEL", KEYS[2], KEYS[1])
  return 1
end
if ARGV[2] == "1" then
  redis.call("XTRIM", KEYS[1], "MAXLEN", 0)
end
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[3], "*", unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
redis.call("PEXPIRE", KEYS[1], ARGV[4])
return 0
