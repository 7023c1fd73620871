-- Renew a lease, only for its owner. KEYS[1] lock hash. ARGV[1] owner, ARGV[2] ttl ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] then
  return {'not_held', owner or ''}
end
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'expires_at', exp)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'fence', 'token')
return {'renewed', f[1], f[2], tostring(exp)}
