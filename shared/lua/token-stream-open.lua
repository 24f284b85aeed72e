--[[
  A producer process starts reading a job's token stream (producers/token-stream-hub.ts), in one command
  where it was a transaction of ten: marks the job as streamed, counts the process among its readers,
  withdraws a cancel mark (an attempt that has not honoured it goes on), and wakes the process's blocking
  read so that it starts over with this stream. Sent on the connection that adds or joins the job right
  after, so the marks are in Redis before any worker can take the job.

  KEYS[1] wanted mark      ({prefix}:inference:{jobId}:cell0-tokens-wanted)
  KEYS[2] marks gate       ({prefix}:inference:cell0-marks), set with every mark and outliving it
  KEYS[3] readers count    ({prefix}:inference:{jobId}:cell0-tokens-readers)
  KEYS[4] cancel mark      ({prefix}:inference:{jobId}:cell0-cancel)
  KEYS[5] the process's wake-up stream ({prefix}:inference:token-hub:{random})
  KEYS[6] the job's token stream   ({prefix}:inference:{jobId}:cell0-tokens)
  ARGV[1] the marks' lifetime, ms
  ARGV[2] the number of this wake-up
  ARGV[3] the wake-up stream's lifetime, ms

  A process that is not the job's first reader adds a remote-reader entry (k = r) to its token stream: a
  worker in another reading process (`cell0 start`) keeps the stream out of Redis while its own process's
  readers are the only ones, and its hub, which reads the stream for this entry, has it write the stream from
  its first entry (workers/token-stream-writer.ts). Readers skip the entry. A stream it makes lives as long as
  the marks (NX: a stream's own lifetime is kept).

  Returns the number of reading processes.
]]
redis.call("SET", KEYS[1], "1", "PX", ARGV[1])
-- The gate outlives every mark: NX sets it, GT only lengthens it.
if not redis.call("SET", KEYS[2], "1", "PX", ARGV[1], "NX") then
  redis.call("PEXPIRE", KEYS[2], ARGV[1], "GT")
end
local n = redis.call("INCR", KEYS[3])
redis.call("PEXPIRE", KEYS[3], ARGV[1])
if n > 1 then
  redis.call("XADD", KEYS[6], "*", "k", "r")
  redis.call("PEXPIRE", KEYS[6], ARGV[1], "NX")
end
redis.call("DEL", KEYS[4])
redis.call("XADD", KEYS[5], "MAXLEN", "1", "*", "w", ARGV[2])
redis.call("PEXPIRE", KEYS[5], ARGV[3])
return n
