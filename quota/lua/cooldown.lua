-- cooldown.lua: rest a credential until now + ARGV[2] µs (quota.Redis.Cooldown);
-- a shorter cool-down never shortens a longer one.
--
-- KEYS[1]  credential hash
-- ARGV[1]  now µs, or -1 for the server clock
-- ARGV[2]  cool-down length, µs
--
-- Returns the cool-down's end, µs.
local now = now_us()
local ends = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], 'cool'))
if cur and cur > ends then
  ends = cur
end
redis.call('HSET', KEYS[1], 'cool', ends)
local ttl = redis.call('PTTL', KEYS[1])
local need = math.floor((ends - now) / 1000) + 1000
if ttl < need then
  redis.call('PEXPIRE', KEYS[1], need)
end
return ends
