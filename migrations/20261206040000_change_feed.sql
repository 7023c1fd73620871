-- The change feed (DESIGN §11): the pull loop follows a marker that Postgres assigns to every
-- committed change of a task or an agent, never a writer's clock. `updated_at` stays what the
-- writer says it is (the orchestrator may set it, backdate it, restore it); the feed does not
-- read it.
--
-- * `change_seq`: drawn from `mcp_change_seq` by a BEFORE INSERT OR UPDATE trigger, so every
--   change of a row, by anyone, takes a new and higher number. Two changes of one row are
--   serialised by its row lock, and the trigger of the second runs after the first committed,
--   so along one row the numbers grow in commit order: the hot cache keeps the row with the
--   highest number.
-- * `change_xid`: the writing transaction (`pg_current_xact_id()`, 64 bits, never wraps).
--
-- The reader pages by `(change_xid, change_seq)` and moves its cursor only over rows whose
-- transaction is older than the oldest one still running (`pg_snapshot_xmin` of its
-- snapshot): every transaction that may still commit has an id at or above that horizon, so
-- it lands after the cursor, however early it drew its number (crates/sync/src/pull.rs).

CREATE SEQUENCE IF NOT EXISTS mcp_change_seq;

CREATE OR REPLACE FUNCTION mcp_mark_change() RETURNS trigger AS $$
BEGIN
    NEW.change_seq := nextval('mcp_change_seq');
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS change_seq BIGINT;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS change_xid xid8;
DROP TRIGGER IF EXISTS tasks_mark_change ON tasks;
CREATE TRIGGER tasks_mark_change BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_mark_change();
-- Numbers the rows already there (the trigger sets both columns).
UPDATE tasks SET change_seq = NULL;
ALTER TABLE tasks ALTER COLUMN change_seq SET NOT NULL, ALTER COLUMN change_xid SET NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_change_feed ON tasks (change_xid, change_seq);

ALTER TABLE agents ADD COLUMN IF NOT EXISTS change_seq BIGINT;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS change_xid xid8;
DROP TRIGGER IF EXISTS agents_mark_change ON agents;
CREATE TRIGGER agents_mark_change BEFORE INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION mcp_mark_change();
UPDATE agents SET change_seq = NULL;
ALTER TABLE agents ALTER COLUMN change_seq SET NOT NULL, ALTER COLUMN change_xid SET NOT NULL;
CREATE INDEX IF NOT EXISTS agents_change_feed ON agents (change_xid, change_seq);
