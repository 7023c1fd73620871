-- Core durable tables of the MCP Gateway. Postgres is the source of truth; Redis holds
-- hot copies, locks and streams that are rebuilt from here.

-- Fencing tokens for file leases: monotonic across Redis restarts and gateway instances.
CREATE SEQUENCE IF NOT EXISTS lock_fence_seq;

-- Compatible with the orchestrator's table (it may already exist: then it is reused).
CREATE TABLE IF NOT EXISTS tasks (
    id                TEXT PRIMARY KEY,
    title             TEXT NOT NULL DEFAULT '',
    description       TEXT,
    status            TEXT NOT NULL DEFAULT 'pending',
    assigned_agent_id TEXT,
    complexity        DOUBLE PRECISION,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tasks_updated_at_id ON tasks (updated_at, id);

-- The current state of every file of every task (deleted files keep their row as a tombstone
-- so that versions stay monotonic across delete and re-create).
CREATE TABLE files (
    task_id    TEXT        NOT NULL,
    path       TEXT        NOT NULL,
    version    BIGINT      NOT NULL CHECK (version > 0),
    content    TEXT        NOT NULL,
    sha256     TEXT        NOT NULL,
    size       BIGINT      NOT NULL,
    updated_by TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Highest fencing token any write to this file carried; lower ones are refused.
    last_fence BIGINT      NOT NULL DEFAULT 0,
    deleted    BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, path)
);

-- Every version of every file: full content for writes, a unified diff for edits.
CREATE TABLE file_revisions (
    task_id    TEXT        NOT NULL,
    path       TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    op         TEXT        NOT NULL CHECK (op IN ('write', 'edit', 'delete')),
    agent_id   TEXT,
    fence      BIGINT,
    content    TEXT,
    diff       TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, path, version)
);

-- Execution steps, persisted from the Redis outbox; idempotent on the stream id.
CREATE TABLE step_logs (
    task_id    TEXT        NOT NULL,
    stream_id  TEXT        NOT NULL,
    -- The stream id split into its two numbers, for ordering.
    id_ms      BIGINT      NOT NULL,
    id_seq     BIGINT      NOT NULL,
    agent_id   TEXT,
    step       JSONB       NOT NULL,
    logged_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, stream_id)
);
CREATE INDEX step_logs_order ON step_logs (task_id, id_ms DESC, id_seq DESC);

CREATE TABLE agents (
    id              TEXT PRIMARY KEY,
    current_task_id TEXT,
    last_seen       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agents_updated_at_id ON agents (updated_at, id);

-- Membership of a task's collaboration session (left_at set when the agent leaves).
CREATE TABLE collaborators (
    task_id     TEXT        NOT NULL,
    agent_id    TEXT        NOT NULL,
    joined_at   TIMESTAMPTZ NOT NULL,
    last_active TIMESTAMPTZ NOT NULL,
    left_at     TIMESTAMPTZ,
    PRIMARY KEY (task_id, agent_id)
);

-- Every mutation: who, what, where, which version and fence, when.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor      TEXT        NOT NULL,
    action     TEXT        NOT NULL,
    task_id    TEXT,
    path       TEXT,
    version    BIGINT,
    fence      BIGINT,
    request_id TEXT,
    detail     JSONB,
    -- Idempotency key for records that arrive through the outbox (its entry id).
    source_id  TEXT UNIQUE
);
CREATE INDEX audit_log_task ON audit_log (task_id, at);
