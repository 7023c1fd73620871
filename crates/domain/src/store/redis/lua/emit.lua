-- Fragment: emit one event, atomically with the script that includes it.
-- KEYS[1] events stream   KEYS[2] collaboration members hash
-- KEYS[3] collaboration activity hash   KEYS[4] sync outbox stream (all in the task's slot)
-- ARGV[1] pub/sub channel   ARGV[2] events stream cap   ARGV[3] envelope JSON (no "id")
-- ARGV[4] agent id   ARGV[5] task id   ARGV[6] audit record JSON, or '' for none
-- The event is appended to the task's capped stream (its entry id is the event id) and
-- published with that id as its first member (the seed's `{"id","type",...}` shape; the
-- envelope is serde_json's text of a non-empty object, so the prefix keeps it valid JSON
-- and leaves every other byte as it is: docs/ARCHITECTURE.md, "file_write", says why not cjson
-- or a PUBLISH from Rust); the task's collaboration activity is touched; an
-- audit record goes to the outbox for the push loop. (The acting agent's presence lives in
-- the agent's slot: RedisStore touches it beside the script, `lua/presence.lua`.)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The same at other places: KEYS[k+1..k+4] and ARGV[a+1..a+4] in the roles above, the audit
-- record given ('' for none). A lease's script emits its event this way (`lease_event.lua`).
local function emit_at(k, a, envelope, audit)
  local id = redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', ARGV[a + 2], '*', 'e', envelope)
  redis.call('PUBLISH', ARGV[a + 1], '{"id":"' .. id .. '",' .. string.sub(envelope, 2))
  if redis.call('HEXISTS', KEYS[k + 2], ARGV[a + 4]) == 1 then
    redis.call('HSET', KEYS[k + 3], ARGV[a + 4], now_ms())
  end
  if audit ~= '' then
    redis.call('XADD', KEYS[k + 4], '*', 'kind', 'audit', 'payload', audit)
  end
  return id
end

local function emit(envelope)
  return emit_at(0, 0, envelope, ARGV[6])
end
