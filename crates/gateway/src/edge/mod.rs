//! The edge: what the gateway refuses or bounds before a request reaches a route, so that a
//! client's fault never looks like a server outage and a crowd of idle sockets cannot starve
//! the rest.
//!
//! * [`body`] — request bodies: a declared length over `MAX_BODY_BYTES` is 413 at once; a
//!   body that stops arriving is 408 `request_timeout` (after `BODY_READ_TIMEOUT_SECS`
//!   without a byte, or when the request timeout finds the gateway waiting on the client);
//!   a malformed body is 400 (`extract::json_body`).
//! * [`conn`] — connections: the accept loop, the header-read and idle timeouts, the
//!   connection cap (`MAX_CONNECTIONS`), and the open-file limit raised at start.

pub mod body;
pub mod conn;
