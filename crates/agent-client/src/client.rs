//! [`GatewayClient`]: one generic call for every tool of the registry
//! ([`GatewayClient::call`], `POST /tools/*`) with a named shorthand per tool, a method per resource
//! (`GET /resources/*`), admin route and `/health`, over one pooled HTTP client.
//!
//! Every call goes through [`GatewayClient::execute`]: it sends the bearer token, bounds the
//! request by the configured timeout, turns a non-2xx answer into
//! [`ClientError::Refused`] with the gateway's status and code, and retries what
//! [`crate::retry`] says may be retried. Requests that name no `agent_id` get the
//! configured one.

use crate::config::ClientConfig;
use crate::error::{ClientError, Result, TransportKind};
use crate::retry::{Idempotency, should_retry};
use mcp_api::requests::*;
use mcp_api::responses::*;
use mcp_api::{Tool, ToolRequest, tools};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A client of one gateway. Cheap to clone (the connection pool is shared); use one per
/// process or per agent.
#[derive(Clone)]
pub struct GatewayClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: ClientConfig,
    /// Retries made so far (all calls), for callers and tests that want to see them.
    retries: AtomicU64,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base", &self.inner.base.as_str())
            .field("agent_id", &self.inner.config.agent_id)
            .field("token", &self.inner.config.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Query of `GET /resources/tasks/{id}/logs`.
#[derive(Debug, Clone, Default)]
pub struct LogsQuery {
    /// Only steps older than this step id (paging backwards).
    pub before: Option<String>,
    /// Page size, 1–1000 (the gateway's default is 100).
    pub limit: Option<usize>,
}

impl GatewayClient {
    /// A client for the gateway at `config.base_url`: `http://`, or `https://` with the
    /// default feature `rustls` (a build without it refuses `https://` URLs here).
    pub fn new(config: ClientConfig) -> Result<GatewayClient> {
        let base = Url::parse(config.base_url.trim()).map_err(|e| {
            ClientError::Config(format!("bad gateway URL {:?}: {e}", config.base_url))
        })?;
        let tls = cfg!(feature = "rustls");
        let scheme_ok = base.scheme() == "http" || (tls && base.scheme() == "https");
        if !scheme_ok || base.cannot_be_a_base() {
            let schemes = if tls {
                "http://host:port or https://host:port"
            } else {
                "http://host:port (this build has no TLS: enable the feature `rustls`)"
            };
            return Err(ClientError::Config(format!(
                "the gateway URL must be {schemes}, got {:?}",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("mcp-agent-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(GatewayClient {
            inner: Arc::new(Inner {
                http,
                base,
                config,
                retries: AtomicU64::new(0),
            }),
        })
    }

    /// A client configured from the environment ([`ClientConfig::from_env`]).
    pub fn from_env() -> Result<GatewayClient> {
        GatewayClient::new(ClientConfig::from_env()?)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The configured acting agent, if any.
    pub fn agent_id(&self) -> Option<&str> {
        self.inner.config.agent_id.as_deref()
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// How many retries this client (and its clones) made so far.
    pub fn retry_count(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    // ---- tools ------------------------------------------------------------------------

    /// `POST /tools/{T::NAME}`: any tool of the registry, typed by its request and response
    /// (`client.call::<FileWrite>(req)`). A request naming no `agent_id` gets the configured
    /// one. Retried on transient failures only when [`Tool::retry_safe`] says repeating it is
    /// harmless (reads, idempotent tools, an unconditional `file_write`); every call is
    /// retried on 429/503, which the gateway answers before acting.
    pub async fn call<T: Tool>(&self, mut req: T::Request) -> Result<T::Response> {
        if req.agent_slot().is_none() {
            *req.agent_slot() = self.inner.config.agent_id.clone();
        }
        let idem = if T::retry_safe(&req) {
            Idempotency::Safe
        } else {
            Idempotency::Unsafe
        };
        let url = self.url(&["tools", T::NAME]);
        // A call that waits by design (a long poll) gets its wait on top of the timeout.
        let extra = req.wait().unwrap_or_default();
        self.execute_for(Method::POST, url, Some(&req), idem, extra)
            .await
    }

    /// `POST /tools/file_read`: `self.call::<FileRead>(req)`.
    pub async fn file_read(&self, req: FileReadRequest) -> Result<FileReadResponse> {
        self.call::<tools::FileRead>(req).await
    }

    /// `POST /tools/file_write`: `self.call::<FileWrite>(req)`.
    pub async fn file_write(&self, req: FileWriteRequest) -> Result<FileWriteResponse> {
        self.call::<tools::FileWrite>(req).await
    }

    /// `POST /tools/file_edit`: `self.call::<FileEdit>(req)`.
    pub async fn file_edit(&self, req: FileEditRequest) -> Result<FileEditResponse> {
        self.call::<tools::FileEdit>(req).await
    }

    /// `POST /tools/list_files`: `self.call::<ListFiles>(req)`.
    pub async fn list_files(&self, req: ListFilesRequest) -> Result<ListFilesResponse> {
        self.call::<tools::ListFiles>(req).await
    }

    /// `POST /tools/delete_file`: `self.call::<DeleteFile>(req)`.
    pub async fn delete_file(&self, req: DeleteFileRequest) -> Result<DeleteFileResponse> {
        self.call::<tools::DeleteFile>(req).await
    }

    /// `POST /tools/file_history`: `self.call::<FileHistory>(req)`.
    pub async fn file_history(&self, req: FileHistoryRequest) -> Result<FileHistoryResponse> {
        self.call::<tools::FileHistory>(req).await
    }

    /// `POST /tools/file_revision`: `self.call::<FileRevision>(req)`.
    pub async fn file_revision(&self, req: FileRevisionRequest) -> Result<FileRevisionResponse> {
        self.call::<tools::FileRevision>(req).await
    }

    /// `POST /tools/claim_file`: `self.call::<ClaimFile>(req)`.
    pub async fn claim_file(&self, req: ClaimFileRequest) -> Result<LockResponse> {
        self.call::<tools::ClaimFile>(req).await
    }

    /// `POST /tools/renew_file`: `self.call::<RenewFile>(req)`.
    pub async fn renew_file(&self, req: RenewFileRequest) -> Result<LockResponse> {
        self.call::<tools::RenewFile>(req).await
    }

    /// `POST /tools/release_file`: `self.call::<ReleaseFile>(req)`.
    pub async fn release_file(&self, req: ReleaseFileRequest) -> Result<ReleaseResponse> {
        self.call::<tools::ReleaseFile>(req).await
    }

    /// `POST /tools/list_leases`: `self.call::<ListLeases>(req)`.
    pub async fn list_leases(&self, req: ListLeasesRequest) -> Result<ListLeasesResponse> {
        self.call::<tools::ListLeases>(req).await
    }

    /// `POST /tools/log_step`: `self.call::<LogStep>(req)`.
    pub async fn log_step(&self, req: LogStepRequest) -> Result<LogStepResponse> {
        self.call::<tools::LogStep>(req).await
    }

    /// `POST /tools/subscribe_logs`: `self.call::<SubscribeLogs>(req)`.
    pub async fn subscribe_logs(&self, req: SubscribeLogsRequest) -> Result<SubscribeLogsResponse> {
        self.call::<tools::SubscribeLogs>(req).await
    }

    /// `POST /tools/join_collaboration`: `self.call::<JoinCollaboration>(req)`.
    pub async fn join_collaboration(
        &self,
        req: CollaborationRequest,
    ) -> Result<CollaborationResponse> {
        self.call::<tools::JoinCollaboration>(req).await
    }

    /// `POST /tools/leave_collaboration`: `self.call::<LeaveCollaboration>(req)`.
    pub async fn leave_collaboration(
        &self,
        req: CollaborationRequest,
    ) -> Result<CollaborationResponse> {
        self.call::<tools::LeaveCollaboration>(req).await
    }

    /// `POST /tools/send_message`: `self.call::<SendMessage>(req)`. Not retried after a
    /// failure whose outcome is unknown (the message may have been stored).
    pub async fn send_message(&self, req: SendMessageRequest) -> Result<SendMessageResponse> {
        self.call::<tools::SendMessage>(req).await
    }

    /// `POST /tools/read_messages`: `self.call::<ReadMessages>(req)`. With `wait_sec`, the
    /// call's timeout is extended by the wait (a long poll).
    pub async fn read_messages(&self, req: ReadMessagesRequest) -> Result<ReadMessagesResponse> {
        self.call::<tools::ReadMessages>(req).await
    }

    /// `POST /tools/ack_message`: `self.call::<AckMessage>(req)`.
    pub async fn ack_message(&self, req: AckMessageRequest) -> Result<AckMessageResponse> {
        self.call::<tools::AckMessage>(req).await
    }

    // ---- resources --------------------------------------------------------------------

    /// `GET /resources/tasks`: a page of the tasks the caller may see, most recently active
    /// first; pass the answer's `next_cursor` as `cursor` for the next page.
    pub async fn list_tasks(&self, q: &TaskListQuery) -> Result<TaskList> {
        let url = self.resource_query(&["tasks"], q);
        self.get(url).await
    }

    /// `GET /resources/agents`: a page of agents, most recently seen first.
    pub async fn list_agents(&self, q: &AgentListQuery) -> Result<AgentList> {
        let url = self.resource_query(&["agents"], q);
        self.get(url).await
    }

    /// `GET /resources/tasks/{task_id}/state`.
    pub async fn task_state(&self, task_id: &str) -> Result<TaskState> {
        let url = self.resource(&["tasks", task_id, "state"], &[]);
        self.get(url).await
    }

    /// `GET /resources/tasks/{task_id}/logs`: a page of steps, oldest first.
    pub async fn task_logs(&self, task_id: &str, q: &LogsQuery) -> Result<TaskLogs> {
        let limit = q.limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(b) = &q.before {
            query.push(("before", b.as_str()));
        }
        if let Some(l) = &limit {
            query.push(("limit", l.as_str()));
        }
        let url = self.resource(&["tasks", task_id, "logs"], &query);
        self.get(url).await
    }

    /// `GET /resources/tasks/{task_id}/files`.
    pub async fn task_files(&self, task_id: &str) -> Result<ListFilesResponse> {
        let url = self.resource(&["tasks", task_id, "files"], &[]);
        self.get(url).await
    }

    /// `GET /resources/workspace/{task_id}/{path}`.
    pub async fn workspace_file(&self, task_id: &str, path: &str) -> Result<FileReadResponse> {
        let mut segments = vec!["workspace", task_id];
        segments.extend(path.split('/'));
        let url = self.resource(&segments, &[]);
        self.get(url).await
    }

    /// `GET /resources/agents/{agent_id}/status`.
    pub async fn agent_status(&self, agent_id: &str) -> Result<AgentStatus> {
        let url = self.url(&["resources", "agents", agent_id, "status"]);
        self.get(url).await
    }

    /// `GET /resources/collaboration/{task_id}`.
    pub async fn collaboration(&self, task_id: &str) -> Result<CollaborationState> {
        let url = self.resource(&["collaboration", task_id], &[]);
        self.get(url).await
    }

    // ---- admin and health -------------------------------------------------------------

    /// `POST /admin/tasks` (201 and the task; 409 `already_exists` for a taken id).
    pub async fn create_task(&self, req: &CreateTaskRequest) -> Result<TaskState> {
        let url = self.url(&["admin", "tasks"]);
        self.execute(Method::POST, url, Some(req), Idempotency::Unsafe)
            .await
    }

    /// `GET /admin/audit`: audit records matching the filters, newest first (with
    /// authentication on, for an admin token only).
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditLog> {
        let mut url = self.url(&["admin", "audit"]);
        let pairs = query_pairs(q);
        if !pairs.is_empty() {
            let mut qp = url.query_pairs_mut();
            for (k, v) in &pairs {
                qp.append_pair(k, v);
            }
        }
        self.get(url).await
    }

    /// `PATCH /admin/tasks/{task_id}`.
    pub async fn update_task(&self, task_id: &str, req: &UpdateTaskRequest) -> Result<TaskState> {
        let url = self.url(&["admin", "tasks", task_id]);
        self.execute(Method::PATCH, url, Some(req), Idempotency::Safe)
            .await
    }

    /// `GET /health`, once (never retried: it reports the state of right now). An
    /// `unhealthy` gateway answers 503 with the same body, returned here as `Ok`.
    pub async fn health(&self) -> Result<Health> {
        let url = self.url(&["health"]);
        let (status, headers, body) = self.send_once(Method::GET, &url, None).await?;
        match serde_json::from_slice::<Health>(&body) {
            Ok(h) if status == 200 || status == 503 => Ok(h),
            _ if status >= 300 => Err(ClientError::from_answer(
                status,
                &body,
                retry_after(&headers),
            )),
            Err(e) => Err(ClientError::Decode {
                status,
                message: e.to_string(),
            }),
            Ok(h) => Ok(h),
        }
    }

    // ---- plumbing ---------------------------------------------------------------------

    async fn get<Resp: DeserializeOwned>(&self, url: Url) -> Result<Resp> {
        self.execute::<(), Resp>(Method::GET, url, None, Idempotency::Safe)
            .await
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        url.set_query(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// A resource URL with the set fields of the query struct `q` as its query string.
    fn resource_query<Q: Serialize>(&self, segments: &[&str], q: &Q) -> Url {
        let pairs = query_pairs(q);
        let query: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.resource(segments, &query)
    }

    /// A resource URL (`/resources/...`) with `agent_id` and `query` as its query string.
    fn resource(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut all = vec!["resources"];
        all.extend_from_slice(segments);
        let mut url = self.url(&all);
        {
            let mut q = url.query_pairs_mut();
            if let Some(a) = &self.inner.config.agent_id {
                q.append_pair("agent_id", a);
            }
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    /// Sends a request, retrying per the policy; decodes a 2xx body as `Resp`.
    pub(crate) async fn execute<Req, Resp>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Req>,
        idem: Idempotency,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.execute_for(method, url, body, idem, Duration::ZERO)
            .await
    }

    /// [`GatewayClient::execute`], each attempt allowed `extra` time beyond the timeout.
    async fn execute_for<Req, Resp>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Req>,
        idem: Idempotency,
        extra: Duration,
    ) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Config(format!("request does not serialise: {e}")))?;
        let policy = &self.inner.config.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = match self
                .send_once_for(method.clone(), &url, body.as_deref(), extra)
                .await
            {
                Ok((status, _, bytes)) if (200..300).contains(&status) => {
                    return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                        status,
                        message: e.to_string(),
                    });
                }
                Ok((status, headers, bytes)) => {
                    ClientError::from_answer(status, &bytes, retry_after(&headers))
                }
                Err(e) => e,
            };
            if !should_retry(&outcome, idem) {
                return Err(outcome);
            }
            if attempt >= policy.max_attempts {
                return Err(if attempt > 1 {
                    ClientError::GaveUp {
                        attempts: attempt,
                        last: Box::new(outcome),
                    }
                } else {
                    outcome
                });
            }
            let wait = policy.delay(attempt - 1, &outcome);
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("mcp_client_retries_total", "code" => outcome.code().as_str())
                .increment(1);
            tracing::debug!(%url, attempt, ?wait, error = %outcome, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: (status, headers, body), or a transport error.
    async fn send_once(
        &self,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<(u16, HeaderMap, Vec<u8>)> {
        self.send_once_for(method, url, body, Duration::ZERO).await
    }

    /// [`GatewayClient::send_once`] with `extra` time beyond the timeout.
    async fn send_once_for(
        &self,
        method: Method,
        url: &Url,
        body: Option<&[u8]>,
        extra: Duration,
    ) -> Result<(u16, HeaderMap, Vec<u8>)> {
        let mut rb = self
            .inner
            .http
            .request(method, url.clone())
            .timeout(self.inner.config.timeout + extra);
        if let Some(t) = &self.inner.config.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let resp = rb.send().await.map_err(|e| transport(url, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| transport(url, &e))?;
        Ok((status, headers, bytes.to_vec()))
    }

    /// Opens a streaming `GET` (Server-Sent Events): no overall timeout, only one on
    /// getting the answer's headers. A non-2xx answer is returned as its error.
    pub(crate) async fn open_stream(
        &self,
        url: &Url,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut rb = self
            .inner
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.inner.config.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = tokio::time::timeout(self.inner.config.timeout, rb.send())
            .await
            .map_err(|_| ClientError::Transport {
                url: url.to_string(),
                message: "no answer within the timeout".into(),
                kind: TransportKind::Timeout,
            })?
            .map_err(|e| transport(url, &e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Err(ClientError::from_answer(
            status,
            &body,
            retry_after(&headers),
        ))
    }

    /// The URL of a task's live event stream, with `agent_id` in the query.
    pub(crate) fn events_url(&self, task_id: &str) -> Url {
        let mut url = self.url(&["tasks", task_id, "events"]);
        if let Some(a) = &self.inner.config.agent_id {
            url.query_pairs_mut().append_pair("agent_id", a);
        }
        url
    }
}

/// `Retry-After` in seconds (the gateway sends seconds; an HTTP date is ignored and the
/// body's `retry_after` or the backoff used instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

pub(crate) fn transport(url: &Url, e: &reqwest::Error) -> ClientError {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    ClientError::Transport {
        url: url.to_string(),
        message,
        kind,
    }
}

/// The fields of a query struct that are set, as query-string pairs.
fn query_pairs<Q: Serialize>(q: &Q) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(q) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str, agent: Option<&str>) -> GatewayClient {
        let mut c = ClientConfig::new(base);
        c.agent_id = agent.map(str::to_owned);
        GatewayClient::new(c).unwrap()
    }

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = client("http://h:1/prefix/", None);
        assert_eq!(
            c.url(&["tools", "file_read"]).as_str(),
            "http://h:1/prefix/tools/file_read"
        );
        let c = client("http://h:1", Some("a 1"));
        assert_eq!(
            c.resource(&["workspace", "t", "dir", "a b.py"], &[])
                .as_str(),
            "http://h:1/resources/workspace/t/dir/a%20b.py?agent_id=a+1"
        );
        let c = client("http://h:1", None);
        assert_eq!(
            c.resource(&["tasks", "t", "logs"], &[("limit", "5")])
                .as_str(),
            "http://h:1/resources/tasks/t/logs?limit=5"
        );
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        for bad in ["ftp://h", "not a url", "mailto:x@y", "unix:/tmp/s"] {
            assert!(GatewayClient::new(ClientConfig::new(bad)).is_err(), "{bad}");
        }
        assert!(GatewayClient::new(ClientConfig::new("http://h:1")).is_ok());
        assert_eq!(
            GatewayClient::new(ClientConfig::new("https://h")).is_ok(),
            cfg!(feature = "rustls")
        );
    }
}
