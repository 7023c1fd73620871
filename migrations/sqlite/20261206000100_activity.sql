-- The task and agent activity indexes (see migrations/20261206000100_activity.sql for what
-- they mean), kept by row triggers.

CREATE TABLE task_activity (
    task_id       TEXT    PRIMARY KEY NOT NULL,
    steps         INTEGER NOT NULL DEFAULT 0,
    first_seen    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    last_activity TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX task_activity_recent ON task_activity (last_activity DESC, task_id DESC);

CREATE TABLE agent_activity (
    agent_id    TEXT PRIMARY KEY NOT NULL,
    last_seen   TEXT NOT NULL,
    last_task   TEXT,
    last_action TEXT NOT NULL
);
CREATE INDEX agent_activity_recent ON agent_activity (last_seen DESC, agent_id DESC);

INSERT INTO task_activity (task_id, steps, first_seen, last_activity)
SELECT task_id, sum(steps), min(first_at), max(last_at) FROM (
    SELECT id AS task_id, 0 AS steps, created_at AS first_at, updated_at AS last_at FROM tasks
    UNION ALL
    SELECT task_id, count(*), min(logged_at), max(logged_at) FROM step_logs GROUP BY task_id
    UNION ALL
    SELECT task_id, 0, min(at), max(at) FROM audit_log WHERE task_id IS NOT NULL GROUP BY task_id
) GROUP BY task_id;

INSERT INTO agent_activity (agent_id, last_seen, last_task, last_action)
SELECT actor, at, task_id, action FROM audit_log AS a
WHERE id = (SELECT id FROM audit_log b WHERE b.actor = a.actor ORDER BY at DESC, id DESC LIMIT 1);

CREATE TRIGGER audit_log_task_activity AFTER INSERT ON audit_log WHEN NEW.task_id IS NOT NULL
BEGIN
    INSERT INTO task_activity (task_id, first_seen, last_activity) VALUES (NEW.task_id, NEW.at, NEW.at)
    ON CONFLICT (task_id) DO UPDATE SET last_activity = max(last_activity, excluded.last_activity);
END;

CREATE TRIGGER audit_log_agent_activity AFTER INSERT ON audit_log
BEGIN
    INSERT INTO agent_activity (agent_id, last_seen, last_task, last_action)
    VALUES (NEW.actor, NEW.at, NEW.task_id, NEW.action)
    ON CONFLICT (agent_id) DO UPDATE
        SET last_seen = excluded.last_seen, last_task = excluded.last_task, last_action = excluded.last_action
        WHERE last_seen <= excluded.last_seen;
END;

CREATE TRIGGER step_logs_activity AFTER INSERT ON step_logs
BEGIN
    INSERT INTO task_activity (task_id, steps, first_seen, last_activity)
    VALUES (NEW.task_id, 1, NEW.logged_at, NEW.logged_at)
    ON CONFLICT (task_id) DO UPDATE
        SET steps = steps + 1, last_activity = max(last_activity, excluded.last_activity);
    INSERT INTO agent_activity (agent_id, last_seen, last_task, last_action)
    SELECT NEW.agent_id, NEW.logged_at, NEW.task_id, 'log_step' WHERE NEW.agent_id IS NOT NULL
    ON CONFLICT (agent_id) DO UPDATE
        SET last_seen = excluded.last_seen, last_task = excluded.last_task, last_action = excluded.last_action
        WHERE last_seen <= excluded.last_seen;
END;

CREATE TRIGGER tasks_insert_activity AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_activity (task_id) VALUES (NEW.id)
    ON CONFLICT (task_id) DO UPDATE SET last_activity = max(last_activity, excluded.last_activity);
END;

CREATE TRIGGER tasks_update_activity AFTER UPDATE ON tasks
BEGIN
    INSERT INTO task_activity (task_id) VALUES (NEW.id)
    ON CONFLICT (task_id) DO UPDATE SET last_activity = max(last_activity, excluded.last_activity);
END;

CREATE TRIGGER tasks_delete_activity AFTER DELETE ON tasks
BEGIN
    DELETE FROM task_activity WHERE task_id = OLD.id;
END;
