//! The store behaviour suite (DESIGN §1): one set of tests that every backend of each seam
//! passes, so the embedded mode cannot drift from the deployed one.
//!
//! * `durable.rs` — [`DurableStore`](mcp_domain::store::DurableStore): Postgres and SQLite.
//! * `hot.rs` — [`HotStore`](mcp_domain::store::HotStore): Redis and in-process.
//! * `messages.rs` — messages between agents: the durable store's `DurableMessages` on
//!   both durable backends, and the long poll over both combinations.
//! * `service.rs` — the operations over each backend combination the gateway supports
//!   (Postgres + Redis, SQLite + in-process): the interplay of both stores.
//!
//! Each test is written once, as a function of its fixture, and instantiated per backend by
//! the `per_backend!` macro (test names end in the backend: `…::postgres`, `…::sqlite`).

mod durable;
mod fixtures;
mod hot;
mod messages;
mod service;

/// Instantiates each listed test once per backend:
/// `per_backend!(fixture; [backend, …]; test, …)` makes, for each test,
/// `mod test { #[tokio::test] async fn backend() { test(&fixture(Backend::backend).await) } }`.
#[macro_export]
macro_rules! per_backend {
    ($fixture:ident; $backends:tt; $($test:ident),+ $(,)?) => {
        $( $crate::per_backend!(@one $fixture; $backends; $test); )+
    };
    (@one $fixture:ident; [$($backend:ident),+]; $test:ident) => {
        mod $test {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    let fixture = super::$fixture($crate::fixtures::Backend::$backend).await;
                    super::$test(&fixture).await;
                }
            )+
        }
    };
}
