//! The wire contract of the MCP Gateway, shared by the gateway and its clients.
//!
//! Everything that crosses the network is defined here and nowhere else:
//!
//! * [`error`] — the stable snake_case error codes, their HTTP statuses, and the
//!   `{"detail","code"}` error body. REST, MCP and the client all read the same table.
//! * [`requests`] — the JSON bodies of `POST /tools/*` and the admin API, field for field
//!   compatible with the original Python gateway (extra fields are additions, never renames).
//! * [`responses`] — the success bodies, again a superset of the original's.
//! * [`event`] — the event envelope carried by Redis streams, pub/sub and the live streams,
//!   and [`StreamId`], the resume point.
//! * [`live`] — the WebSocket messages and SSE control messages of the live streams.
//! * [`names`] — what an id may be and what a file path means (normalisation, refusals).
//!
//! This crate depends on `serde` and `chrono` only, so a client never compiles sqlx or redis.

pub mod error;
pub mod event;
pub mod live;
pub mod names;
pub mod requests;
pub mod responses;

pub use error::{ErrorBody, ErrorCode};
pub use event::{Event, EventType, StreamId};

/// A tool of the gateway: its wire name (the route `POST /tools/{name}` and the MCP tool
/// name), its aliases, and whether it changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolInfo {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub mutates: bool,
    pub description: &'static str,
}

/// The registry of tools: every door (REST, MCP, client) serves exactly these.
pub const TOOLS: &[ToolInfo] = &[
    ToolInfo {
        name: "file_read",
        aliases: &[],
        mutates: false,
        description: "Read a file of the task: content, version, sha256, size.",
    },
    ToolInfo {
        name: "file_write",
        aliases: &[],
        mutates: true,
        description: "Create or replace a file (optionally only at expected_version).",
    },
    ToolInfo {
        name: "file_edit",
        aliases: &[],
        mutates: true,
        description: "Replace old_string by new_string in a file, atomically; returns a unified diff.",
    },
    ToolInfo {
        name: "list_files",
        aliases: &[],
        mutates: false,
        description: "List the task's files (optionally under a prefix).",
    },
    ToolInfo {
        name: "delete_file",
        aliases: &[],
        mutates: true,
        description: "Delete a file.",
    },
    ToolInfo {
        name: "claim_file",
        aliases: &[],
        mutates: true,
        description: "Take (or refresh) the lease on a path; returns a fencing token.",
    },
    ToolInfo {
        name: "renew_file",
        aliases: &[],
        mutates: true,
        description: "Extend a lease the caller holds.",
    },
    ToolInfo {
        name: "release_file",
        aliases: &[],
        mutates: true,
        description: "Release a lease the caller holds.",
    },
    ToolInfo {
        name: "log_step",
        aliases: &[],
        mutates: true,
        description: "Append an execution step to the task's log.",
    },
    ToolInfo {
        name: "subscribe_logs",
        aliases: &[],
        mutates: false,
        description: "Where to listen for the task's live events.",
    },
    ToolInfo {
        name: "join_collaboration",
        aliases: &["join_collab"],
        mutates: true,
        description: "Join the task's collaboration session.",
    },
    ToolInfo {
        name: "leave_collaboration",
        aliases: &["leave_collab"],
        mutates: true,
        description: "Leave the task's collaboration session.",
    },
];
