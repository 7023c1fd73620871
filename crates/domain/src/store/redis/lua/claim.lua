-- Claim a lease, fairly: a file's, or a directory's (its path ends in '/': it covers every
-- path beneath it).
-- KEYS[1] the lease hash, KEYS[2] the task's lease index, KEYS[3] the path's wait queue,
-- KEYS[4..7] the keys of the grant's event (`lease_event.lua`), KEYS[8..#KEYS-1] the leases
-- of the directories above the path (the last KEY is the rollback guard's marker).
-- ARGV[1] owner, ARGV[2] ttl ms, ARGV[3] fence ('' when the caller has none yet), ARGV[4]
-- lease token, ARGV[5] '1' when a claim by the same owner may re-enter ('0' for a caller
-- without an identity, which cannot prove it is the holder), ARGV[6] the waiter's ticket (''
-- for a claim that does not wait), ARGV[7] the ticket's arrival ('' before its first check),
-- ARGV[8] waiter liveness ms, ARGV[9] the task's waiter key prefix (+ ticket = its liveness
-- key, holding the waiting agent), ARGV[10] '1' for a directory, ARGV[11..18] the grant's
-- event (`lease_event.lua`; none when ARGV[13] is empty or absent).
-- The lease keeps its length (`ttl_ms`): a renewal that names none keeps it.
-- Held by the same owner and re-entrant -> TTL refreshed, same fence and token (and the
-- ticket leaves the queue). A conflict -> refused with the conflicting lease's owner, expiry
-- and key: another's lease on the path, on a directory above it, or, for a directory, on any
-- path beneath it (found in the task's lease index). No conflict, but live waiters queued
-- before the caller -> 'queued' with the first one's agent. Else free: without a fence,
-- answers need_fence and changes nothing but the queue; with one, granted (the ticket leaves
-- the queue; the lease records it, so a grant whose waiter went away is released when it
-- leaves). Refusals also answer the caller's place: position (0 without a ticket), live
-- waiters, the ticket's arrival.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local exp = now + tonumber(ARGV[2])
local me, ticket, waiter_prefix = ARGV[1], ARGV[6], ARGV[9]

local function mine(o)
  return o == me and ARGV[5] == '1'
end

local function leave_queue()
  if ticket ~= '' then
    redis.call('ZREM', KEYS[3], ticket)
    redis.call('DEL', waiter_prefix .. ticket)
  end
end

-- The path itself.
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and mine(owner) then
  redis.call('HSET', KEYS[1], 'expires_at', exp, 'ttl_ms', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  leave_queue()
  local f = redis.call('HMGET', KEYS[1], 'fence', 'token')
  return {'reentrant', f[1], f[2], tostring(exp)}
end
local conflict = nil
if owner then
  conflict = {owner, redis.call('HGET', KEYS[1], 'expires_at'), KEYS[1]}
end
-- The directories above it.
if not conflict then
  for i = 8, #KEYS - 1 do
    local v = redis.call('HMGET', KEYS[i], 'owner', 'expires_at')
    if v[1] and not mine(v[1]) then
      conflict = {v[1], v[2], KEYS[i]}
      break
    end
  end
end
-- A directory: the task's leases beneath it.
if not conflict and ARGV[10] == '1' then
  for _, key in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if key ~= KEYS[1] and string.sub(key, 1, #KEYS[1]) == KEYS[1] then
      local v = redis.call('HMGET', key, 'owner', 'expires_at')
      if v[1] and not mine(v[1]) then
        conflict = {v[1], v[2], key}
        break
      end
    end
  end
end
-- A waiter checks in: joins the queue (at its arrival, when it has one) and stays alive.
local arrival = ''
if ticket ~= '' then
  redis.call('SET', waiter_prefix .. ticket, me, 'PX', ARGV[8])
  local score = redis.call('ZSCORE', KEYS[3], ticket)
  if score then
    score = tonumber(score)
  else
    score = tonumber(ARGV[7])
    if not score then
      score = now_us
      local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
      if last[2] and tonumber(last[2]) >= score then
        score = tonumber(last[2]) + 1
      end
    end
    redis.call('ZADD', KEYS[3], score, ticket)
  end
  arrival = string.format('%.0f', score)
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
-- The live waiters, in order (those whose liveness lapsed leave).
local first, next_owner, live, position = nil, nil, 0, 0
for _, tk in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local who = redis.call('GET', waiter_prefix .. tk)
  if who then
    live = live + 1
    if live == 1 then
      first, next_owner = tk, who
    end
    if tk == ticket then
      position = live
    end
  else
    redis.call('ZREM', KEYS[3], tk)
  end
end
if conflict then
  return {'held', conflict[1], conflict[2] or '0', conflict[3],
    tostring(position), tostring(live), arrival}
end
if first and first ~= ticket then
  return {'queued', next_owner, '0', '', tostring(position), tostring(live), arrival}
end
if ARGV[3] == '' then
  return {'need_fence'}
end
redis.call('HSET', KEYS[1], 'owner', me, 'fence', ARGV[3], 'token', ARGV[4],
  'acquired_at', now, 'expires_at', exp, 'ttl_ms', ARGV[2], 'ticket', ticket)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
leave_queue()
return {'granted', ARGV[3], ARGV[4], tostring(exp)}
