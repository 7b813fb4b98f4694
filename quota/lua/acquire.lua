-- acquire.lua: grant the first candidate with room, atomically with the
-- client's quota and the sticky mapping (quota.Redis.Acquire).
--
-- KEYS[1], KEYS[2]   client hash, the client's group's hash
-- KEYS[3]            sticky key (string: credential id), read and written
--                    only when the sticky time to live > 0
-- KEYS[4+2(i-1)..]   candidate i: credential hash, channel (pool) hash
-- then 4 keys per earlier grant to settle first (settle.lua)
-- ARGV[1]            now µs, or -1 for the server clock
-- ARGV[2], ARGV[3]   tokens and micro-dollars to reserve
-- ARGV[4]            lease id for concurrency slots
-- ARGV[5]            lease time to live, µs
-- ARGV[6]            sticky time to live, ms (0: no affinity)
-- ARGV[7]            how many leading candidates (the top priority tier)
--                    the sticky mapping may promote; 0: all
-- ARGV[8..]          the client's windows (prelude.lua's encoding), then
--                    its group's
-- then               number of candidates n, and per candidate: its id,
--                    its windows, its channel's windows
-- then               number of earlier grants to settle first, g, and
--                    their arguments (settle.lua)
--
-- Returns, granted:  {1, index (1-based), now, sticky hit (0/1), report (6)}
--          refused:  {0, scope, reason (a window id, 'cool' or 'large'),
--                     retry µs (-1 never), now, 0, report (6)}
local now = now_us()
local amt = {tok = math.max(0, tonumber(ARGV[2])), cost = math.max(0, tonumber(ARGV[3]))}
local lease, lease_ttl = ARGV[4], tonumber(ARGV[5])
local sticky_ttl, sticky_tier = tonumber(ARGV[6]), tonumber(ARGV[7])
local client_ws, i = read_windows(8)
local group_ws
group_ws, i = read_windows(i)
local n = tonumber(ARGV[i])
i = i + 1
local cands = {}
for c = 1, n do
  local cand = {id = ARGV[i], key = KEYS[4 + 2 * (c - 1)], pkey = KEYS[5 + 2 * (c - 1)]}
  cand.ws, i = read_windows(i + 1)
  cand.pws, i = read_windows(i)
  cands[c] = cand
end
if sticky_tier <= 0 then
  sticky_tier = n
end

-- Grants this instance ended since its last call are settled first.
settle_all(4 + 2 * n, i + 1, tonumber(ARGV[i]), now)

local client
if #client_ws > 0 then
  client = subject(KEYS[1], client_ws, now)
  local ok, reason, retry = check(client, client_ws, now, amt)
  if not ok then
    local r = report(client, client_ws, now)
    flush_all(now)
    return {0, 'client', reason, retry, now, 0, r[1], r[2], r[3], r[4], r[5], r[6]}
  end
end

local group
if #group_ws > 0 then
  group = subject(KEYS[2], group_ws, now)
  local ok, reason, retry = check(group, group_ws, now, amt)
  if not ok then
    local r = report(group, group_ws, now)
    flush_all(now)
    return {0, 'group', reason, retry, now, 0, r[1], r[2], r[3], r[4], r[5], r[6]}
  end
end

-- The sticky credential, when it is a candidate of the top tier, is
-- tried first.
local order, sticky_id, hit = {}, nil, 0
if sticky_ttl > 0 then
  sticky_id = call('GET', KEYS[3])
end
for c = 1, n do
  if sticky_id and c <= sticky_tier and cands[c].id == sticky_id then
    table.insert(order, 1, c)
    hit = 1
  else
    order[#order + 1] = c
  end
end

local best, best_retry, best_reason, best_report = nil, -1, nil, nil
for _, c in ipairs(order) do
  local cand = cands[c]
  local st = subject(cand.key, cand.ws, now)
  local ok, reason, retry = check(st, cand.ws, now, amt)
  local pst
  if #cand.pws > 0 then
    pst = subject(cand.pkey, cand.pws, now)
    local pok, preason, pretry = check(pst, cand.pws, now, amt)
    if not pok then
      if ok or (pretry < 0 and retry >= 0) then
        ok, reason, retry = false, preason, pretry
      elseif retry >= 0 and pretry > retry then
        retry = pretry
      end
    end
  end
  if ok then
    take(st, cand.ws, now, amt, lease, lease_ttl)
    if pst then
      take(pst, cand.pws, now, amt, lease, lease_ttl)
    end
    local r = {0, 0, 0, 0, 0, 0}
    if client then
      take(client, client_ws, now, amt, lease, lease_ttl)
      r = report(client, client_ws, now)
    end
    if group then
      take(group, group_ws, now, amt, lease, lease_ttl)
    end
    if sticky_ttl > 0 then
      if sticky_id == cand.id then
        call('PEXPIRE', KEYS[3], sticky_ttl)
      else
        call('SET', KEYS[3], cand.id, 'PX', sticky_ttl)
      end
    end
    flush_all(now)
    return {1, c, now, hit, r[1], r[2], r[3], r[4], r[5], r[6]}
  end
  if best == nil or (retry >= 0 and (best_retry < 0 or retry < best_retry)) then
    best, best_retry, best_reason, best_report = c, retry, reason, report(st, cand.ws, now)
  end
end

if client then
  best_report = report(client, client_ws, now)
end
flush_all(now)
local r = best_report or {0, 0, 0, 0, 0, 0}
return {0, 'credential', best_reason or 'none', best_retry, now, 0, r[1], r[2], r[3], r[4], r[5], r[6]}
