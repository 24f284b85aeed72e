--[[
  A producer process stops reading a job's token stream (producers/token-stream-hub.ts): counts it out of
  the readers and, when it was the last one and asks to, cancels the job, all in one step, so a reader
  whose marks come in between is counted before the cancel is decided. The worker honours the cancel at
  its next write (token-write.lua).

  KEYS[1] readers count    ({prefix}:inference:{jobId}:cell0-tokens-readers)
  KEYS[2] cancel mark      ({prefix}:inference:{jobId}:cell0-cancel)
  KEYS[3] wanted mark      ({prefix}:inference:{jobId}:cell0-tokens-wanted)
  KEYS[4] marks gate       ({prefix}:inference:cell0-marks)
  ARGV[1] '1' to cancel the job when no reader is left, else '0'
  ARGV[2] the cancel mark's lifetime, ms

  Returns the number of reading processes left.
]]
local n = redis.call("DECR", KEYS[1])
if n <= 0 and ARGV[1] == "1" then
  redis.call("SET", KEYS[2], "1", "PX", ARGV[2])
  redis.call("DEL", KEYS[3])
  redis.call("SET", KEYS[4], "1", "PX", ARGV[2], "NX")
  redis.call("PEXPIRE", KEYS[4], ARGV[2], "GT")
end
return n
