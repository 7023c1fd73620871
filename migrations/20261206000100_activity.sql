-- Activity indexes for the task and agent lists (the console, `GET /resources/tasks`,
-- `GET /resources/agents`): one row per task and per agent, kept by triggers in the same
-- transaction as the change they record, so a list page reads a handful of rows instead of
-- scanning steps, files and the audit log. Upserts take rows in id order (tasks, then agents),
-- so concurrent batches cannot deadlock on them.
--
-- A task is listed once anything happened in it: created, a file changed, a member joined or
-- left, a lease taken (every audited change), or a step persisted. An agent is listed once it
-- did any of those.

CREATE TABLE IF NOT EXISTS task_activity (
    task_id       TEXT        PRIMARY KEY,
    -- Steps persisted to `step_logs` (deployed: a sync interval behind the event stream).
    steps         BIGINT      NOT NULL DEFAULT 0,
    first_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_activity TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS task_activity_recent ON task_activity (last_activity DESC, task_id DESC);

CREATE TABLE IF NOT EXISTS agent_activity (
    agent_id    TEXT        PRIMARY KEY,
    last_seen   TIMESTAMPTZ NOT NULL,
    last_task   TEXT,
    last_action TEXT        NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_activity_recent ON agent_activity (last_seen DESC, agent_id DESC);

-- Backfill from what is already recorded.
INSERT INTO task_activity (task_id, steps, first_seen, last_activity)
SELECT task_id, sum(steps), min(first_at), max(last_at) FROM (
    SELECT id AS task_id, 0 AS steps, created_at AS first_at, updated_at AS last_at FROM tasks
    UNION ALL
    SELECT task_id, count(*), min(logged_at), max(logged_at) FROM step_logs GROUP BY task_id
    UNION ALL
    SELECT task_id, 0, min(at), max(at) FROM audit_log WHERE task_id IS NOT NULL GROUP BY task_id
) AS seen GROUP BY task_id
ON CONFLICT (task_id) DO NOTHING;

INSERT INTO agent_activity (agent_id, last_seen, last_task, last_action)
SELECT DISTINCT ON (actor) actor, at, task_id, action FROM audit_log ORDER BY actor, at DESC
ON CONFLICT (agent_id) DO NOTHING;

-- Every audited change touches its task and its actor.
CREATE OR REPLACE FUNCTION mcp_audit_activity() RETURNS trigger AS $$
BEGIN
    INSERT INTO task_activity AS a (task_id, first_seen, last_activity)
    SELECT task_id, min(at), max(at) FROM new_rows WHERE task_id IS NOT NULL
    GROUP BY task_id ORDER BY task_id
    ON CONFLICT (task_id) DO UPDATE SET last_activity = greatest(a.last_activity, excluded.last_activity);
    INSERT INTO agent_activity AS g (agent_id, last_seen, last_task, last_action)
    SELECT DISTINCT ON (actor) actor, at, task_id, action FROM new_rows ORDER BY actor, at DESC, id DESC
    ON CONFLICT (agent_id) DO UPDATE
        SET last_seen = excluded.last_seen, last_task = excluded.last_task, last_action = excluded.last_action
        WHERE g.last_seen <= excluded.last_seen;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_activity AFTER INSERT ON audit_log
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mcp_audit_activity();

-- Persisted steps count and touch their task and agent (one statement per outbox batch).
CREATE OR REPLACE FUNCTION mcp_step_activity() RETURNS trigger AS $$
BEGIN
    INSERT INTO task_activity AS a (task_id, steps, first_seen, last_activity)
    SELECT task_id, count(*), min(logged_at), max(logged_at) FROM new_rows
    GROUP BY task_id ORDER BY task_id
    ON CONFLICT (task_id) DO UPDATE
        SET steps = a.steps + excluded.steps,
            last_activity = greatest(a.last_activity, excluded.last_activity);
    INSERT INTO agent_activity AS g (agent_id, last_seen, last_task, last_action)
    SELECT DISTINCT ON (agent_id) agent_id, logged_at, task_id, 'log_step' FROM new_rows
    WHERE agent_id IS NOT NULL ORDER BY agent_id, logged_at DESC
    ON CONFLICT (agent_id) DO UPDATE
        SET last_seen = excluded.last_seen, last_task = excluded.last_task, last_action = excluded.last_action
        WHERE g.last_seen <= excluded.last_seen;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER step_logs_activity AFTER INSERT ON step_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mcp_step_activity();

-- Task rows, also those an orchestrator writes directly: a new or changed task is activity;
-- a deleted task leaves the list.
CREATE OR REPLACE FUNCTION mcp_task_row_activity() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM task_activity WHERE task_id = OLD.id;
        RETURN OLD;
    END IF;
    INSERT INTO task_activity AS a (task_id) VALUES (NEW.id)
    ON CONFLICT (task_id) DO UPDATE SET last_activity = greatest(a.last_activity, excluded.last_activity);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_activity AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_task_row_activity();
