-- Claim a lease. KEYS[1] lock hash. ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] fence ('' when the
-- caller has none yet), ARGV[4] lease token, ARGV[5] '1' when a claim by the same owner may
-- re-enter ('0' for a caller without an identity, which cannot prove it is the holder).
-- The lease keeps its length (`ttl_ms`): a renewal that names none keeps it.
-- Free -> granted (needs a fence: without one, answers need_fence and changes nothing);
-- held by the same owner and re-entrant -> TTL refreshed, same fence and token;
-- held by another (or by the same owner, not re-entrant) -> refused with the holder and its
-- expiry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = now + tonumber(ARGV[2])
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  if owner == ARGV[1] and ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], 'expires_at', exp, 'ttl_ms', ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    local f = redis.call('HMGET', KEYS[1], 'fence', 'token')
    return {'reentrant', f[1], f[2], tostring(exp)}
  end
  return {'held', owner, redis.call('HGET', KEYS[1], 'expires_at')}
end
if ARGV[3] == '' then
  return {'need_fence'}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'fence', ARGV[3], 'token', ARGV[4],
  'acquired_at', now, 'expires_at', exp, 'ttl_ms', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'granted', ARGV[3], ARGV[4], tostring(exp)}
