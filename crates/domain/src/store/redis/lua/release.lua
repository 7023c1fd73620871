-- Release a lease, only for its owner (or anyone when ARGV[2] is '1': an admin's force), and
-- wake the task's lease waiters. KEYS[1] lock hash, KEYS[3..6] the keys of the release's
-- event (`lease_event.lua`). ARGV[1] owner, ARGV[3] the task's lease wake-up channel,
-- ARGV[4..11] the event (none when ARGV[6] is empty or absent). Answers the released holder
-- and fence.
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (owner ~= ARGV[1] and ARGV[2] ~= '1') then
  return {'not_held', owner or ''}
end
local fence = redis.call('HGET', KEYS[1], 'fence')
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], KEYS[1])
return {'released', owner, fence}
