-- exchange.lua: add one instance's time-to-first-byte samples to the
-- cluster's moving averages, publish its requests in flight, and read the
-- cluster's view (signals.Redis.Exchange).
--
-- KEYS[1]  hash: key → moving average of the time to first byte (µs)
-- KEYS[2]  sorted set: instance → when its counts stop counting (ms)
-- KEYS[3]  hash: this instance's requests in flight per credential
-- KEYS[4]  the prefix of the instances' in-flight hashes (busy:), never
--          written itself; every hash it names shares the slot
-- ARGV[1]  alpha: each sample's weight in an average
-- ARGV[2]  this instance's id
-- ARGV[3]  how long its counts count, ms
-- ARGV[4]  the number of sampled keys n, then n triples: key, mean µs,
--          count; then pairs: credential, requests in flight
--
-- Returns {averages (key, µs, ...), other instances' in flight (credential,
-- count, ...; a credential once per instance)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alpha = tonumber(ARGV[1])
local self, ttl, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

-- n samples of mean m move an average as n samples of m one by one would.
for i = 0, n - 1 do
  local k, mean, count = ARGV[5 + 3 * i], tonumber(ARGV[6 + 3 * i]), tonumber(ARGV[7 + 3 * i])
  local old = tonumber(redis.call('HGET', KEYS[1], k))
  local new = mean
  if old then
    new = old + (1 - (1 - alpha) ^ count) * (mean - old)
  end
  redis.call('HSET', KEYS[1], k, string.format('%.0f', new))
end
redis.call('PEXPIRE', KEYS[1], 86400000)

redis.call('DEL', KEYS[3])
local busy = {}
for i = 5 + 3 * n, #ARGV - 1, 2 do
  busy[#busy + 1] = ARGV[i]
  busy[#busy + 1] = ARGV[i + 1]
end
if #busy > 0 then
  redis.call('HSET', KEYS[3], unpack(busy))
  redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('ZADD', KEYS[2], now + ttl, self)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('PEXPIRE', KEYS[2], ttl)

local others = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if id ~= self then
    local h = redis.call('HGETALL', KEYS[4] .. id)
    for j = 1, #h do
      others[#others + 1] = h[j]
    end
  end
end
return {redis.call('HGETALL', KEYS[1]), others}
