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

local SLOTS = 60
local WIDTH = {rm = 1000000, tm = 1000000, rd = 1440000000, td = 1440000000}
local FIELDS = {'tat', 'cool', 'rm:h', 'rm:s', 'rd:h', 'rd:s', 'tm:h', 'tm:s', 'td:h', 'td:s'}
local REASON = {cool = 'cooldown', qps = 'qps', rm = 'rpm', rd = 'rpd', tm = 'tpm', td = 'tpd', conc = 'concurrency', large = 'too_large'}
local CONC_POLL = 20000 -- µs; when a slot frees is not predictable

local function now_us()
  local fixed = tonumber(ARGV[1])
  if fixed >= 0 then
    return fixed
  end
  local t = redis.call('TIME')
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

-- load reads a subject's state.
local function load(key, zkey)
  local v = redis.call('HMGET', key, unpack(FIELDS))
  local st = {key = key, zkey = zkey, set = {}}
  for i, f in ipairs(FIELDS) do
    st[f] = tonumber(v[i])
  end
  return st
end

-- slide brings window w up to slot cur, dropping the slots that left it,
-- and returns the units it counts.
local function slide(st, w, cur)
  local oldest = cur - SLOTS
  local head, sum = st[w .. ':h'], st[w .. ':s'] or 0
  if head == nil or head >= oldest then
    if head == nil then
      st[w .. ':h'], st[w .. ':s'] = oldest, 0
      st.set[w .. ':h'], st.set[w .. ':s'] = oldest, 0
    end
    return sum
  end
  local gone = {}
  for s = head, math.min(oldest - 1, head + SLOTS + 1) do
    gone[#gone + 1] = w .. ':' .. s
  end
  local counts = redis.call('HMGET', st.key, unpack(gone))
  if oldest - head <= SLOTS then
    for _, c in ipairs(counts) do
      sum = sum - (tonumber(c) or 0)
    end
  else
    sum = 0 -- idle for a whole window: every slot left
  end
  redis.call('HDEL', st.key, unpack(gone))
  sum = math.max(sum, 0)
  st[w .. ':h'], st[w .. ':s'] = oldest, sum
  st.set[w .. ':h'], st.set[w .. ':s'] = oldest, sum
  return sum
end

-- window_retry is how long until cost more units fit under lim: the time
-- the oldest slots that must free up leave the window.
local function window_retry(st, w, now, cur, lim, cost)
  local used = st[w .. ':s']
  local excess = used + cost - lim
  local head = st[w .. ':h']
  local names = {}
  for s = head, cur do
    names[#names + 1] = w .. ':' .. s
  end
  local counts = redis.call('HMGET', st.key, unpack(names))
  local freed = 0
  for i, c in ipairs(counts) do
    freed = freed + (tonumber(c) or 0)
    if freed >= excess then
      return (head + i - 1 + SLOTS + 1) * WIDTH[w] - now
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
  if st.cool and st.cool > now then
    fail('cool', st.cool - now)
  end
  if l.interval > 0 then
    local pass, t, wait = gcra(st.tat, now, l.interval, l.burst, 1)
    if pass then tat = t else fail('qps', wait) end
  end
  for _, w in ipairs({'rm', 'rd', 'tm', 'td'}) do
    local lim = l[w]
    if lim > 0 then
      local cost = 1
      if w == 'tm' or w == 'td' then cost = tokens end
      local cur = math.floor(now / WIDTH[w])
      local used = slide(st, w, cur)
      if cost > lim then
        fail('large', -1)
      elseif used + cost > lim then
        fail(w, window_retry(st, w, now, cur, lim, cost))
      end
    end
  end
  if l.conc > 0 then
    redis.call('ZREMRANGEBYSCORE', st.zkey, '-inf', now)
    if redis.call('ZCARD', st.zkey) >= l.conc then
      fail('conc', CONC_POLL)
    end
  end
  return ok, reason, retry, tat
end

-- take records an admitted request (and its token reservation).
local function take(st, l, now, tokens, tat, lease, lease_ttl)
  if l.interval > 0 then
    st.set['tat'] = tat
  end
  for _, w in ipairs({'rm', 'rd', 'tm', 'td'}) do
    if l[w] > 0 then
      local cost = 1
      if w == 'tm' or w == 'td' then cost = tokens end
      local cur = math.floor(now / WIDTH[w])
      redis.call('HINCRBY', st.key, w .. ':' .. cur, cost)
      st.set[w .. ':s'] = st[w .. ':s'] + cost
    end
  end
  if l.conc > 0 then
    redis.call('ZADD', st.zkey, now + lease_ttl, lease)
    redis.call('PEXPIRE', st.zkey, math.floor(lease_ttl / 1000) + 1000)
  end
end

-- ttl_ms is how long a subject's hash must outlive its last write.
local function ttl_ms(st, l, now)
  local keep = 0
  if l.rd > 0 or l.td > 0 then
    keep = (SLOTS + 2) * WIDTH.rd
  elseif l.rm > 0 or l.tm > 0 then
    keep = (SLOTS + 2) * WIDTH.rm
  end
  local tat = st.set['tat'] or st.tat
  if tat and tat - now > keep then keep = tat - now end
  if st.cool and st.cool - now > keep then keep = st.cool - now end
  return math.floor(keep / 1000) + 1000
end

-- save writes the fields a check or take changed.
local function save(st, l, now)
  local args = {}
  for f, v in pairs(st.set) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  if #args > 0 then
    redis.call('HSET', st.key, unpack(args))
  end
  redis.call('PEXPIRE', st.key, ttl_ms(st, l, now))
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
    local tat = math.max(st.set['tat'] or st.tat or now, now)
    local remaining = l.burst - math.floor((tat - now + l.interval - 1) / l.interval)
    offer(1, l.burst, math.max(0, math.min(l.burst, remaining)), tat - now)
  end
  for _, w in ipairs({'rm', 'rd', 'tm', 'td'}) do
    local lim = l[w]
    if lim > 0 then
      local base = 1
      if w == 'tm' or w == 'td' then base = 4 end
      local sum = st.set[w .. ':s'] or st[w .. ':s'] or 0
      local reset = 0
      if sum > 0 then
        reset = (math.floor(now / WIDTH[w]) + SLOTS + 1) * WIDTH[w] - now
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
        local st = load(KEYS[kb + 2 * s], KEYS[kb + 1 + 2 * s])
        if l.conc > 0 then
          redis.call('ZREM', st.zkey, lease)
        end
        if delta ~= 0 and (l.tm > 0 or l.td > 0) then
          for _, w in ipairs({'tm', 'td'}) do
            if l[w] > 0 then
              local cur, slot = math.floor(now / WIDTH[w]), math.floor(at / WIDTH[w])
              slide(st, w, cur)
              if slot >= st[w .. ':h'] then
                local field = w .. ':' .. slot
                local c = tonumber(redis.call('HGET', st.key, field)) or 0
                local v = math.max(0, c + delta)
                redis.call('HSET', st.key, field, v)
                st[w .. ':s'] = math.max(0, st[w .. ':s'] + v - c)
                st.set[w .. ':s'] = st[w .. ':s']
              elseif reserved + delta > 0 then
                -- The reservation's slot left the window (a call longer
                -- than it): all the use is charged now, the latest moment
                -- it can have happened.
                redis.call('HINCRBY', st.key, w .. ':' .. cur, reserved + delta)
                st[w .. ':s'] = st[w .. ':s'] + reserved + delta
                st.set[w .. ':s'] = st[w .. ':s']
              end
            end
          end
          save(st, l, now)
        end
      end
    end
  end
end
