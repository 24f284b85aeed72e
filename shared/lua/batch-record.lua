--[[
  Records how one item of a batch ended, once: recording the same line again (an item re-run after the
  process running it died between recording and completing its BullMQ job) changes nothing, so the counts
  stay exact. The item's result line is appended to the batch's results stream. When the last line is
  recorded the batch is finished: `completed`, or `cancelled` if a cancel was asked for (a batch that
  failed as a whole stays `failed`), and its keys get their retention.

  KEYS[1] batch hash       ({prefix}:batch:{id})
  KEYS[2] done hash        ({prefix}:batch:{id}:done)     line number -> status
  KEYS[3] results stream   ({prefix}:batch:{id}:results)  one entry per line, field "l" = the result line
  ARGV[1] line number
  ARGV[2] status: completed | failed | cancelled (also the batch hash's counter field)
  ARGV[3] the result line (JSON text)
  ARGV[4] now, ms
  ARGV[5] retention of a finished batch, seconds

  Returns 1 when recorded, 0 when the line had been recorded before (or the batch is gone).
]]
local rcall = redis.call
if rcall("EXISTS", KEYS[1]) ~= 1 then
  return 0
end
if rcall("HSETNX", KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
rcall("XADD", KEYS[3], "*", "l", ARGV[3])
rcall("HINCRBY", KEYS[1], ARGV[2], 1)
local v = rcall("HMGET", KEYS[1], "total", "completed", "failed", "cancelled", "status")
local finished = (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0)
if finished >= (tonumber(v[1]) or 0) then
  -- A batch that failed as a whole (not all of it could be enqueued) stays failed.
  if v[5] ~= "failed" then
    local status = "completed"
    if v[5] == "cancelling" then
      status = "cancelled"
    end
    rcall("HSET", KEYS[1], "status", status, status .. "_at", ARGV[4])
  end
  for i = 1, 3 do
    rcall("EXPIRE", KEYS[i], ARGV[5])
  end
end
return 1
