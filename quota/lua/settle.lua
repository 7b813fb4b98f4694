-- settle.lua: end grants (quota.Redis.Settle, batched): free their
-- concurrency slots and correct their token reservations to the tokens
-- really used. acquire.lua settles the same way, piggybacked.
--
-- ARGV[1]   now µs, or -1 for the server clock
-- ARGV[2]   number of grants g
-- grant i (from 0), KEYS[1+6i..6+6i]: credential hash, zset; pool hash,
--   zset; client hash, zset
-- grant i, ARGV[3+25i..27+25i]: reserved at (µs), used minus reserved
--   tokens, lease id, reserved tokens, credential limit (7), pool limit
--   (7), client limit (7)
--
-- Returns the number of grants settled.
local now = now_us()
local count = tonumber(ARGV[2])
settle_all(1, 3, count, now)
flush_all(now)
return count
