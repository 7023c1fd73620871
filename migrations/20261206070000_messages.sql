-- Messages between agents (issue #17): written through, so a message is durable when
-- send_message answers. Ids come from one sequence and are assigned in commit order (the
-- insert takes a transaction-level advisory lock first, see store/postgres/messages.rs), so
-- a reader's cursor (the last id it saw) never skips a message committed later.
CREATE TABLE messages (
    id          BIGSERIAL   PRIMARY KEY,
    task_id     TEXT        NOT NULL,
    sender      TEXT        NOT NULL,
    -- To everyone who may see the task ("*"); to_agents is then empty.
    broadcast   BOOLEAN     NOT NULL,
    to_agents   TEXT[]      NOT NULL,
    subject     TEXT        NOT NULL,
    body        TEXT        NOT NULL,
    thread_id   TEXT        NOT NULL,
    reply_to    BIGINT,
    importance  TEXT        NOT NULL DEFAULT 'normal',
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_task ON messages (task_id, id);
CREATE INDEX messages_broadcast ON messages (id) WHERE broadcast;

-- One row per direct recipient: an agent's inbox is an index range.
CREATE TABLE message_recipients (
    agent_id   TEXT   NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, message_id)
);

-- Read state, per reader (a broadcast is read by each agent on its own).
CREATE TABLE message_reads (
    agent_id   TEXT        NOT NULL,
    message_id BIGINT      NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    read_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, message_id)
);
