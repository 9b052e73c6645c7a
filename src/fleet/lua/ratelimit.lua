-- KEYS[1] bucket; ARGV[1] rpm (>0), ARGV[2] cost. Returns {allowed 0/1, retry_after_ms}.
local rpm = tonumber(ARGV[1]); local cost = tonumber(ARGV[2] or '1')
local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_ms = rpm / 60000.0
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens = rpm; ts = now end
if now > ts then tokens = math.min(rpm, tokens + (now - ts) * per_ms) else tokens = math.min(rpm, tokens) end
local allowed, retry = 0, 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 else retry = math.ceil((cost - tokens) / per_ms) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 600000)
return {allowed, retry}
