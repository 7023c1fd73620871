-- Messages between agents (issue #17); the twin of the Postgres migration of the same name.
-- One writer: AUTOINCREMENT ids are assigned in commit order.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    broadcast   INTEGER NOT NULL,
    -- The recipients as a JSON array of strings (empty for a broadcast).
    to_agents   TEXT    NOT NULL CHECK (json_valid(to_agents)),
    subject     TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    thread_id   TEXT    NOT NULL,
    reply_to    INTEGER,
    importance  TEXT    NOT NULL DEFAULT 'normal',
    sent_at     TEXT    NOT NULL
);
CREATE INDEX messages_task ON messages (task_id, id);
CREATE INDEX messages_broadcast ON messages (id) WHERE broadcast;

CREATE TABLE message_recipients (
    agent_id   TEXT    NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, message_id)
);

CREATE TABLE message_reads (
    agent_id   TEXT    NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    read_at    TEXT    NOT NULL,
    PRIMARY KEY (agent_id, message_id)
);
