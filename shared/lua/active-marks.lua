--[[
  Reads the token stream marks (`wanted`, `cancel`) of the jobs a worker's fetches have just moved to
  active. The worker sends it on its BullMQ connection right behind the fetches it sent in one tick
  (moveToActive; and moveToFinished, which fetches the next job, unless its finishes are batched with replies:
  then the batched finish reads them itself, see shared/queues/finish-batch.ts), so each job's marks are at
  hand when it starts, without a round trip of their own before the backend call. BullMQ pushes a fetched job at the head of the
  active list, so the jobs these fetches activated are among the first `count`; as another worker's fetch may
  come in between, each answer names the job and its activation (`processedOn`, stamped by the fetch), and
  the worker uses it only for the activation it matches (it reads the marks itself otherwise).

  KEYS[1] active list      ({prefix}:{queue}:active)
  KEYS[2] marks gate       ({prefix}:{queue}:cell0-marks), set with every mark and outliving it
  ARGV[1] job key prefix   ({prefix}:{queue}:)
  ARGV[2] count: how many fetches were sent

  Returns 0 when the gate is absent: no job of the queue has a mark, so every job these fetches activated
  starts unmarked (the worker takes each one's id and activation from its fetch's answer). Otherwise, flat,
  per job at the head of the active list: jobId, processedOn, wanted, cancel (a missing value as nil).
]]
if redis.call("EXISTS", KEYS[2]) == 0 then
  return 0
end
local ids = redis.call("LRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
if #ids == 0 then
  return {}
end
local keys = {}
for i = 1, #ids do
  local base = ARGV[1] .. ids[i]
  keys[2 * i - 1] = base .. ":cell0-tokens-wanted"
  keys[2 * i] = base .. ":cell0-cancel"
end
-- One MGET for every job's marks (at most the worker's concurrency: far below unpack's limit).
local marks = redis.call("MGET", unpack(keys))
local out = {}
for i = 1, #ids do
  out[4 * i - 3] = ids[i]
  out[4 * i - 2] = redis.call("HGET", ARGV[1] .. ids[i], "processedOn")
  out[4 * i - 1] = marks[2 * i - 1]
  out[4 * i] = marks[2 * i]
end
return out
