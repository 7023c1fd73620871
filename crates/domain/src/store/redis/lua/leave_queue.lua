-- A waiter leaves a path's queue (it gave up, timed out or went away). KEYS[1] the lease
-- hash, KEYS[3] the path's wait queue. ARGV[1] the ticket, ARGV[2] the task's waiter key
-- prefix, ARGV[3] the task's lease wake-up channel.
-- If the lease was granted to this very ticket (the grant's answer never reached the
-- waiter), it is released. The task's waiters are woken: the next in line may now be first.
-- Answers {'released', owner, fence} or {'left'}.
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', ARGV[2] .. ARGV[1])
local out = {'left'}
if redis.call('HGET', KEYS[1], 'ticket') == ARGV[1] then
  local v = redis.call('HMGET', KEYS[1], 'owner', 'fence')
  redis.call('DEL', KEYS[1])
  out = {'released', v[1], v[2]}
end
redis.call('PUBLISH', ARGV[3], KEYS[1])
return out
