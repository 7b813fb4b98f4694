-- prelude.lua: state and math shared by every quota script; it is
-- prepended to each script when the script is loaded. It mirrors
-- quota/math.go and quota/memory.go: keep them in step.
--
-- Every script takes ARGV[1] = a fixed "now" in microseconds (tests) or
-- -1 to read the Redis server's clock (production), so the instances'
-- clocks never matter.
--
-- A subject (credential, pool or client) has two keys:
--   hash  KEY       fields: tat (GCRA, µs), cool (cool-down until, µs),
--                   and per window w in rm, rd, tm, td (requests/tokens per
--                   minute/day): w:h (oldest slot still counted), w:s (sum
--                   of the counted slots), w:<slot> (count of one slot)
--   zset  KEY:c     concurrency leases: member = lease id, score = expiry µs
--
-- A limit travels as 7 numbers: GCRA interval µs (0: no QPS limit), burst,
-- rpm, rpd, tpm, tpd, concurrency (0: not limited).
--
-- Each redis.call costs microseconds, so a script reads each subject's
-- hash once (HMGET, with the slot fields it will need), works on a cache,
-- and writes each changed subject once at the end (flush_all: HSET, and
-- PEXPIRE when the TTL must move).

local SLOTS = 60
local WIDTH = {rm = 1000000, tm = 1000000, rd = 1440000000, td = 1440000000}
local WINDOWS = {'rm', 'rd', 'tm', 'td'}
local TOKENS = {tm = true, td = true}
local BASE = {'tat', 'cool', 'rm:h', 'rm:s', 'rd:h', 'rd:s', 'tm:h', 'tm:s', 'td:h', 'td:s'}
local REASON = {cool = 'cooldown', qps = 'qps', rm = 'rpm', rd = 'rpd', tm = 'tpm', td = 'tpd', conc = 'concurrency', large = 'too_large'}
local CONC_POLL = 20000 -- µs; when a slot frees is not predictable
local call = redis.call
local H = {rm = 'rm:h', rd = 'rd:h', tm = 'tm:h', td = 'td:h'}
local S = {rm = 'rm:s', rd = 'rd:s', tm = 'tm:s', td = 'td:s'}

-- field names the slot field of window w, built once per script.
local names = {rm = {}, rd = {}, tm = {}, td = {}}
local function field(w, slot)
  local f = names[w][slot]
  if f == nil then
    f = w .. ':' .. slot
    names[w][slot] = f
  end
  return f
end

local function now_us()
  local fixed = tonumber(ARGV[1])
  if fixed >= 0 then
    return fixed
  end
  local t = call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- limit reads a 7-number limit starting at ARGV[i].
local function limit(i)
  return {
    interval = tonumber(ARGV[i]), burst = tonumber(ARGV[i + 1]),
    rm = tonumber(ARGV[i + 2]), rd = tonumber(ARGV[i + 3]),
    tm = tonumber(ARGV[i + 4]), td = tonumber(ARGV[i + 5]),
    conc = tonumber(ARGV[i + 6]),
  }
end

local function is_zero(l)
  return l.interval == 0 and l.rm == 0 and l.rd == 0 and l.tm == 0 and l.td == 0 and l.conc == 0
end

local function slot_of(now, w)
  return math.floor(now / WIDTH[w])
end

-- The subjects a script has read, by hash key.
local cache, order = {}, {}

