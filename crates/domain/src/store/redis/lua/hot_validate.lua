-- The last step of the hot-layer rebuild: marks the layer validated for the server the
-- rebuild started on (ARGV[1], its `master_replid`) and drops the pull loop's `sync:warm`
-- marker, so that the task cache is warmed again from the durable store. Does nothing when
-- the server changed during the rebuild (answers 0: the caller starts over).
-- KEYS[1] `hot:validated`, KEYS[2] `sync:warm`.
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
if replid ~= ARGV[1] then
  return 0
end
if redis.call('GET', KEYS[1]) ~= replid then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], replid)
end
return 1
