--[[
  A token bucket kept in Redis, shared by every process that uses the same key (cell0's fleet-wide rate
  limit). Time comes from Redis (TIME), never from the callers, so clock skew between hosts cannot bend
  the rate.

  Reservations: when the bucket is short of tokens but would have them within ARGV[4] ms, the tokens are
  taken now (the balance goes negative) and the caller is told how long to wait before using them. Each
  caller therefore needs one round trip, callers are served in arrival order, and the grant times can
  never add up to more than capacity + rate x interval over any interval.

  An optional in-flight bound (ARGV[5] > 0) keeps a sorted set of leases scored by their expiry time; the
  holder removes its lease when done (ZREM), and leases of holders that died expire on their own.

  KEYS[1]  bucket hash: t = tokens (may be negative: reserved), ts = time of t, in ms
  KEYS[2]  leases sorted set (only used when ARGV[5] > 0); must share KEYS[1]'s hash slot
  ARGV[1]  rate, tokens per second (> 0)
  ARGV[2]  capacity, tokens (>= ARGV[3])
  ARGV[3]  tokens wanted
  ARGV[4]  longest wait the caller accepts, ms (0 = only an immediate grant)
  ARGV[5]  most leases held at once (0 = no in-flight bound)
  ARGV[6]  lease id
  ARGV[7]  lease lifetime, ms

  Returns { granted (1|0), wait ms (string), now ms (string), reason }
    granted: wait is how long to wait before using the tokens (0 = now)
    refused: wait is how long until the request could be granted; reason "rate" or "in-flight"
]]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local maxWait = tonumber(ARGV[4])
local maxInFlight = tonumber(ARGV[5])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if maxInFlight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local held = redis.call('ZCARD', KEYS[2])
  if held >= maxInFlight then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local untilExpiry = tonumber(first[2]) - now
    return { 0, tostring(untilExpiry), tostring(now), 'in-flight' }
  end
end

local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 1000)
  ts = now
end

local wait = 0
if tokens < wanted then
  -- Not rounded up: now + wait must be when the bucket really holds the tokens, or two grants can be
  -- reported closer than 1/rate (rounding one wait up, then the next wait down). Callers sleep fractions fine.
  wait = (wanted - tokens) * 1000 / rate
  if wait > maxWait then
    return { 0, tostring(math.ceil(wait)), tostring(now), 'rate' }
  end
end

tokens = tokens - wanted
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(ts))
-- A bucket left alone refills to capacity; after that its state carries no information.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * 1000 / rate) + 1000)

if maxInFlight > 0 then
  local ttl = tonumber(ARGV[7])
  redis.call('ZADD', KEYS[2], now + wait + ttl, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], math.ceil(wait + ttl) + 1000)
end
return { 1, tostring(wait), tostring(now), '' }
