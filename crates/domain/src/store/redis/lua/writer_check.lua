-- Before a durable file change: find the lease that governs the write and, if the writer may
-- write, mark the change under way in place of the hot copy (a field `w:<token>` of the
-- copy's hash; a hash holds either a copy or marks, never both), so that no reader can keep
-- serving, or refill, the old version should the refresh after the commit be lost
-- (`cache_file.lua`). KEYS[1] the file's lease hash, KEYS[2] hot copy, KEYS[3..#KEYS-1] the
-- leases of the directories above the file, outermost first (the last KEY is the rollback
-- guard's marker). ARGV[1] writer, ARGV[2] the change's token, ARGV[3] how long the mark
-- lasts at most (s).
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
if redis.call('HEXISTS', KEYS[2], 'version') == 1 then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[2], 'w:' .. ARGV[2], 1)
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if own then
  return own
end
return {false, false, false, false}
