//! The MCP server: rmcp's `ServerHandler` over the gateway. Every request's caller comes from
//! its HTTP request (rmcp hands the `http::request::Parts` to the handler) through
//! [`crate::extract::Caller`], exactly as for REST, so authentication and task authorisation
//! apply unchanged. Tools are in [`super::tools`], resources in [`super::resources`],
//! notifications in [`super::notify`].

use super::notify::{Hub, ListenName, keyed};
use super::resources::{self, ResourceUri};
use super::tools;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use axum::extract::FromRequestParts;
use mcp_api::ErrorCode;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorData, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Tasks listed per `resources/list` page.
const TASKS_PER_PAGE: usize = 50;
/// How far back a new listener's catch-up reads (covers the moments between its
/// acknowledgment and its registration, and clock differences with Redis).
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// One MCP server instance (rmcp makes one per session or per stateless request).
#[derive(Clone)]
pub struct GatewayMcp {
    state: AppState,
    hub: Arc<Hub>,
    /// When this handler accepted a subscription filter (ms since the epoch).
    listen_from_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl GatewayMcp {
    /// A server over the gateway's state, its resource subscriptions in `hub`.
    pub fn new(state: AppState, hub: Arc<Hub>) -> GatewayMcp {
        GatewayMcp {
            state,
            hub,
            listen_from_ms: Arc::default(),
        }
    }

    /// The caller of this request, from its HTTP parts (as `Caller` does for REST).
    async fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
        let mut parts = context
            .extensions
            .get::<http::request::Parts>()
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("request without HTTP parts", None))?;
        Caller::from_request_parts(&mut parts, &self.state)
            .await
            .map_err(protocol_error)
    }
}

/// A refusal as a JSON-RPC error whose `data` is the REST error body (for resource reads and
/// subscriptions, which have no `isError` result).
fn protocol_error(e: ApiError) -> ErrorData {
    let code = e.code;
    let message = e.detail.clone();
    let data = Some(tools::error_body(e));
    match code {
        ErrorCode::TaskNotFound | ErrorCode::FileNotFound | ErrorCode::AgentNotFound => {
            ErrorData::resource_not_found(message, data)
        }
        ErrorCode::InvalidArgument | ErrorCode::InvalidPath => {
            ErrorData::invalid_params(message, data)
        }
        ErrorCode::Unauthorized | ErrorCode::Forbidden => ErrorData::invalid_request(message, data),
        _ => ErrorData::internal_error(message, data),
    }
}

