-- Fragment: store a file's hot copy unless the cache already holds a newer version, so that
-- refreshes racing after concurrent commits can never move the cache backwards, and not
-- while a change of the file is under way: its marks (`w:<token>`, `writer_check.lua`) then
-- hold the hash, which has no `version`.
-- `first` is the ARGV index where the field/value pairs start.
local function cache_file(key, version, ttl, first)
  local current = redis.call('HGET', key, 'version')
  if not current and redis.call('EXISTS', key) == 1 then
    return 0
  end
  if tonumber(version) <= tonumber(current or '0') then
    return 0
  end
  redis.call('DEL', key)
  redis.call('HSET', key, 'version', version, unpack(ARGV, first))
  redis.call('EXPIRE', key, ttl)
  return 1
end
