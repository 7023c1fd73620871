-- Fragment: the task's lease index KEYS[2] (`leases:{task}`, a sorted set of lease keys
-- scored by expiry in ms), which list_leases.lua reads instead of scanning the key space.
-- KEYS[1] is the lease. RedisStore runs claim.lua, renew.lua and release.lua with it and
-- calls these on their answer, in the same script (`lease_script` in redis.rs). The index
-- expires with its longest lease.
local function index_lease(exp)
  redis.call('ZADD', KEYS[2], exp, KEYS[1])
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], last[2])
end

local function unindex_lease()
  redis.call('ZREM', KEYS[2], KEYS[1])
end
