-- take.lua: lease a batch of capacity to one instance (quota.Leased), and
-- first give back what its previous, expired batch left unused and charge
-- what its requests used beyond their reservations.
--
-- A batch is recorded in the sliding windows' slot of now + hold: the
-- instance may admit from it until then, and it stays counted for a full
-- window after the last moment it can be used, so leasing never
-- over-admits. In calendar windows it is charged to the current period,
-- and the instance may use it only until that period ends.
--
-- KEYS[1..4]   credential hash, channel hash, client hash, group hash
-- ARGV[1]      now µs, or -1 for the server clock
-- ARGV[2..4]   requests, tokens and micro-dollars wanted for the batch
--              (0 tokens or money: no such window applies)
-- ARGV[5..6]   tokens and micro-dollars the next request needs at least
-- ARGV[7]      hold µs
-- then, for subject s = 1..4: its windows (prelude.lua's encoding),
--              then what to give back of its previous batch (requests,
--              tokens, micro-dollars) and the µs that batch was recorded
--              at, then the tokens and micro-dollars owed
-- then         number of earlier grants to settle first, g, and their
--              arguments (settle.lua); their keys follow KEYS[4]
--
-- Returns {requests, tokens, micro-dollars granted, now, usable until µs, 0, '', 0}
--   or, refused, {0, 0, 0, now, 0, subject (1 credential, 2 channel,
--   3 client, 4 group), reason (a window id, 'cool' or 'large'), retry µs
--   (-1 never)}
local now = now_us()
local want = {req = tonumber(ARGV[2]), tok = tonumber(ARGV[3]), cost = tonumber(ARGV[4])}
local need = {tok = tonumber(ARGV[5]), cost = tonumber(ARGV[6])}
local hold = tonumber(ARGV[7])
local batch_at = now + hold
local subjects = {}
local i = 8
for s = 1, 4 do
  local ws
  ws, i = read_windows(i)
  local back = {req = tonumber(ARGV[i]), tok = tonumber(ARGV[i + 1]), cost = tonumber(ARGV[i + 2])}
  local back_at = tonumber(ARGV[i + 3])
  local debt = {tok = tonumber(ARGV[i + 4]), cost = tonumber(ARGV[i + 5])}
  i = i + 6
  if #ws > 0 then
    local at = nil
    if back_at > 0 then at = back_at end
    local st = subject(KEYS[s], ws, now, at)
    for _, w in ipairs(ws) do
      local b = back.req
      if w.unit == TOKENS then b = back.tok elseif w.unit == COST then b = back.cost end
      local owed = 0
      if w.unit ~= REQUESTS then owed = amount(debt, w.unit) end
      if w.kind == RATE then
        -- Give back what an expired batch did not use.
        if back.req > 0 and st.v[w.t] then
          put(st, w.t, math.max(now, st.v[w.t] - back.req * w.p1))
        end
      elseif w.kind == SLIDING then
        local cur = slot_of(w, now)
        slide(st, w, cur)
        local slot = slot_of(w, back_at)
        if b > 0 and slot >= st.v[w.h] then
          local name, sf = f(w, slot), w.s
          local c = get(st, name) or 0
          local v = math.max(0, c - b)
          put(st, name, v)
          put(st, sf, math.max(0, st.v[sf] - (c - v)))
        end
        if owed > 0 then
          add(st, w, cur, owed)
        end
      elseif w.kind == CALENDAR then
        local _, start = counted(st, w, now)
        if b > 0 and back_at > 0 and period(w, back_at) == start then
          charge(st, w, now, -b)
        end
        if owed > 0 then
          charge(st, w, now, owed)
        end
      end
    end
    subjects[#subjects + 1] = {st = st, ws = ws, index = s}
  end
end

-- Grants this instance ended since its last call are settled first.
settle_all(5, i + 1, tonumber(ARGV[i]), now)

-- Nothing wanted: a give back only (quota.Leased.GiveBack).
if want.req == 0 then
  flush_all(now)
  return {0, 0, 0, now, 0, 0, '', 0}
end

-- How much every subject can give.
local got = {req = want.req, tok = want.tok, cost = want.cost}
local usable = now + hold
local refused, reason, retry = 0, '', 0
-- refuse mirrors check's fail: the first reason wins unless a later one
-- can never pass, and the longest wait (or never) wins.
local function refuse(s, r, wait)
  if refused == 0 or (wait < 0 and retry >= 0) then
    refused, reason, retry = s, r, wait
  elseif retry >= 0 and wait > retry then
    retry = wait
  end
end
local function limit_to(unit, avail)
  if unit == TOKENS then got.tok = math.min(got.tok, math.max(0, avail))
  elseif unit == COST then got.cost = math.min(got.cost, math.max(0, avail))
  else got.req = math.min(got.req, math.max(0, avail)) end
end
for _, sub in ipairs(subjects) do
  local st = sub.st
  local cool = st.v['cool']
  if cool and cool > now then
    refuse(sub.index, 'cool', cool - now)
  end
  for _, w in ipairs(sub.ws) do
    local least = 1
    if w.unit ~= REQUESTS then least = amount(need, w.unit) end
    if w.kind == RATE then
      local tat = math.max(st.v[w.t] or now, now)
      local avail = math.floor((now - (tat - w.limit * w.p1)) / w.p1)
      limit_to(REQUESTS, avail)
      if avail < 1 then
        refuse(sub.index, w.id, tat - w.limit * w.p1 + w.p1 - now)
      end
    elseif w.kind == SLIDING then
      local cur = slot_of(w, now)
      local avail = w.limit - st.v[w.s]
      limit_to(w.unit, avail)
      if least > w.limit then
        refuse(sub.index, 'large', -1)
      elseif avail < least then
        refuse(sub.index, w.id, window_retry(st, w, now, cur, least))
      end
    elseif w.kind == CALENDAR then
      -- A batch takes at most a quarter of what is left of a budget (at
      -- least what the request needs): the other instances keep the
      -- rest, and a batch lost with its instance costs little of it.
      local c, _, ends = counted(st, w, now)
      limit_to(w.unit, math.min(w.limit - c, math.max(least, math.floor((w.limit - c) / 4))))
      if ends < usable then usable = ends end
      if least > w.limit then
        refuse(sub.index, 'large', -1)
      elseif w.limit - c < least then
        refuse(sub.index, w.id, ends - now)
      end
    end
  end
end

if refused == 0 and got.req < 1 then
  refuse(1, 'none', CONC_POLL)
end
if refused > 0 then
  flush_all(now)
  return {0, 0, 0, now, 0, refused, reason, retry}
end

for _, sub in ipairs(subjects) do
  local st = sub.st
  for _, w in ipairs(sub.ws) do
    local n = amount({tok = got.tok, cost = got.cost}, w.unit)
    if w.unit == REQUESTS then n = got.req end
    if w.kind == RATE then
      put(st, w.t, math.max(st.v[w.t] or now, now) + got.req * w.p1)
    elseif w.kind == SLIDING then
      add(st, w, slot_of(w, batch_at), n)
    elseif w.kind == CALENDAR then
      charge(st, w, now, n)
    end
  end
end
flush_all(now)
return {got.req, got.tok, got.cost, now, usable, 0, '', 0}
