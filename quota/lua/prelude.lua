-- prelude.lua: state and math shared by every quota script; it is
-- prepended to each script when the script is loaded. It mirrors
-- quota/math.go and quota/memory.go: keep them in step.
--
-- Every script takes ARGV[1] = a fixed "now" in microseconds (tests) or
-- -1 to read the Redis server's clock (production), so the instances'
-- clocks never matter.
--
-- A subject's limit is a list of windows (quota.Window), encoded by
-- quota.encodeWindows: their count, then for each its id, its code (kind
-- * 4 + unit; kinds 1 rate, 2 sliding, 3 calendar, 4 concurrent; units 1
-- requests, 2 tokens, 3 micro-dollars), its limit, and its parameters:
-- a rate's interval µs; a sliding window's width µs; a calendar window's
-- four period boundaries around the caller's now, µs (the period before,
-- the current one, the next, the one after: the script picks the period
-- its own clock is in); none for a concurrent window.
--
-- A subject (credential, channel or client) is a hash KEY with, per
-- window id:
--   rate      <id>:t   theoretical arrival time µs (GCRA)
--   sliding   <id>:h   oldest slot still counted, <id>:s the sum of the
--             counted slots, <id>:<slot> the count of one slot (60 slots
--             per width)
--   calendar  <id>:p   start of the period counted µs, <id>:n its count
-- and cool (cool-down until µs); a concurrent window is the zset
-- KEY:<id> (member = lease id, score = expiry µs), in the same hash slot.
--
-- Each redis.call costs microseconds, so a script reads each subject's
-- hash once (HMGET, with the fields it will need), works on a cache, and
-- writes each changed subject once at the end (flush_all: HSET, and
-- PEXPIRE when the TTL must move).

local SLOTS = 60
local RATE, SLIDING, CALENDAR, CONCURRENT = 1, 2, 3, 4
local REQUESTS, TOKENS, COST = 1, 2, 3
local CONC_POLL = 20000 -- µs; when a slot frees is not predictable
local call = redis.call

local function now_us()
  local fixed = tonumber(ARGV[1])
  if fixed >= 0 then
    return fixed
  end
  local t = call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The fields of each window id, built once per script run: windows of one
-- id (a client's rpm and a credential's) share them.
local fields = {}

local function fields_of(id)
  local fs = fields[id]
  if fs == nil then
    fs = {h = id .. ':h', s = id .. ':s', t = id .. ':t', p = id .. ':p', n = id .. ':n', names = {}}
    fields[id] = fs
  end
  return fs
end

-- read_windows reads a list of windows starting at ARGV[i]; it returns
-- them and the index after them.
local function read_windows(i)
  local n = tonumber(ARGV[i])
  local ws = {}
  i = i + 1
  for k = 1, n do
    local id, code = ARGV[i], tonumber(ARGV[i + 1])
    local fs = fields_of(id)
    local w = {id = id, kind = math.floor(code / 4), unit = code % 4, limit = tonumber(ARGV[i + 2]),
               h = fs.h, s = fs.s, t = fs.t, p = fs.p, n = fs.n, names = fs.names}
    i = i + 3
    if w.kind == SLIDING then
      w.p1 = tonumber(ARGV[i])
      w.slot = math.max(1, math.floor(w.p1 / SLOTS))
      i = i + 1
    elseif w.kind == RATE then
      w.p1 = tonumber(ARGV[i])
      i = i + 1
    elseif w.kind == CALENDAR then
      w.p1, w.p2, w.p3, w.p4 = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
      i = i + 4
    end
    ws[k] = w
  end
  return ws, i
end

-- amount is what a request counts in a window of unit u: one request, or
-- its tokens, or its micro-dollars (amt = {tok, cost}).
local function amount(amt, u)
  if u == REQUESTS then return 1 end
  if u == TOKENS then return amt.tok end
  return amt.cost
end

local function slot_of(w, t)
  return math.floor(t / w.slot)
end

-- period returns the start and end of the calendar period t is in.
local function period(w, t)
  if t < w.p2 then return w.p1, w.p2 end
  if t < w.p3 then return w.p2, w.p3 end
  return w.p3, w.p4
end

