-- One batch of the hot-layer rebuild after a rollback: deletes KEYS[2..] (hot copies, leases,
-- cached task rows found by SCAN), unless the layer was validated meanwhile (another instance
-- finished the rebuild first: what exists now was written after it, so it stays) or the
-- server changed again (the rebuild restarts against the new one).
-- KEYS[1] the marker `hot:validated`. ARGV[1] the `master_replid` the rebuild started on.
-- Answers the keys deleted, -2 when validated meanwhile, -1 when the server changed.
local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
if replid ~= ARGV[1] then
  return -1
end
if redis.call('GET', KEYS[1]) == replid then
  return -2
end
if #KEYS < 2 then
  return 0
end
return redis.call('DEL', unpack(KEYS, 2))
