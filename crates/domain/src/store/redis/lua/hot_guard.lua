-- Fragment, prepended to every script that serves or acts on a hot copy or a lease: refuses
-- to run unless this Redis has been validated since it last went back in time. The last KEY
-- is the validation marker `hot:validated`, which holds the `master_replid` of the server
-- that was validated. That id is not part of the data set: Redis draws a new one at every
-- start and at every promotion of a replica, so a restart from an older AOF/RDB or a failover
-- to a lagging replica can bring the marker back, but never with the current id. Answers the
-- error `ROLLBACK` then; the caller rebuilds the hot layer (RedisStore::rebuild_hot) and retries.
-- (Cost: about 5 microseconds of Redis CPU, most of it `INFO`; see docs/BENCHMARKS.md.)
do
  local info = redis.call('INFO', 'replication')
  local at = string.find(info, 'master_replid:', 1, true)
  local replid = at and string.sub(info, at + 14, at + 53)
  if redis.call('GET', KEYS[#KEYS]) ~= replid then
    return redis.error_reply('ROLLBACK hot layer not validated on this server (' .. tostring(replid) .. ')')
  end
end
