//! The domain of the MCP Gateway: what the operations mean, and where state is kept.
//!
//! * [`ids`] and [`path`] — validated input: `TaskId`, `AgentId`, and `FilePath`, the one
//!   normalisation of file paths (the key of a file, its lease and its events).
//! * [`actor`] — who is acting and what they may touch; every operation checks it.
//! * [`ops`] — [`Service`]: one function per tool and resource (files, leases, step logs,
//!   collaboration, messages, tasks, agents, health). REST, MCP and streams all call these.
//! * [`store`] — the two seams and their backends: the durable store (the truth: Postgres, or
//!   SQLite in the embedded mode) and the hot store (caches, leases, streams, outbox: Redis, or
//!   in-process). Every SQL statement and Redis key lives there.
//! * [`events`] — the event envelope every change emits.
//! * [`inbox`] — the bell that wakes long-polling `read_messages` calls when a message arrives.
//! * [`error`] — [`DomainError`], each variant mapped to a stable wire code.
//! * [`patch`] — unified diffs: made for edits and between revisions, applied to read the
//!   content of edits stored as a diff only.

pub mod actor;
pub(crate) mod digest;
pub mod error;
pub mod events;
pub mod ids;
pub mod inbox;
pub mod ops;
pub mod patch;
pub mod path;
pub mod store;

pub use actor::{Actor, Role};
pub use error::{DomainError, Result};
pub use ids::{AgentId, TaskId};
pub use ops::{Limits, Service};
pub use path::{FilePath, LeasePath};
