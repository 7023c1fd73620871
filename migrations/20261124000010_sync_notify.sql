-- Wakes the sync service's pull loop as soon as a task or an agent changes (DESIGN §7: "every
-- 1 s, and immediately on a Postgres NOTIFY"). Statement-level, so a burst of 10,000 rows in
-- one statement is one notification; Postgres also folds identical notifications of one
-- transaction into one. The payload names the table. A listener that misses a notification
-- (its connection dropped) loses nothing: the interval pull still runs.
CREATE OR REPLACE FUNCTION mcp_notify_sync_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('mcp_sync_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS tasks_notify_sync ON tasks;
CREATE TRIGGER tasks_notify_sync AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION mcp_notify_sync_change();

DROP TRIGGER IF EXISTS agents_notify_sync ON agents;
CREATE TRIGGER agents_notify_sync AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION mcp_notify_sync_change();
