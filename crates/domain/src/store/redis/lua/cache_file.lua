-- Fragment: store a file's hot copy unless the cache already holds a newer version, so that
-- refreshes racing after concurrent commits can never move the cache backwards.
-- `first` is the ARGV index where the field/value pairs start.
local function cache_file(key, version, ttl, first)
  local current = tonumber(redis.call('HGET', key, 'version') or '0')
  if tonumber(version) <= current then
    return 0
  end
  redis.call('DEL', key)
  redis.call('HSET', key, 'version', version, unpack(ARGV, first))
  redis.call('EXPIRE', key, ttl)
  return 1
end
