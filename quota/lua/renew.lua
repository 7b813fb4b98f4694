-- renew.lua: extend the concurrency leases this instance still holds, so
-- that a long stream keeps its slot while a dead instance's slots expire
-- (quota.Redis's renewal loop).
--
-- KEYS[i]   a lease zset
-- ARGV[1]   now µs, or -1 for the server clock
-- ARGV[2]   new time to live, µs
-- ARGV[2+i] the lease id held in KEYS[i]
--
-- Returns how many leases were still there to renew.
local now = now_us()
local expiry = now + tonumber(ARGV[2])
local renewed = 0
for i, key in ipairs(KEYS) do
  renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', expiry, ARGV[2 + i])
  redis.call('PEXPIRE', key, math.floor(tonumber(ARGV[2]) / 1000) + 1000)
end
return renewed