-- f names the field of one slot of a sliding window, built on first use
-- (the other fields' names are built when the window is read: w.h, w.s,
-- w.t, w.p, w.n).
local function f(w, slot)
  local v = w.names[slot]
  if v == nil then
    v = w.id .. ':' .. slot
    w.names[slot] = v
  end
  return v
end

-- The subjects a script has read, by hash key.
local cache, order = {}, {}

-- subject returns a subject's state, reading its hash on first use with
-- the fields its windows need at now (and, for a settlement or a give
-- back, at the time of a reservation). Later uses read only fields not
-- known yet.
local function subject(key, ws, now, at)
  local want = {}
  for _, w in ipairs(ws) do
    if w.kind == RATE then
      want[#want + 1] = w.t
    elseif w.kind == SLIDING then
      want[#want + 1] = w.h
      want[#want + 1] = w.s
      want[#want + 1] = f(w, slot_of(w, now))
      if at and at > 0 and w.unit ~= REQUESTS then
        want[#want + 1] = f(w, slot_of(w, at))
      end
    elseif w.kind == CALENDAR then
      want[#want + 1] = w.p
      want[#want + 1] = w.n
    end
  end
  local st = cache[key]
  if st == nil then
    st = {key = key, v = {}, known = {}, dirty = {}, fresh = true, rolled = false, keep = 0}
    cache[key] = st
    order[#order + 1] = st
    want[#want + 1] = 'cool'
  end
  for _, w in ipairs(ws) do
    local keep = 0
    if w.kind == SLIDING then
      keep = (SLOTS + 2) * w.slot
    elseif w.kind == CALENDAR then
      keep = w.p4 - now
    end
    if keep > st.keep then st.keep = keep end
  end
  local missing = {}
  for _, name in ipairs(want) do
    if not st.known[name] then
      missing[#missing + 1] = name
      st.known[name] = true
    end
  end
  if #missing > 0 then
    local v = call('HMGET', key, unpack(missing))
    for i, name in ipairs(missing) do
      st.v[name] = tonumber(v[i])
      if v[i] then
        st.fresh = false
      end
    end
  end
  return st
end

-- get reads a field of a subject, from the cache when it can.
local function get(st, name)
  if not st.known[name] then
    st.v[name] = tonumber(call('HGET', st.key, name))
    st.known[name] = true
  end
  return st.v[name]
end

-- put changes a field, written at flush.
local function put(st, name, value)
  st.v[name] = value
  st.known[name] = true
  st.dirty[name] = true
end

-- prefetch reads the slot fields head..last of a sliding window not
-- known yet, in one call.
local function prefetch(st, w, head, last)
  local names = {}
  for s = head, last do
    local name = f(w, s)
    if not st.known[name] then
      names[#names + 1] = name
      st.known[name] = true
    end
  end
  if #names > 0 then
    local v = call('HMGET', st.key, unpack(names))
    for i, name in ipairs(names) do
      st.v[name] = tonumber(v[i])
    end
  end
end

-- slide brings a sliding window up to slot cur, dropping the slots that
-- left it, and returns the units it counts.
local function slide(st, w, cur)
  local oldest = cur - SLOTS
  local hf, sf = w.h, w.s
  local head, sum = st.v[hf], st.v[sf] or 0
  if head == nil then
    put(st, hf, oldest)
    put(st, sf, 0)
    return 0
  end
  if head >= oldest then
    return sum
  end
  -- A batch leased ahead may sit one slot past head + SLOTS.
  local last = math.min(oldest - 1, head + SLOTS + 1)
  if oldest - head <= SLOTS then
    prefetch(st, w, head, last)
    for s = head, last do
      sum = sum - (st.v[f(w, s)] or 0)
    end
  else
    sum = 0 -- idle for a whole window: every slot left
  end
  local gone = {}
  for s = head, last do
    local name = f(w, s)
    gone[#gone + 1] = name
    st.v[name], st.known[name], st.dirty[name] = nil, true, nil
  end
  call('HDEL', st.key, unpack(gone))
  put(st, hf, oldest)
  put(st, sf, math.max(sum, 0))
  st.rolled = true
  return math.max(sum, 0)
end

-- add records n units in slot s of a sliding window.
local function add(st, w, s, n)
  local name, sf = f(w, s), w.s
  put(st, name, math.max(0, (get(st, name) or 0) + n))
  put(st, sf, math.max(0, (st.v[sf] or 0) + n))
end

-- counted returns a calendar window's count in its current period, and
-- the period's start and end; a period that rolled over counts 0.
local function counted(st, w, now)
  local start, ends = period(w, now)
  local n = 0
  if st.v[w.p] == start then
    n = st.v[w.n] or 0
  end
  return n, start, ends
end

-- charge adds n units to a calendar window's current period.
local function charge(st, w, now, n)
  local c, start = counted(st, w, now)
  if st.v[w.p] ~= start then
    st.rolled = true
  end
  put(st, w.p, start)
  put(st, w.n, math.max(0, c + n))
end

-- window_retry is how long until cost more units fit under lim: the time
-- the oldest slots that must free up leave the window.
local function window_retry(st, w, now, cur, cost)
  local excess = st.v[w.s] + cost - w.limit
  local head = st.v[w.h]
  prefetch(st, w, head, cur)
  local freed = 0
  for s = head, cur do
    freed = freed + (st.v[f(w, s)] or 0)
    if freed >= excess then
      return (s + SLOTS + 1) * w.slot - now
    end
  end
  return (cur + SLOTS + 1) * w.slot - now
end

-- gcra mirrors math.go.
local function gcra(tat, now, interval, burst, cost)
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  if now < allow_at then
    return false, 0, allow_at - now
  end
  return true, new_tat, 0
end

local function zset(st, w)
  return st.key .. ':' .. w.id
end

-- check mirrors subject.check in memory.go: ok, reason (a window id, or
-- 'cool', 'large'), retry (µs, -1: never).
local function check(st, ws, now, amt)
  local ok, reason, retry = true, nil, 0
  local function fail(r, wait)
    if ok or (wait < 0 and retry >= 0) then
      ok, reason, retry = false, r, wait
    elseif retry >= 0 and wait > retry then
      retry = wait
    end
  end
  local cool = st.v['cool']
  if cool and cool > now then
    fail('cool', cool - now)
  end
  for _, w in ipairs(ws) do
    local cost = amount(amt, w.unit)
    if w.kind == RATE then
      local pass, tat, wait = gcra(st.v[w.t], now, w.p1, w.limit, 1)
      w.tat = tat
      if not pass then fail(w.id, wait) end
    elseif w.kind == SLIDING then
      local cur = slot_of(w, now)
      local used = slide(st, w, cur)
      if cost > w.limit then
        fail('large', -1)
      elseif used + cost > w.limit then
        fail(w.id, window_retry(st, w, now, cur, cost))
      end
    elseif w.kind == CALENDAR then
      local n, _, ends = counted(st, w, now)
      if cost > w.limit then
        fail('large', -1)
      elseif n + cost > w.limit then
        fail(w.id, ends - now)
      end
    elseif w.kind == CONCURRENT then
      local z = zset(st, w)
      call('ZREMRANGEBYSCORE', z, '-inf', now)
      if call('ZCARD', z) >= w.limit then
        fail(w.id, CONC_POLL)
      end
    end
  end
  return ok, reason, retry
end

-- take records an admitted request and its reservation.
local function take(st, ws, now, amt, lease, lease_ttl)
  for _, w in ipairs(ws) do
    local cost = amount(amt, w.unit)
    if w.kind == RATE then
      put(st, w.t, w.tat)
    elseif w.kind == SLIDING then
      add(st, w, slot_of(w, now), cost)
    elseif w.kind == CALENDAR then
      charge(st, w, now, cost)
    elseif w.kind == CONCURRENT then
      local z = zset(st, w)
      call('ZADD', z, now + lease_ttl, lease)
      call('PEXPIRE', z, math.floor(lease_ttl / 1000) + 1000)
    end
  end
end

-- flush_all writes every subject a script changed: one HSET each, and a
-- PEXPIRE when the subject is new, rolled a window over, or has no window
-- to roll over (its TTL must follow its rate or cool-down instead).
local function flush_all(now)
  for _, st in ipairs(order) do
    local args = {}
    for name in pairs(st.dirty) do
      args[#args + 1] = name
      args[#args + 1] = st.v[name]
    end
    if #args > 0 then
      call('HSET', st.key, unpack(args))
      local keep = st.keep
      if st.fresh or st.rolled or keep == 0 then
        for name, v in pairs(st.v) do
          if (name == 'cool' or string.sub(name, -2) == ':t') and v and v - now > keep then
            keep = v - now
          end
        end
        call('PEXPIRE', st.key, math.floor(keep / 1000) + 1000)
      end
    end
  end
end

-- report returns the tightest request and token meters of a subject, as
-- {req_limit, req_remaining, req_reset, tok_limit, tok_remaining, tok_reset}
-- (µs for resets), mirroring subject.report in memory.go.
local function report(st, ws, now)
  local out = {0, 0, 0, 0, 0, 0}
  local function offer(base, lim, remaining, reset)
    if out[base] == 0 or remaining < out[base + 1] then
      out[base], out[base + 1], out[base + 2] = lim, remaining, reset
    end
  end
  for _, w in ipairs(ws) do
    local base = 0
    if w.unit == REQUESTS and w.kind ~= CONCURRENT then base = 1 end
    if w.unit == TOKENS then base = 4 end
    if base > 0 then
      if w.kind == RATE then
        local tat = math.max(st.v[w.t] or now, now)
        local remaining = w.limit - math.floor((tat - now + w.p1 - 1) / w.p1)
        offer(base, w.limit, math.max(0, math.min(w.limit, remaining)), tat - now)
      elseif w.kind == SLIDING then
        local sum = st.v[w.s] or 0
        local reset = 0
        if sum > 0 then
          reset = (slot_of(w, now) + SLOTS + 1) * w.slot - now
        end
        offer(base, w.limit, math.max(0, w.limit - sum), reset)
      elseif w.kind == CALENDAR then
        local n, _, ends = counted(st, w, now)
        offer(base, w.limit, math.max(0, w.limit - n), ends - now)
      end
    end
  end
  return out
end

-- correct changes a reservation made at `at` by delta units (used minus
-- reserved) in a token or money window; reserved + delta is what was
-- used. A reservation whose slot or period is over (a call longer than
-- the window, or across the end of a period) has all its use charged now,
-- the latest moment it can have happened.
local function correct(st, w, now, at, reserved, delta)
  if w.kind == SLIDING then
    local cur, s = slot_of(w, now), slot_of(w, at)
    slide(st, w, cur)
    if s >= st.v[w.h] then
      local name, sf = f(w, s), w.s
      local c = get(st, name) or 0
      local v = math.max(0, c + delta)
      put(st, name, v)
      put(st, sf, math.max(0, st.v[sf] + v - c))
    elseif reserved + delta > 0 then
      add(st, w, cur, reserved + delta)
    end
  elseif w.kind == CALENDAR then
    local _, start = counted(st, w, now)
    if period(w, at) == start then
      charge(st, w, now, delta)
    elseif reserved + delta > 0 then
      charge(st, w, now, reserved + delta)
    end
  end
end

-- settle_all ends count grants, encoded as settle.lua says: their keys
-- start at KEYS[key_base] (4 each) and their arguments at ARGV[i]. It
-- returns the index after them.
local function settle_all(key_base, i, count, now)
  for g = 0, count - 1 do
    local kb = key_base + 4 * g
    local at, lease = tonumber(ARGV[i]), ARGV[i + 1]
    local reserved = {tok = tonumber(ARGV[i + 2]), cost = tonumber(ARGV[i + 3])}
    local delta = {tok = tonumber(ARGV[i + 4]), cost = tonumber(ARGV[i + 5])}
    i = i + 6
    for s = 0, 3 do
      local ws
      ws, i = read_windows(i)
      local st
      for _, w in ipairs(ws) do
        if w.kind == CONCURRENT then
          call('ZREM', KEYS[kb + s] .. ':' .. w.id, lease)
        elseif w.unit ~= REQUESTS and amount(delta, w.unit) ~= 0 and (w.kind == SLIDING or w.kind == CALENDAR) then
          st = st or subject(KEYS[kb + s], ws, now, at)
          correct(st, w, now, at, amount(reserved, w.unit), amount(delta, w.unit))
        end
      end
    end
  end
  return i
end