-- subject returns a subject's state, reading its hash on first use with
-- the slot fields a limit needs at now (and, for a settlement, at a
-- reservation's time). Later uses read only fields not known yet.
local function subject(key, zkey, l, now, at)
  local want = {}
  for _, w in ipairs(WINDOWS) do
    if l[w] > 0 then
      want[#want + 1] = field(w, slot_of(now, w))
      if at and TOKENS[w] then
        want[#want + 1] = field(w, slot_of(at, w))
      end
    end
  end
  local st = cache[key]
  if st == nil then
    st = {key = key, zkey = zkey, v = {}, known = {}, dirty = {}, fresh = true, rolled = false, windows = {}}
    cache[key] = st
    order[#order + 1] = st
    for _, f in ipairs(BASE) do
      want[#want + 1] = f
    end
  end
  for _, w in ipairs(WINDOWS) do
    if l[w] > 0 then
      st.windows[w] = true
    end
  end
  local missing = {}
  for _, f in ipairs(want) do
    if not st.known[f] then
      missing[#missing + 1] = f
      st.known[f] = true
    end
  end
  if #missing > 0 then
    local v = call('HMGET', key, unpack(missing))
    for i, f in ipairs(missing) do
      st.v[f] = tonumber(v[i])
      if v[i] then
        st.fresh = false
      end
    end
  end
  return st
end

-- get reads a field of a subject, from the cache when it can.
local function get(st, f)
  if not st.known[f] then
    st.v[f] = tonumber(call('HGET', st.key, f))
    st.known[f] = true
  end
  return st.v[f]
end

-- put changes a field, written at flush.
local function put(st, f, value)
  st.v[f] = value
  st.known[f] = true
  st.dirty[f] = true
end

-- prefetch reads the fields of slots head..last not known yet, in one call.
local function prefetch(st, w, head, last)
  local names = {}
  for s = head, last do
    local f = field(w, s)
    if not st.known[f] then
      names[#names + 1] = f
      st.known[f] = true
    end
  end
  if #names > 0 then
    local v = call('HMGET', st.key, unpack(names))
    for i, f in ipairs(names) do
      st.v[f] = tonumber(v[i])
    end
  end
end

-- slide brings window w up to slot cur, dropping the slots that left it,
-- and returns the units it counts.
local function slide(st, w, cur)
  local oldest = cur - SLOTS
  local head, sum = st.v[H[w]], st.v[S[w]] or 0
  if head == nil then
    put(st, H[w], oldest)
    put(st, S[w], 0)
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
      sum = sum - (st.v[field(w, s)] or 0)
    end
  else
    sum = 0 -- idle for a whole window: every slot left
  end
  local gone = {}
  for s = head, last do
    gone[#gone + 1] = field(w, s)
    st.v[field(w, s)], st.known[field(w, s)], st.dirty[field(w, s)] = nil, true, nil
  end
  call('HDEL', st.key, unpack(gone))
  put(st, H[w], oldest)
  put(st, S[w], math.max(sum, 0))
  st.rolled = true
  return math.max(sum, 0)
end

-- add records n units in slot cur of window w.
local function add(st, w, slot, n)
  local f = field(w, slot)
  put(st, f, math.max(0, (get(st, f) or 0) + n))
  put(st, S[w], math.max(0, (st.v[S[w]] or 0) + n))
end

-- window_retry is how long until cost more units fit under lim: the time
-- the oldest slots that must free up leave the window.
local function window_retry(st, w, now, cur, lim, cost)
  local excess = st.v[S[w]] + cost - lim
  local head = st.v[H[w]]
  prefetch(st, w, head, cur)
  local freed = 0
  for s = head, cur do
    freed = freed + (st.v[field(w, s)] or 0)
    if freed >= excess then
      return (s + SLOTS + 1) * WIDTH[w] - now
    end
  end
  return (cur + SLOTS + 1) * WIDTH[w] - now
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

-- check mirrors subject.check in memory.go: ok, reason, retry (µs, -1:
-- never), and the GCRA state to store on a take.
local function check(st, l, now, tokens)
  local ok, reason, retry, tat = true, nil, 0, nil
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
  if l.interval > 0 then
    local pass, t, wait = gcra(st.v['tat'], now, l.interval, l.burst, 1)
    if pass then tat = t else fail('qps', wait) end
  end
  for _, w in ipairs(WINDOWS) do
    local lim = l[w]
    if lim > 0 then
      local cost = 1
      if TOKENS[w] then cost = tokens end
      local cur = slot_of(now, w)
      local used = slide(st, w, cur)
      if cost > lim then
        fail('large', -1)
      elseif used + cost > lim then
        fail(w, window_retry(st, w, now, cur, lim, cost))
      end
    end
  end
  if l.conc > 0 then
    call('ZREMRANGEBYSCORE', st.zkey, '-inf', now)
    if call('ZCARD', st.zkey) >= l.conc then
      fail('conc', CONC_POLL)
    end
  end
  return ok, reason, retry, tat
end

-- take records an admitted request (and its token reservation).
local function take(st, l, now, tokens, tat, lease, lease_ttl)
  if l.interval > 0 then
    put(st, 'tat', tat)
  end
  for _, w in ipairs(WINDOWS) do
    if l[w] > 0 then
      local cost = 1
      if TOKENS[w] then cost = tokens end
      add(st, w, slot_of(now, w), cost)
    end
  end
  if l.conc > 0 then
    call('ZADD', st.zkey, now + lease_ttl, lease)
    call('PEXPIRE', st.zkey, math.floor(lease_ttl / 1000) + 1000)
  end
end

-- flush_all writes every subject a script changed: one HSET each, and a
-- PEXPIRE when the subject is new, rolled a window over, or has no window
-- to roll over (its TTL must follow tat or cool instead).
local function flush_all(now)
  for _, st in ipairs(order) do
    local args = {}
    for f in pairs(st.dirty) do
      args[#args + 1] = f
      args[#args + 1] = st.v[f]
    end
    if #args > 0 then
      call('HSET', st.key, unpack(args))
      local keep = 0
      if st.windows.rd or st.windows.td then
        keep = (SLOTS + 2) * WIDTH.rd
      elseif st.windows.rm or st.windows.tm then
        keep = (SLOTS + 2) * WIDTH.rm
      end
      if st.fresh or st.rolled or keep == 0 then
        local tat, cool = st.v['tat'], st.v['cool']
        if tat and tat - now > keep then keep = tat - now end
        if cool and cool - now > keep then keep = cool - now end
        call('PEXPIRE', st.key, math.floor(keep / 1000) + 1000)
      end
    end
  end
end

-- report returns the tightest request and token windows of a subject, as
-- {req_limit, req_remaining, req_reset, tok_limit, tok_remaining, tok_reset}
-- (µs for resets), mirroring subject.report in memory.go.
local function report(st, l, now)
  local out = {0, 0, 0, 0, 0, 0}
  local function offer(base, lim, remaining, reset)
    if lim <= 0 then return end
    if out[base] == 0 or remaining < out[base + 1] then
      out[base], out[base + 1], out[base + 2] = lim, remaining, reset
    end
  end
  if l.interval > 0 then
    local tat = math.max(st.v['tat'] or now, now)
    local remaining = l.burst - math.floor((tat - now + l.interval - 1) / l.interval)
    offer(1, l.burst, math.max(0, math.min(l.burst, remaining)), tat - now)
  end
  for _, w in ipairs(WINDOWS) do
    local lim = l[w]
    if lim > 0 then
      local base = 1
      if TOKENS[w] then base = 4 end
      local sum = st.v[S[w]] or 0
      local reset = 0
      if sum > 0 then
        reset = (slot_of(now, w) + SLOTS + 1) * WIDTH[w] - now
      end
      offer(base, lim, math.max(0, lim - sum), reset)
    end
  end
  return out
end

-- settle_all ends count grants (see settle.lua for their encoding): their
-- records start at KEYS[key_base] (6 keys each) and ARGV[arg_base]
-- (25 arguments each).
local function settle_all(key_base, arg_base, count, now)
  for g = 0, count - 1 do
    local kb, ab = key_base + 6 * g, arg_base + 25 * g
    local at, delta, lease, reserved = tonumber(ARGV[ab]), tonumber(ARGV[ab + 1]), ARGV[ab + 2], tonumber(ARGV[ab + 3])
    for s = 0, 2 do
      local l = limit(ab + 4 + 7 * s)
      if not is_zero(l) then
        if l.conc > 0 then
          call('ZREM', KEYS[kb + 1 + 2 * s], lease)
        end
        if delta ~= 0 and (l.tm > 0 or l.td > 0) then
          local st = subject(KEYS[kb + 2 * s], KEYS[kb + 1 + 2 * s], l, now, at)
          for _, w in ipairs({'tm', 'td'}) do
            if l[w] > 0 then
              local cur, slot = slot_of(now, w), slot_of(at, w)
              slide(st, w, cur)
              if slot >= st.v[H[w]] then
                local f = field(w, slot)
                local c = get(st, f) or 0
                local v = math.max(0, c + delta)
                put(st, f, v)
                put(st, S[w], math.max(0, st.v[S[w]] + v - c))
              elseif reserved + delta > 0 then
                -- The reservation's slot left the window (a call longer
                -- than it): all the use is charged now, the latest moment
                -- it can have happened.
                add(st, w, cur, reserved + delta)
              end
            end
          end
        end
      end
    end
  end
end
