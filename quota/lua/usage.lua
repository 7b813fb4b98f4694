-- usage.lua: read the live state of subjects for inspection (sluice
-- quota, the admin API, the dashboard); it writes nothing.
--
-- KEYS[i]   subject i's hash (its concurrency zsets are KEY:<window id>)
-- ARGV[1]   now µs, or -1 for the server clock
-- then      per subject, its windows (prelude.lua's encoding)
--
-- Returns, per subject: per window {limit, remaining, reset µs, calendar
-- period end µs (0 for other kinds)}, then requests in flight (the most
-- of its concurrent windows) and the cool-down left µs.
local now = now_us()
local out = {}
local function push(...)
  for _, v in ipairs({...}) do
    out[#out + 1] = v
  end
end
local i = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local ws
  ws, i = read_windows(i)
  local inflight = 0
  local cool = tonumber(call('HGET', key, 'cool')) or 0
  for _, w in ipairs(ws) do
    if w.kind == RATE then
      local tat = math.max(tonumber(call('HGET', key, w.t)) or now, now)
      local remaining = w.limit - math.floor((tat - now + w.p1 - 1) / w.p1)
      push(w.limit, math.max(0, math.min(w.limit, remaining)), tat - now, 0)
    elseif w.kind == SLIDING then
      local cur = slot_of(w, now)
      local names = {}
      for s = cur - SLOTS, cur do
        names[#names + 1] = f(w, s)
      end
      local sum = 0
      for _, v in ipairs(call('HMGET', key, unpack(names))) do
        sum = sum + (tonumber(v) or 0)
      end
      local reset = 0
      if sum > 0 then
        reset = (cur + SLOTS + 1) * w.slot - now
      end
      push(w.limit, math.max(0, w.limit - sum), reset, 0)
    elseif w.kind == CALENDAR then
      local v = call('HMGET', key, w.p, w.n)
      local start, ends = period(w, now)
      local n = 0
      if tonumber(v[1]) == start then
        n = tonumber(v[2]) or 0
      end
      push(w.limit, math.max(0, w.limit - n), ends - now, ends)
    else
      local held = call('ZCOUNT', key .. ':' .. w.id, now, '+inf')
      if held > inflight then inflight = held end
      push(w.limit, math.max(0, w.limit - held), 0, 0)
    end
  end
  push(inflight, math.max(0, cool - now))
end
return out
