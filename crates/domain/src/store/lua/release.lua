-- Release a lease, only for its owner (or anyone when ARGV[2] is '1': an admin's force).
-- KEYS[1] lock hash. ARGV[1] owner. Answers the released holder and fence.
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (owner ~= ARGV[1] and ARGV[2] ~= '1') then
  return {'not_held', owner or ''}
end
local fence = redis.call('HGET', KEYS[1], 'fence')
redis.call('DEL', KEYS[1])
return {'released', owner, fence}
