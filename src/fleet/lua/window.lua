-- KEYS[i] window zset; ARGV[(i-1)*5 + 1..5] = window_ms, member, weight, threshold, cap.
-- Returns a flat list {sum_1, fired_1, sum_2, fired_2, ...}. A firing deletes the window (re-arms) atomically.
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local o = (i - 1) * 5
  local window, member, weight = tonumber(ARGV[o+1]), ARGV[o+2], tonumber(ARGV[o+3])
  local threshold, cap = tonumber(ARGV[o+4]), tonumber(ARGV[o+5])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  redis.call('ZADD', key, now, member .. '|' .. weight)      -- a distinct label re-added only moves: counts once
  local n = redis.call('ZCARD', key)
  if n > cap then redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1) end
  local sum = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do sum = sum + (tonumber(string.match(m, '|(%d+)$')) or 1) end
  if sum > threshold then redis.call('DEL', key); out[#out+1] = sum; out[#out+1] = 1
  else redis.call('PEXPIRE', key, window); out[#out+1] = sum; out[#out+1] = 0 end
end
return out
