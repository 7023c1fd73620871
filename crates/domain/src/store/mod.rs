//! Where state is kept, behind two seams (DESIGN §1):
//!
//! * the **durable store** ([`DurableStore`] = [`durable::DurableOps`] +
//!   [`durable::DurableSync`] + [`durable::DurableMessages`]): the source of truth. [`postgres::PgStore`] for deployments,
//!   [`sqlite::SqliteStore`] for the embedded mode;
//! * the **hot store** ([`HotStore`] = [`hot::HotOps`] (the capabilities the operations use,
//!   one trait each) + [`hot::HotSync`] + [`hot::McpSessions`]): caches, leases, streams,
//!   pub/sub, the sync outbox.
//!   [`redis::RedisStore`] for deployments (shared by every gateway instance),
//!   [`memory::MemoryStore`] for the embedded mode (one process).
//!
//! Every SQL statement, Redis key, script and channel lives in this module and nowhere else.
//! One behaviour suite (`crates/testkit/tests/stores/main.rs`) runs against every backend, so the
//! embedded mode cannot drift from the deployed one.

pub mod durable;
pub mod group;
pub mod hot;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod sqlite;

use std::sync::Arc;

/// The durable store: everything the operations and the sync loops need from it.
pub trait DurableStore:
    durable::DurableOps + durable::DurableSync + durable::DurableMessages
{
}
impl<T: durable::DurableOps + durable::DurableSync + durable::DurableMessages> DurableStore for T {}

/// The hot store: everything the operations, the sync loops and the MCP door need from it.
pub trait HotStore: hot::HotOps + hot::HotSync + hot::McpSessions {}
impl<T: hot::HotOps + hot::HotSync + hot::McpSessions> HotStore for T {}

/// A shared handle on a durable store.
pub type Durable = Arc<dyn DurableStore>;

/// A shared handle on a hot store.
pub type Hot = Arc<dyn HotStore>;

/// The store traits, for code that calls a concrete backend's methods
/// (`use mcp_domain::store::prelude::*`).
pub mod prelude {
    pub use super::durable::{DurableMessages as _, DurableOps as _, DurableSync as _};
    pub use super::hot::{
        Collaboration as _, EventLog as _, FileCache as _, HotBackend as _, HotSync as _,
        Leases as _, McpSessions as _, Outbox as _, RateLimit as _, StepLog as _, TaskCache as _,
    };
}
