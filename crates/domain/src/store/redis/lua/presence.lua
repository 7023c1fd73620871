-- An agent's presence, touched beside the events it causes (at most once a second per agent
-- and task by each gateway process: RedisStore::touch_presence): KEYS[1] its presence hash. ARGV[1] the task it acted on.
-- Redis's clock, like the event ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'last_seen', now, 'task', ARGV[1])
return now
