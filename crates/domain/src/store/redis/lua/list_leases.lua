-- A task's live leases. KEYS[1] its lease index (see lease_index.lua). ARGV[1] at most this
-- many, ARGV[2] the task's lease key prefix, ARGV[3] its wait queue key prefix, ARGV[4] its
-- waiter key prefix. Drops expired members first, and members whose lease is gone (released
-- or dropped by a path that does not keep the index); the leases are read from the index's
-- members, which are lease keys of the same task, so in its hash slot (keys.rs). Each lease's wait queue (the same path under the queue prefix) names its live
-- waiters, the next to be granted first.
-- Answers {now ms, more ('1' or '0'), then per lease: key, owner, fence, acquired_at,
-- expires_at, n, then n waiting agents}, soonest expiry first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[1])
local out = {tostring(now), '0'}
local listed = 0
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, key in ipairs(members) do
  local v = redis.call('HMGET', key, 'owner', 'fence', 'acquired_at', 'expires_at')
  if not v[1] then
    redis.call('ZREM', KEYS[1], key)
  elseif listed == limit then
    out[2] = '1'
    break
  else
    listed = listed + 1
    out[#out + 1] = key
    out[#out + 1] = v[1]
    out[#out + 1] = v[2] or '0'
    out[#out + 1] = v[3] or '0'
    out[#out + 1] = v[4] or '0'
    local waiting = {}
    local queue = ARGV[3] .. string.sub(key, #ARGV[2] + 1)
    for _, tk in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
      local who = redis.call('GET', ARGV[4] .. tk)
      if who then
        waiting[#waiting + 1] = who
      end
    end
    out[#out + 1] = tostring(#waiting)
    for _, who in ipairs(waiting) do
      out[#out + 1] = who
    end
  end
end
return out
