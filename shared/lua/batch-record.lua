--[[
  Records how items of one batch ended, each line once: a line recorded before (an item re-run after the
  process running it died between recording and completing its BullMQ job, or a line given twice) changes
  nothing, so the counts stay exact. The new lines are appended to the batch's results stream as ONE entry
  (a field "l" per line). When the last line is recorded the batch is finished: `completed`, or
  `cancelled` if a cancel was asked for (a batch that failed as a whole stays `failed`), and its keys get
  their retention. A few commands per call whatever the number of lines: an HMGET of the batch hash, one
  HMGET and one HSET of the done hash, one XADD, one HINCRBY per status.

  KEYS[1] batch hash       ({prefix}:batch:{id})
  KEYS[2] done hash        ({prefix}:batch:{id}:done)     line number -> status
  KEYS[3] results stream   ({prefix}:batch:{id}:results)  one entry per call, a field "l" per result line
  ARGV[1] now, ms
  ARGV[2] retention of a finished batch, seconds
  ARGV[3..] triples: line number, status (completed | failed | cancelled, also the batch hash's counter
          field), the result line (JSON text)

  Returns the number of lines recorded now (0: every one had been recorded before, or the batch is gone).
]]
local rcall = redis.call
local v = rcall("HMGET", KEYS[1], "total", "completed", "failed", "cancelled", "status")
if not v[5] then
  return 0
end
local n = math.floor((#ARGV - 2) / 3)
if n < 1 then
  return 0
end
local lines = {}
for i = 1, n do
  lines[i] = ARGV[3 * i]
end
local before = rcall("HMGET", KEYS[2], unpack(lines))
local done, fields, counts, taken = {}, {}, {}, {}
for i = 1, n do
  local line = lines[i]
  if not before[i] and not taken[line] then
    taken[line] = true
    local status = ARGV[3 * i + 1]
    done[#done + 1] = line
    done[#done + 1] = status
    fields[#fields + 1] = "l"
    fields[#fields + 1] = ARGV[3 * i + 2]
    counts[status] = (counts[status] or 0) + 1
  end
end
if #done == 0 then
  return 0
end
rcall("HSET", KEYS[2], unpack(done))
rcall("XADD", KEYS[3], "*", unpack(fields))
local finished = 0
for i, status in ipairs({ "completed", "failed", "cancelled" }) do
  finished = finished + (tonumber(v[i + 1]) or 0)
  if counts[status] then
    -- The script runs alone: the counts read above plus this call's are the new counts.
    rcall("HINCRBY", KEYS[1], status, counts[status])
    finished = finished + counts[status]
  end
end
if finished >= (tonumber(v[1]) or 0) then
  -- A batch that failed as a whole (not all of it could be enqueued) stays failed.
  if v[5] ~= "failed" then
    local status = "completed"
    if v[5] == "cancelling" then
      status = "cancelled"
    end
    rcall("HSET", KEYS[1], "status", status, status .. "_at", ARGV[1])
  end
  for i = 1, 3 do
    rcall("EXPIRE", KEYS[i], ARGV[2])
  end
end
return #done / 2
