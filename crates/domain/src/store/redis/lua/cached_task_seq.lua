-- Fragment: the change number of the task row cached at `key` (its `change_seq`): nil when
-- nothing is cached there, 0 for a row without one or that cannot be read. The one rule of "newer" for the task
-- cache (`hot::cached_task_json`), shared by the refill and the pull loop's refresh.
-- (Change numbers stay far below 2^53, so Lua's numbers hold them exactly.)
local function cached_task_seq(key)
  local cur = redis.call('GET', key)
  if not cur then return nil end
  local ok, row = pcall(cjson.decode, cur)
  if ok and type(row) == 'table' then return tonumber(row['change_seq']) or 0 end
  return 0
end
