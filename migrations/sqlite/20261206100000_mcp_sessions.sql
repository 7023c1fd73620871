-- MCP sessions of the embedded mode (issue #15 item 6). Deployed gateways keep 2025-11-25
-- sessions and their resource subscriptions in Redis; the embedded one keeps them in its
-- in-process hot store and writes them through to these tables, which it reads back at
-- start, so a restart is invisible to a connected client. Not durable truth: rows expire.
CREATE TABLE mcp_sessions (
    id          TEXT    PRIMARY KEY,
    -- The agent that created it (authentication on), else NULL.
    owner       TEXT,
    -- What rmcp restores it from: the client's `initialize` parameters (JSON).
    state       TEXT    NOT NULL,
    -- Milliseconds since the epoch.
    expires_at  INTEGER NOT NULL
);

CREATE TABLE mcp_subscriptions (
    session     TEXT    NOT NULL,
    -- `task:<id>` or `agent:<id>`: the index the subscription lives in.
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    PRIMARY KEY (session, scope, key, uri)
);
