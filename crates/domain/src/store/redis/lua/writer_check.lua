-- Before a durable file change: find the lease that governs the write and, if the writer may
-- write, drop the hot copy so that no reader can keep serving the old version should the
-- refresh after the commit fail. KEYS[1] the file's lease hash, KEYS[2] hot copy,
-- KEYS[3..#KEYS-1] the leases of the directories above the file, outermost first (the last
-- KEY is the rollback guard's marker). ARGV[1] writer.
-- Another owner's lease on the file or on a directory above it refuses the write: answers it.
-- Else the writer's own: the file's, else the nearest directory's above it; else none.
-- Answers {owner, fence, expires_at, lease key}, each false when there is no lease.
local own = nil
local v = redis.call('HMGET', KEYS[1], 'owner', 'fence', 'expires_at')
if v[1] then
  if v[1] ~= ARGV[1] then
    return {v[1], v[2], v[3], KEYS[1]}
  end
  own = {v[1], v[2], v[3], KEYS[1]}
end
for i = #KEYS - 1, 3, -1 do
  local d = redis.call('HMGET', KEYS[i], 'owner', 'fence', 'expires_at')
  if d[1] then
    if d[1] ~= ARGV[1] then
      return {d[1], d[2], d[3], KEYS[i]}
    end
    if not own then
      own = {d[1], d[2], d[3], KEYS[i]}
    end
  end
end
redis.call('DEL', KEYS[2])
if own then
  return own
end
return {false, false, false, false}