fn session_id(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

impl ServerHandler for GatewayMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-gateway",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Shared state for agents working on one task: read and write the task's files \
             (file_read, file_write, file_edit, list_files, delete_file), lease a file before \
             editing it (claim_file, renew_file, release_file), log each execution step \
             (log_step), join the task's collaboration, and message the other agents \
             (send_message; read_messages with wait_sec waits for the next one; ack_message). \
             Resources: tasks://{id}/state|logs|files, workspace://{id}/{path}, \
             agents://{id}/status, collaboration://{id}, inbox://{agent_id}.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context).await?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        let deadline = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| {
                p.extensions
                    .get::<crate::routes::RequestDeadline>()
                    .cloned()
            });
        // A cancelled call (`notifications/cancelled`, or the session's transport closed)
        // is dropped: a waiting claim leaves its queue.
        let call = tools::call(&self.state, &caller, &request.name, args, deadline);
        let result = tokio::select! {
            r = call => r,
            _ = context.ct.cancelled() => {
                return Err(ErrorData::internal_error("the call was cancelled", None));
            }
        };
        match result {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(
                format!("unknown tool '{}'", request.name),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context).await?;
        let actor = caller.actor(None, None).map_err(protocol_error)?;
        let after = request.and_then(|r| r.cursor);
        let ids = self
            .state
            .service
            .task_ids(&actor, after.as_deref(), TASKS_PER_PAGE)
            .await
            .map_err(|e| protocol_error(e.into()))?;
        let next = (ids.len() == TASKS_PER_PAGE)
            .then(|| ids.last().cloned())
            .flatten();
        // The lists come first, on the first page.
        let lists = after.is_none().then(resources::list_resources);
        let mut result = ListResourcesResult::with_all_items(
            lists
                .into_iter()
                .flatten()
                .chain(ids.iter().flat_map(|t| resources::task_resources(t)))
                .collect(),
        );
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context).await?;
        // A failed read names its URI in `data.uri` (SEP-2164), beside the REST error body.
        let with_uri = |e: ApiError| {
            let mut err = protocol_error(e);
            if let Some(serde_json::Value::Object(data)) = err.data.as_mut() {
                data.insert("uri".into(), request.uri.clone().into());
            }
            err
        };
        let resource = ResourceUri::parse(&request.uri).map_err(with_uri)?;
        let result = resource
            .read(&self.state, &caller, &request.uri)
            .await
            .map_err(with_uri)?;
        Ok(result.into())
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (session, resource) = self.subscription(&request.uri, &context).await?;
        let scope = resource.scope().ok_or_else(not_subscribable)?;
        self.hub
            .store()
            .subscribe(
                &session,
                scope,
                &resource.key(),
                &request.uri,
                super::sessions::SESSION_TTL,
            )
            .await
            .map_err(|e| protocol_error(e.into()))
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (session, resource) = self.subscription(&request.uri, &context).await?;
        let scope = resource.scope().ok_or_else(not_subscribable)?;
        self.hub
            .store()
            .unsubscribe(&session, scope, &resource.key(), &request.uri)
            .await
            .map_err(|e| protocol_error(e.into()))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.listen_from_ms.store(
            chrono::Utc::now().timestamp_millis() - CATCH_UP.as_millis() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let uris = requested
            .resource_subscriptions
            .as_deref()
            .unwrap_or_default();
        let valid: Vec<String> = uris
            .iter()
            .filter(|u| ResourceUri::parse(u).is_ok_and(|r| r.scope().is_some()))
            .cloned()
            .collect();
        Some(
            SubscriptionFilter::builder()
                .resource_subscriptions(valid)
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let request = context.request_context();
        let caller = self.caller(request).await?;
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let mut tasks = Vec::new();
        for uri in &uris {
            let resource = ResourceUri::parse(uri).map_err(protocol_error)?;
            authorise(&caller, &resource)?;
            if let Some(t) = resource.task()
                && !tasks.contains(t)
            {
                tasks.push(t.clone());
            }
        }
        let name = ListenName {
            agent: caller.identity().map(|id| id.agent.to_string()),
            request_id: serde_json::to_string(&request.id).unwrap_or_default(),
        };
        let guard = self
            .hub
            .listen(
                keyed(&uris),
                context.sink().clone(),
                name,
                self.listen_from_ms
                    .load(std::sync::atomic::Ordering::Relaxed)
                    + CATCH_UP.as_millis() as i64,
            )
            .await;
        // Changes made between the acknowledgment and the registration above.
        let from = self
            .listen_from_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        for task in &tasks {
            if let Ok(events) = self.hub.store().events_since(task, from, 1000).await {
                self.hub.replay(&guard, &events);
            }
        }
        // Until the client cancels, or its token expires (the token would get 401 now).
        let deadline = caller.token_deadline();
        let expired = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        // Or until a `notifications/cancelled` names it: rmcp ignores notifications of
        // stateless requests, so `jsonrpc::guard` hands them to the hub (any instance).
        tokio::select! {
            _ = context.cancelled() => {}
            _ = guard.cancelled() => {}
            _ = expired => {}
        }
        drop(guard);
        Ok(())
    }
}

/// The answer to a subscription of a list.
fn not_subscribable() -> ErrorData {
    ErrorData::invalid_params(
        "the task and agent lists cannot be subscribed; read them again (or watch a task)",
        None,
    )
}

/// Refuses a subscription to a task outside the caller's scope, and to another agent's
/// inbox (but for an admin).
fn authorise(caller: &Caller, resource: &ResourceUri) -> Result<(), ErrorData> {
    if let ResourceUri::Inbox(agent) = resource {
        let actor = caller.actor(None, None).map_err(protocol_error)?;
        if actor.agent != *agent {
            actor.ensure_admin().map_err(|e| protocol_error(e.into()))?;
        }
    }
    if let Some(task) = resource.task() {
        let actor = caller
            .actor(Some(task.as_str()), None)
            .map_err(protocol_error)?;
        actor
            .ensure_task(task)
            .map_err(|e| protocol_error(e.into()))?;
    }
    Ok(())
}

impl GatewayMcp {
    /// The session and resource of a legacy (un)subscription, authorised.
    async fn subscription(
        &self,
        uri: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(String, ResourceUri), ErrorData> {
        let caller = self.caller(context).await?;
        let resource = ResourceUri::parse(uri).map_err(protocol_error)?;
        authorise(&caller, &resource)?;
        let session = session_id(context).ok_or_else(|| {
            ErrorData::invalid_request(
                "resources/subscribe needs a session (Mcp-Session-Id); \
                 with protocol 2026-07-28 use subscriptions/listen",
                None,
            )
        })?;
        Ok((session, resource))
    }
}
