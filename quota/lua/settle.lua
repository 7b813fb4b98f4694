-- settle.lua: end grants (quota.Redis.Settle, batched): free their
-- concurrency slots and correct their reservations (tokens, money) to
-- what the requests used. acquire.lua settles the same way, piggybacked.
--
-- ARGV[1]   now µs, or -1 for the server clock
-- ARGV[2]   number of grants g
-- grant j (from 0), KEYS[1+4j..4+4j]: credential hash, channel hash,
--   client hash, group hash (their concurrency zsets are KEY:<window id>)
-- grant j, from the argument after the previous grant's: reserved at
--   (µs), lease id, reserved tokens, reserved micro-dollars, used minus
--   reserved tokens, used minus reserved micro-dollars, then the windows
--   of the credential, of the channel, of the client and of its group
--   (prelude.lua's encoding)
--
-- Returns the number of grants settled.
local now = now_us()
local count = tonumber(ARGV[2])
settle_all(1, 3, count, now)
flush_all(now)
return count
