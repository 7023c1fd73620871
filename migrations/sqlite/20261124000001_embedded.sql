-- The embedded mode's durable store (SQLite): the same tables as the Postgres migrations in
-- the directory above (which the Postgres migrator never reads: it skips subdirectories), in
-- SQLite's dialect. Read those for what each table means; only what differs is said here.
--
-- Timestamps are TEXT in one fixed-width UTC format, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so text
-- order is time order. The store writes them from its own clock; the defaults below (for rows
-- an operator inserts with the sqlite3 shell) write the same format at millisecond precision.
-- Booleans are INTEGER 0/1; JSON is TEXT. Ids are INTEGER PRIMARY KEY AUTOINCREMENT, so an id
-- is never reused (like BIGSERIAL).

-- Fencing tokens: a one-row sequence (`UPDATE ... SET value = value + 1 RETURNING value`).
CREATE TABLE fence_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO fence_seq (id, value) VALUES (1, 0);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY NOT NULL,
    title             TEXT NOT NULL DEFAULT '',
    description       TEXT,
    status            TEXT NOT NULL DEFAULT 'pending',
    assigned_agent_id TEXT,
    complexity        REAL,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX tasks_updated_at_id ON tasks (updated_at, id);

-- Deleted files keep their row as a tombstone (versions stay monotonic).
CREATE TABLE files (
    task_id    TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    content    TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    updated_by TEXT,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    last_fence INTEGER NOT NULL DEFAULT 0,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    PRIMARY KEY (task_id, path)
);

CREATE TABLE file_revisions (
    task_id    TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    op         TEXT    NOT NULL CHECK (op IN ('write', 'edit', 'delete')),
    agent_id   TEXT,
    fence      INTEGER,
    content    TEXT,
    diff       TEXT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    PRIMARY KEY (task_id, path, version)
);

CREATE TABLE step_logs (
    task_id   TEXT    NOT NULL,
    stream_id TEXT    NOT NULL,
    id_ms     INTEGER NOT NULL,
    id_seq    INTEGER NOT NULL,
    agent_id  TEXT,
    step      TEXT    NOT NULL CHECK (json_valid(step)),
    logged_at TEXT    NOT NULL,
    PRIMARY KEY (task_id, stream_id)
);
CREATE INDEX step_logs_order ON step_logs (task_id, id_ms DESC, id_seq DESC);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY NOT NULL,
    current_task_id TEXT,
    last_seen       TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX agents_updated_at_id ON agents (updated_at, id);

CREATE TABLE collaborators (
    task_id     TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    joined_at   TEXT NOT NULL,
    last_active TEXT NOT NULL,
    left_at     TEXT,
    PRIMARY KEY (task_id, agent_id)
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    task_id    TEXT,
    path       TEXT,
    version    INTEGER,
    fence      INTEGER,
    request_id TEXT,
    detail     TEXT CHECK (detail IS NULL OR json_valid(detail)),
    source_id  TEXT UNIQUE
);
CREATE INDEX audit_log_task ON audit_log (task_id, at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL UNIQUE,
    kind      TEXT,
    payload   TEXT NOT NULL,
    error     TEXT NOT NULL,
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

-- One row per deleted task, whoever deleted it (the gateway never does; an operator may).
-- SQLite's clock has millisecond precision: the trigger's time is rounded up to the end of
-- its millisecond, so a deletion is never dated before a `db_now` read just before it (the
-- pull loop asks for deletions after such a time; being told twice is harmless, missing one
-- is not).
CREATE TABLE task_deletions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    deleted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f999Z', 'now'))
);
CREATE INDEX task_deletions_at ON task_deletions (deleted_at);

CREATE TRIGGER tasks_record_deletion AFTER DELETE ON tasks
BEGIN
    INSERT INTO task_deletions (task_id) VALUES (OLD.id);
END;

-- Each task's live file count and byte total, kept by triggers on `files` in the same
-- transaction as the change (also for rows an operator changes by hand). The quota refusal
-- itself is the store's: it reads this row after the change, inside the same write
-- transaction, and rolls back a change that grew the task past a limit (SQLite has no
-- per-statement settings to hand the limits to a trigger).
CREATE TABLE task_usage (
    task_id TEXT    PRIMARY KEY NOT NULL,
    files   INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0
);

CREATE TRIGGER files_usage_insert AFTER INSERT ON files WHEN NOT NEW.deleted
BEGIN
    INSERT INTO task_usage (task_id, files, bytes) VALUES (NEW.task_id, 1, NEW.size)
    ON CONFLICT (task_id) DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER files_usage_delete AFTER DELETE ON files WHEN NOT OLD.deleted
BEGIN
    INSERT INTO task_usage (task_id, files, bytes) VALUES (OLD.task_id, -1, -OLD.size)
    ON CONFLICT (task_id) DO UPDATE SET files = files - 1, bytes = bytes + excluded.bytes;
END;

CREATE TRIGGER files_usage_update AFTER UPDATE OF task_id, size, deleted ON files
BEGIN
    INSERT INTO task_usage (task_id, files, bytes)
    SELECT OLD.task_id, -1, -OLD.size WHERE NOT OLD.deleted
    ON CONFLICT (task_id) DO UPDATE SET files = files - 1, bytes = bytes + excluded.bytes;
    INSERT INTO task_usage (task_id, files, bytes)
    SELECT NEW.task_id, 1, NEW.size WHERE NOT NEW.deleted
    ON CONFLICT (task_id) DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes;
END;
