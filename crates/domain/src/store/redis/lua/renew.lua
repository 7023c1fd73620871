-- Renew a lease, only for its owner. KEYS[1] lock hash. ARGV[1] owner, ARGV[2] ttl ms ('' to
-- keep the lease's own length, `ttl_ms`), ARGV[3] the length to use when the lease has none
-- recorded (granted before lengths were kept).
-- Answers {'renewed', fence, token, expires_at, ttl ms} or {'not_held', holder}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] then
  return {'not_held', owner or ''}
end
local ttl = ARGV[2]
if ttl == '' then
  ttl = redis.call('HGET', KEYS[1], 'ttl_ms') or ARGV[3]
end
local exp = now + tonumber(ttl)
redis.call('HSET', KEYS[1], 'expires_at', exp, 'ttl_ms', ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
local f = redis.call('HMGET', KEYS[1], 'fence', 'token')
return {'renewed', f[1], f[2], tostring(exp), tostring(ttl)}
