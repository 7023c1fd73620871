-- A Redis Cluster's rebuild of one hash slot after a rollback (the cluster's counterpart of
-- hot_drop.lua + hot_validate.lua, in one script on the slot's primary): unless the slot's
-- marker already holds this primary's `master_replid`, deletes the slot's keys whose names
-- start with one of the given prefixes (hot copies, leases, lease indexes, cached task rows)
-- and sets the marker. KEYS[1] the slot's marker `hot:validated:{tag}`. ARGV[1] the slot,
-- ARGV[2..] the key name prefixes. Answers the keys deleted (0 when already validated).
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
if redis.call('GET', KEYS[1]) == replid then
  return 0
end
local slot = tonumber(ARGV[1])
local n = redis.call('CLUSTER', 'COUNTKEYSINSLOT', slot)
local dropped = 0
if n > 0 then
  for _, k in ipairs(redis.call('CLUSTER', 'GETKEYSINSLOT', slot, n)) do
    for i = 2, #ARGV do
      if string.sub(k, 1, #ARGV[i]) == ARGV[i] then
        redis.call('DEL', k)
        dropped = dropped + 1
        break
      end
    end
  end
end
redis.call('SET', KEYS[1], replid)
return dropped
