//! `POST /tools/*`: one route per tool of the registry (`mcp_api::tools`) and per alias, all
//! served by one generic handler: extract (authenticate, parse, resolve the actor), make the
//! tool's one call to the domain ([`Perform`]), answer.

use super::answer::JsonAnswer;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::ToolCall;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use mcp_api::{Tool, for_each_tool, tools};
use mcp_domain::{Actor, Service};
use std::future::Future;

/// A tool as the gateway performs it: the `Service` method the registry names for it. The
/// REST routes and the MCP dispatch both go through here.
pub(crate) trait Perform: Tool {
    /// Runs the tool's domain operation as `actor`.
    fn perform<'a>(
        service: &'a Service,
        actor: &'a Actor,
        req: Self::Request,
    ) -> impl Future<Output = mcp_domain::Result<Self::Response>> + Send + 'a;
}

macro_rules! perform {
    ($($tool:ident => $method:ident { $($rest:tt)* }),* $(,)?) => {$(
        impl Perform for tools::$tool {
            fn perform<'a>(
                service: &'a Service,
                actor: &'a Actor,
                req: Self::Request,
            ) -> impl Future<Output = mcp_domain::Result<Self::Response>> + Send + 'a {
                service.$method(actor, req)
            }
        }
    )*};
}
for_each_tool!(perform);

/// Visits every tool of the registry with its [`Perform`] impl in reach (for generic code
/// that needs one call per tool: the routes, the MCP list and dispatch).
pub(crate) trait ToolVisitor {
    /// Called once per tool, in registry order.
    fn visit<T: Perform>(&mut self);
}

/// Calls `v.visit::<T>()` for every tool, in registry order.
pub(crate) fn visit_tools<V: ToolVisitor>(v: &mut V) {
    macro_rules! visit {
        ($($tool:ident => $method:ident { $($rest:tt)* }),* $(,)?) => {
            $(v.visit::<tools::$tool>();)*
        };
    }
    for_each_tool!(visit);
}

/// The routes of every tool: `POST /tools/{name}` and `POST /tools/{alias}`.
pub(crate) fn router() -> Router<AppState> {
    struct Routes(Router<AppState>);
    impl ToolVisitor for Routes {
        fn visit<T: Perform>(&mut self) {
            let mut r = std::mem::take(&mut self.0);
            for name in std::iter::once(T::NAME).chain(T::ALIASES.iter().copied()) {
                r = r.route(&format!("/tools/{name}"), post(handle::<T>));
            }
            self.0 = r;
        }
    }
    let mut routes = Routes(Router::new());
    visit_tools(&mut routes);
    routes.0
}

/// The one handler of every tool.
async fn handle<T: Perform>(
    State(service): State<Service>,
    c: ToolCall<T::Request>,
) -> Result<JsonAnswer<T::Response>, ApiError> {
    Ok(JsonAnswer(T::perform(&service, &c.actor, c.body).await?))
}
