-- usage.lua: read the live state of subjects for inspection (sluice
-- quota, the admin API); it writes nothing.
--
-- KEYS[2i-1], KEYS[2i]  subject i's hash and lease zset
-- ARGV[1]               now µs, or -1 for the server clock
-- ARGV[2+7(i-1)..]      subject i's limit (7)
--
-- Returns, per subject, 17 numbers: for qps, rpm, rpd, tpm, tpd in turn
-- {limit, remaining, reset µs}, then requests in flight, cool-down left µs.
local now = now_us()
local out = {}
local function push(...)
  for _, v in ipairs({...}) do
    out[#out + 1] = v
  end
end
for i = 1, #KEYS / 2 do
  local key, zkey = KEYS[2 * i - 1], KEYS[2 * i]
  local l = limit(2 + 7 * (i - 1))
  local raw = redis.call('HGETALL', key)
  local h = {}
  for j = 1, #raw, 2 do
    h[raw[j]] = tonumber(raw[j + 1])
  end
  -- qps
  if l.interval > 0 then
    local tat = math.max(h['tat'] or now, now)
    local remaining = l.burst - math.floor((tat - now + l.interval - 1) / l.interval)
    push(l.burst, math.max(0, math.min(l.burst, remaining)), tat - now)
  else
    push(0, 0, 0)
  end
  for _, w in ipairs({'rm', 'rd', 'tm', 'td'}) do
    local lim = l[w]
    if lim > 0 then
      local cur = math.floor(now / WIDTH[w])
      local sum = 0
      for f, v in pairs(h) do
        local slot = tonumber(string.match(f, '^' .. w .. ':(%d+)$'))
        if slot and slot >= cur - SLOTS then
          sum = sum + v
        end
      end
      local reset = 0
      if sum > 0 then
        reset = (cur + SLOTS + 1) * WIDTH[w] - now
      end
      push(lim, math.max(0, lim - sum), reset)
    else
      push(0, 0, 0)
    end
  end
  push(redis.call('ZCOUNT', zkey, now, '+inf'), math.max(0, (h['cool'] or 0) - now))
end
return out
