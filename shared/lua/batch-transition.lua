--[[
  Moves a batch to a new status if it is in one of the expected ones, and stamps the time of the move
  (`<status>_at`). Used for validating -> in_progress, validating|in_progress -> cancelling and
  validating -> failed, so that a cancel and the end of the enqueueing never overwrite each other.

  KEYS[1] batch hash       ({prefix}:batch:{id})
  ARGV[1] the statuses it may move from, comma-separated
  ARGV[2] the new status
  ARGV[3] now, ms

  Returns the batch's status after the call (the new one when it moved), or false when there is no batch.
]]
local rcall = redis.call
local s = rcall("HGET", KEYS[1], "status")
if not s then
  return false
end
for from in string.gmatch(ARGV[1], "[^,]+") do
  if from == s then
    rcall("HSET", KEYS[1], "status", ARGV[2], ARGV[2] .. "_at", ARGV[3])
    return ARGV[2]
  end
end
return s
