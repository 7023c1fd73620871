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
//! * [`messages`] — messages between agents: `send_message`, `read_messages`,
//!   `ack_message` and the message as every door shows it.
//! * [`live`] — the WebSocket messages and SSE control messages of the live streams.
//! * [`names`] — what an id may be and what a file path means (normalisation, refusals).
//! * [`tools`] — the one typed registry of tools ([`Tool`], [`for_each_tool!`], [`TOOLS`]):
//!   every door (REST, MCP, client, OpenAPI, LLM specs) takes its tools from it.
//!
//! This crate depends on `serde`, `chrono` and `schemars` only (the JSON Schemas of the wire
//! types feed the MCP list, the OpenAPI document and the LLM specs), so a client never
//! compiles sqlx or redis.

pub mod error;
pub mod event;
pub mod live;
pub mod messages;
pub mod names;
pub mod requests;
pub mod responses;
pub mod tools;

pub use error::{ErrorBody, ErrorCode};
pub use event::{Event, EventType, StreamId};
pub use tools::{TOOLS, Tool, ToolInfo, ToolRequest};
