-- probe.lua: check that Redis runs the quota scripts and accepts their
-- writes, as a request's acquire would (quota.Redis.Probe). The fallback
-- policy ends only when this succeeds: a Redis that answers PING but
-- refuses scripts (out of memory, read-only replica) is still down for
-- the request path.
--
-- KEYS[1]  the probe key (a string in the quota hash slot)
-- ARGV[1]  now µs, or -1 for the server clock
--
-- Returns now µs.
local now = now_us()
redis.call('SET', KEYS[1], now, 'PX', 60000)
return now
