-- take.lua: lease a batch of capacity to one instance (quota.Leased), and
-- first give back what its previous, expired batch left unused and charge
-- the tokens its requests used beyond their reservations.
--
-- The batch is recorded in the window slot of now + hold: the instance may
-- admit from it until then, and it stays counted for a full window after
-- the last moment it can be used, so leasing never over-admits.
--
-- KEYS[1..3]   credential hash, pool hash, client hash
-- ARGV[1]      now µs, or -1 for the server clock
-- ARGV[2]      requests wanted (the batch)
-- ARGV[3]      tokens wanted for the batch (0: no token limit applies)
-- ARGV[4]      tokens the next request needs at least
-- ARGV[5]      hold µs
-- ARGV[6..12]  credential limit; [13..19] pool limit; [20..26] client limit
-- ARGV[27+4s..] for subject s = 0, 1, 2: requests and tokens to give back,
--              the µs their batch was recorded at, tokens owed
--
-- Returns {requests granted, tokens granted, now, 0, '', 0} or, refused,
--         {0, 0, now, subject (1 credential, 2 pool, 3 client), reason, retry µs (-1 never)}
local now = now_us()
local want, want_tok, min_tok, hold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local batch_at = now + hold
local subjects = {}
for s = 0, 2 do
  local l = limit(6 + 7 * s)
  if not is_zero(l) then
    local b = 27 + 4 * s
    local ret_req, ret_tok, ret_at, debt = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
    local st = subject(KEYS[1 + s], KEYS[1 + s] .. ':c', l, now, ret_at > 0 and ret_at or nil)
    -- Give back what an expired batch did not use.
    if ret_req > 0 and l.interval > 0 and st.v['tat'] then
      put(st, 'tat', math.max(now, st.v['tat'] - ret_req * l.interval))
    end
    for _, w in ipairs(WINDOWS) do
      if l[w] > 0 then
        local cur = slot_of(now, w)
        slide(st, w, cur)
        local back = ret_req
        if TOKENS[w] then back = ret_tok end
        local slot = slot_of(ret_at, w)
        if back > 0 and slot >= st.v[H[w]] then
          local f = field(w, slot)
          local c = get(st, f) or 0
          local v = math.max(0, c - back)
          put(st, f, v)
          put(st, S[w], math.max(0, st.v[S[w]] - (c - v)))
        end
        if debt > 0 and TOKENS[w] then
          add(st, w, cur, debt)
        end
      end
    end
    subjects[#subjects + 1] = {st = st, l = l, index = s + 1}
  end
end

-- How much every subject can give.
local n, m = want, want_tok
local refused, reason, retry = 0, '', 0
local function refuse(s, r, wait)
  if refused == 0 then
    refused, reason, retry = s, r, wait
  elseif retry >= 0 and (wait < 0 or wait > retry) then
    retry = wait
  end
end
for _, sub in ipairs(subjects) do
  local st, l = sub.st, sub.l
  local cool = st.v['cool']
  if cool and cool > now then
    refuse(sub.index, 'cooldown', cool - now)
  end
  if l.interval > 0 then
    local tat = math.max(st.v['tat'] or now, now)
    local avail = math.floor((now - (tat - l.burst * l.interval)) / l.interval)
    n = math.min(n, math.max(0, avail))
    if avail < 1 then
      refuse(sub.index, 'qps', tat - l.burst * l.interval + l.interval - now)
    end
  end
  for _, w in ipairs(WINDOWS) do
    local lim = l[w]
    if lim > 0 then
      local cur = slot_of(now, w)
      local avail = lim - st.v[S[w]]
      if not TOKENS[w] then
        n = math.min(n, math.max(0, avail))
        if avail < 1 then
          refuse(sub.index, REASON[w], window_retry(st, w, now, cur, lim, 1))
        end
      else
        m = math.min(m, math.max(0, avail))
        if min_tok > lim then
          refuse(sub.index, 'too_large', -1)
        elseif avail < min_tok then
          refuse(sub.index, REASON[w], window_retry(st, w, now, cur, lim, min_tok))
        end
      end
    end
  end
end

if refused == 0 and n < 1 then
  refuse(1, 'qps', CONC_POLL)
end
if refused > 0 then
  flush_all(now)
  return {0, 0, now, refused, reason, retry}
end

for _, sub in ipairs(subjects) do
  local st, l = sub.st, sub.l
  if l.interval > 0 then
    put(st, 'tat', math.max(st.v['tat'] or now, now) + n * l.interval)
  end
  for _, w in ipairs(WINDOWS) do
    if l[w] > 0 then
      local cost = n
      if TOKENS[w] then cost = m end
      add(st, w, slot_of(batch_at, w), cost)
    end
  end
end
flush_all(now)
return {n, m, now, 0, '', 0}
