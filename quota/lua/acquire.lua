-- acquire.lua: grant the first candidate with room, atomically with the
-- client's quota and the sticky mapping (quota.Redis.Acquire).
--
-- KEYS[1], KEYS[2]   client hash and lease zset
-- KEYS[3]            sticky key (string: credential id), read and written
--                    only when ARGV[5] > 0
-- KEYS[4+4(i-1)..]   candidate i: credential hash, credential zset,
--                    pool hash, pool zset
-- ARGV[1]            now µs, or -1 for the server clock
-- ARGV[2]            tokens to reserve
-- ARGV[3]            lease id for concurrency slots
-- ARGV[4]            lease time to live, µs
-- ARGV[5]            sticky time to live, ms (0: no affinity)
-- ARGV[6]            how many leading candidates (the top priority tier)
--                    the sticky mapping may promote; 0: all
-- ARGV[7..13]        client limit
-- ARGV[14]           number of candidates n
-- ARGV[15+16(i-1)..] candidate i: id, has pool (0/1), limit (7), pool limit (7)
-- then ARGV[a]       number of earlier grants to settle first, g; their
--                    keys follow the candidates' in KEYS and their
--                    arguments follow ARGV[a], encoded as in settle.lua
--
-- Returns, granted:  {1, index (1-based), now, sticky hit (0/1), report (6)}
--          refused:  {0, scope, reason, retry µs (-1 never), now, 0, report (6)}
local now = now_us()
local tokens = math.max(0, tonumber(ARGV[2]))
local lease, lease_ttl = ARGV[3], tonumber(ARGV[4])
local sticky_ttl, sticky_tier = tonumber(ARGV[5]), tonumber(ARGV[6])
local client_limit = limit(7)
local n = tonumber(ARGV[14])
if sticky_tier <= 0 then
  sticky_tier = n
end

-- Grants this instance ended since its last call are settled first.
local settles_at = 15 + 16 * n
settle_all(4 + 4 * n, settles_at + 1, tonumber(ARGV[settles_at]), now)

local client, client_tat
if not is_zero(client_limit) then
  client = subject(KEYS[1], KEYS[2], client_limit, now)
  local ok, reason, retry
  ok, reason, retry, client_tat = check(client, client_limit, now, tokens)
  if not ok then
    local r = report(client, client_limit, now)
    flush_all(now)
    return {0, 'client', REASON[reason], retry, now, 0, r[1], r[2], r[3], r[4], r[5], r[6]}
  end
end

local cands = {}
for i = 1, n do
  local a = 15 + 16 * (i - 1)
  cands[i] = {id = ARGV[a], pool = ARGV[a + 1] == '1', limit = limit(a + 2), pool_limit = limit(a + 9),
              key = KEYS[4 + 4 * (i - 1)], zkey = KEYS[5 + 4 * (i - 1)],
              pkey = KEYS[6 + 4 * (i - 1)], pzkey = KEYS[7 + 4 * (i - 1)]}
end

-- The sticky credential, when it is a candidate of the top tier, is
-- tried first.
local order, sticky_id, hit = {}, nil, 0
if sticky_ttl > 0 then
  sticky_id = call('GET', KEYS[3])
end
for i = 1, n do
  if sticky_id and i <= sticky_tier and cands[i].id == sticky_id then
    table.insert(order, 1, i)
    hit = 1
  else
    order[#order + 1] = i
  end
end

local best, best_retry, best_reason, best_report = nil, -1, nil, nil
for _, i in ipairs(order) do
  local c = cands[i]
  local st = subject(c.key, c.zkey, c.limit, now)
  local ok, reason, retry, tat = check(st, c.limit, now, tokens)
  local pst, ptat
  if c.pool and not is_zero(c.pool_limit) then
    pst = subject(c.pkey, c.pzkey, c.pool_limit, now)
    local pok, preason, pretry
    pok, preason, pretry, ptat = check(pst, c.pool_limit, now, tokens)
    if not pok then
      if ok or (pretry < 0 and retry >= 0) then
        ok, reason, retry = false, preason, pretry
      elseif retry >= 0 and pretry > retry then
        retry = pretry
      end
    end
  end
  if ok then
    take(st, c.limit, now, tokens, tat, lease, lease_ttl)
    if pst then
      take(pst, c.pool_limit, now, tokens, ptat, lease, lease_ttl)
    end
    local r = {0, 0, 0, 0, 0, 0}
    if client then
      take(client, client_limit, now, tokens, client_tat, lease, lease_ttl)
      r = report(client, client_limit, now)
    end
    if sticky_ttl > 0 then
      if sticky_id == c.id then
        call('PEXPIRE', KEYS[3], sticky_ttl)
      else
        call('SET', KEYS[3], c.id, 'PX', sticky_ttl)
      end
    end
    flush_all(now)
    return {1, i, now, hit, r[1], r[2], r[3], r[4], r[5], r[6]}
  end
  if best == nil or (retry >= 0 and (best_retry < 0 or retry < best_retry)) then
    best, best_retry, best_reason, best_report = i, retry, reason, report(st, c.limit, now)
  end
end

if client then
  best_report = report(client, client_limit, now)
end
flush_all(now)
local r = best_report or {0, 0, 0, 0, 0, 0}
return {0, 'credential', REASON[best_reason] or 'none', best_retry, now, 0, r[1], r[2], r[3], r[4], r[5], r[6]}
