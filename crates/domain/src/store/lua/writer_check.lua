-- Before a durable file change: read the path's lease and, if the writer may write (no lease,
-- or its own), drop the hot copy so that no reader can keep serving the old version should the
-- refresh after the commit fail. KEYS[1] lock hash, KEYS[2] hot copy. ARGV[1] writer.
-- Answers {owner, fence, expires_at}, each false when there is no lease.
local v = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'expires_at')
if not v[1] or v[1] == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return v
