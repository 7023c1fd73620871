-- Tables of the sync service (crates/sync): outbox records that could not be persisted, and
-- tombstones that let the pull loop propagate task deletions to the hot cache.

-- Outbox entries the push loop could not persist (bad JSON, unknown kind, rejected by a
-- constraint). Kept verbatim so an operator can repair and replay them; source_id (the outbox
-- entry id) makes a redelivered poison entry land here only once.
CREATE TABLE IF NOT EXISTS dead_letters (
    id        BIGSERIAL   PRIMARY KEY,
    source_id TEXT        NOT NULL UNIQUE,
    kind      TEXT,
    -- The entry's fields as a JSON object of strings (TEXT, not JSONB: it must accept anything).
    payload   TEXT        NOT NULL,
    error     TEXT        NOT NULL,
    at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per deleted task (whoever deleted it: the gateway or the orchestrator), written by a
-- trigger, so the pull loop can drop the task's cached row.
CREATE TABLE IF NOT EXISTS task_deletions (
    id         BIGSERIAL   PRIMARY KEY,
    task_id    TEXT        NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS task_deletions_at ON task_deletions (deleted_at);

CREATE OR REPLACE FUNCTION mcp_record_task_deletion() RETURNS trigger AS $$
BEGIN
    INSERT INTO task_deletions (task_id) VALUES (OLD.id);
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS tasks_record_deletion ON tasks;
CREATE TRIGGER tasks_record_deletion AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_record_task_deletion();
