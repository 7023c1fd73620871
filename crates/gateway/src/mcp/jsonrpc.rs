//! JSON-RPC answers where rmcp would answer with a bare HTTP status (issue #15 item 4).
//!
//! rmcp parses a `POST /mcp` body straight into one client message; whatever does not parse
//! gets `415 Unsupported Media Type` with a plain-text body, and a known method whose
//! parameters do not fit its type is taken for an unknown custom method (`-32601`, and HTTP
//! 404 in 2026-07-28). Clients then show an HTTP failure instead of the JSON-RPC error the
//! specification names. [`guard`] reads the body first and answers, as JSON:
//!
//! * not JSON → HTTP 400, `-32700` parse error (`id: null`);
//! * a batch (an array) in a session that negotiated 2025-03-26, the one revision with
//!   JSON-RPC batches: served, each message as if it came alone (concurrently), the answers
//!   in one JSON array (HTTP 200; 202 when the batch held no request); notifications a
//!   request's stream carried before its answer are not in it. In any other revision (batches
//!   were removed in 2025-06-18) or without a session → HTTP 400, `-32600`, naming the
//!   revision;
//! * JSON that is no JSON-RPC message → HTTP 400, `-32600` invalid request;
//! * a known method with parameters that do not fit (`tools/call` without `name`, with
//!   `arguments` that is not an object, …) → HTTP 200, `-32602` invalid params, with the
//!   request's id and what is wrong — but for a method that the request's revision removed
//!   (`resources/subscribe` and `resources/unsubscribe` in 2026-07-28, named by the
//!   `MCP-Protocol-Version` header or `_meta`), which rmcp answers as unknown whatever its
//!   parameters (HTTP 404, `-32601`), as SEP-2575 asks.
//!
//! A `notifications/cancelled` outside a session (2026-07-28: every request stands alone, and
//! rmcp drops such notifications) that names an open `subscriptions/listen` of the same caller
//! ends that listen, on whichever instance holds it ([`super::notify::Hub::cancel_listen`]).
//!
//! Everything else goes on to rmcp unchanged (the body rebuilt from the bytes read). It also
//! answers a `DELETE` of a session with `204 No Content` where rmcp says `202 Accepted` (a
//! deletion is done, not queued; the Python SDK reports 202 as a failure).

use crate::AppState;
use crate::extract::Caller;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
// `resources/(un)subscribe` are deprecated for 2026-07-28 only; 2025-11-25 sessions use them.
use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, ClientRequest, CompleteRequest, ConstString,
    GetPromptRequest, ReadResourceRequest, SubscriptionsListenRequest,
};
#[allow(deprecated)]
use rmcp::model::{SubscribeRequest, UnsubscribeRequest};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// See the module documentation.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::DELETE {
        let response = next.run(req).await;
        if response.status() != StatusCode::ACCEPTED {
            return response;
        }
        let (mut parts, _) = response.into_parts();
        parts.status = StatusCode::NO_CONTENT;
        return Response::from_parts(parts, Body::empty());
    }
    // rmcp's own answers stay for the wrong method, Accept or Content-Type (405, 406, 415).
    if req.method() != Method::POST || !is_json(&req) {
        return next.run(req).await;
    }
    let max = state.mcp.config.max_body_bytes;
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(e) => return unreadable(e, max),
    };
    if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&bytes) {
        return batch(&state, parts, items, next).await;
    }
    let version = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    if let Some(answer) = check(&bytes, version) {
        return answer;
    }
    if let Some(name) = listen_cancellation(&state, &parts, &bytes).await {
        state.mcp.hub.cancel_listen(&name).await;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The one protocol revision with JSON-RPC batches.
const BATCH_REVISION: &str = "2025-03-26";

/// The protocol revision the request's session negotiated (what its client asked for at
/// `initialize`; rmcp agrees to every revision it knows, 2025-03-26 among them); without a
/// session, the `MCP-Protocol-Version` header's.
async fn revision(state: &AppState, parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(session) = header(super::SESSION_HEADER) else {
        return header("mcp-protocol-version");
    };
    let record = state
        .mcp
        .hub
        .store()
        .load_session(&session, super::sessions::SESSION_TTL)
        .await
        .ok()
        .flatten()?;
    let value: Value = serde_json::from_str(&record.state).ok()?;
    value["initialize_params"]["protocolVersion"]
        .as_str()
        .map(str::to_owned)
}

/// A JSON-RPC batch: served in a 2025-03-26 session, refused otherwise (module documentation).
async fn batch(state: &AppState, parts: Parts, items: Vec<Value>, next: Next) -> Response {
    let revision = revision(state, &parts).await;
    if revision.as_deref() != Some(BATCH_REVISION) {
        let named = match &revision {
            Some(r) => format!("protocol revision {r}"),
            None => "a request outside a 2025-03-26 session".to_owned(),
        };
        return error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            format!(
                "Invalid Request: JSON-RPC batches are not supported in {named}; only \
                 revision {BATCH_REVISION} has them (removed in 2025-06-18); send one message \
                 per request"
            ),
        );
    }
    if items.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: an empty batch".to_owned(),
        );
    }
    let answers = futures::future::join_all(
        items
            .into_iter()
            .map(|item| one_of_batch(parts.clone(), item, next.clone())),
    )
    .await;
    let mut out = Vec::new();
    for answer in answers {
        match answer {
            Ok(messages) => out.extend(messages),
            // rmcp refused the message at the HTTP level (an unknown session, …): that answer.
            Err(response) => return response,
        }
    }
    if out.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    (StatusCode::OK, axum::Json(Value::Array(out))).into_response()
}

/// One message of a batch, served as if it came alone: the JSON-RPC answers it produced
/// (none for a notification), or the HTTP answer that refused it.
async fn one_of_batch(parts: Parts, item: Value, next: Next) -> Result<Vec<Value>, Response> {
    let bytes = Bytes::from(item.to_string());
    if let Some(answer) = check(&bytes, Some(BATCH_REVISION)) {
        return Ok(json_body(answer).await.into_iter().collect());
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if status == StatusCode::ACCEPTED {
        return Ok(Vec::new());
    }
    if !status.is_success() {
        return Err(response);
    }
    let sse = is_event_stream(&response);
    let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("a message of the batch could not be answered: {e}"),
            )
                .into_response());
        }
    };
    if !sse {
        return Ok(serde_json::from_slice::<Value>(&body).into_iter().collect());
    }
    // The answer of a request stream: its `data:` lines; only responses and errors go into
    // the batch's answer.
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|m| {
            m.get("id").is_some() && (m.get("result").is_some() || m.get("error").is_some())
        })
        .collect())
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The JSON body of one of this module's answers.
async fn json_body(response: Response) -> Option<Value> {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The listen a `notifications/cancelled` outside a session names: its caller's agent and the
/// request id it cancels. `None` for any other message.
async fn listen_cancellation(
    state: &AppState,
    parts: &Parts,
    body: &Bytes,
) -> Option<super::notify::ListenName> {
    if parts.headers.contains_key(super::SESSION_HEADER) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("method")?.as_str()? != "notifications/cancelled" || value.get("id").is_some() {
        return None;
    }
    let request_id = value.get("params")?.get("requestId")?;
    let mut parts = parts.clone();
    let caller = Caller::from_request_parts(&mut parts, state).await.ok()?;
    Some(super::notify::ListenName {
        agent: caller.identity().map(|id| id.agent.to_string()),
        request_id: request_id.to_string(),
    })
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A body past the limit gets rmcp's own answer (413); one that could not be read, 400.
fn unreadable(e: axum::Error, max: usize) -> Response {
    let too_large =
        std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    if too_large {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {max} bytes"),
        )
            .into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("Bad Request: the request body could not be read: {e}"),
        )
            .into_response()
    }
}

/// The first protocol revision without sessions (SEP-2575).
const STATELESS_REVISION: &str = "2026-07-28";
/// Methods that [`STATELESS_REVISION`] removed: unknown methods there.
const REMOVED_IN_STATELESS: &[&str] = &["resources/subscribe", "resources/unsubscribe"];

/// Whether a request is of the stateless generation: its `MCP-Protocol-Version` header, or
/// else its `_meta`, names [`STATELESS_REVISION`] or a later one (revisions are dates).
fn is_stateless(header: Option<&str>, params: Option<&Value>) -> bool {
    let version = header.or_else(|| {
        params?
            .get("_meta")?
            .get("io.modelcontextprotocol/protocolVersion")?
            .as_str()
    });
    version.is_some_and(|v| v >= STATELESS_REVISION)
}

/// The JSON-RPC error answer to `body` (sent with `MCP-Protocol-Version: version`), or
/// `None` when rmcp should serve it.
fn check(body: &Bytes, version: Option<&str>) -> Option<Response> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Some(error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                PARSE_ERROR,
                format!("Parse error: the body is not JSON ({e})"),
            ));
        }
    };
    let Value::Object(object) = &value else {
        let message = if value.is_array() {
            "Invalid Request: JSON-RPC batches are not supported (MCP removed them in \
             protocol revision 2025-06-18); send one message per request"
        } else {
            "Invalid Request: a JSON-RPC message is a JSON object"
        };
        return Some(error(
            StatusCode::BAD_REQUEST,
            Value::Null,
            INVALID_REQUEST,
            message.to_owned(),
        ));
    };
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    let message = match serde_json::from_value::<ClientJsonRpcMessage>(value.clone()) {
        Ok(m) => m,
        Err(e) => {
            return Some(error(
                StatusCode::BAD_REQUEST,
                id,
                INVALID_REQUEST,
                format!("Invalid Request: not a JSON-RPC 2.0 message ({e})"),
            ));
        }
    };
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    let ClientRequest::CustomRequest(custom) = &request.request else {
        return None;
    };
    let method = custom.method.as_str();
    if REMOVED_IN_STATELESS.contains(&method) && is_stateless(version, object.get("params")) {
        return None;
    }
    let why = misfit(method, object.get("params"))?;
    Some(error(
        StatusCode::OK,
        id,
        INVALID_PARAMS,
        format!("Invalid params for {method}: {why}"),
    ))
}

/// Why `params` do not fit `method`, when it is a method of the protocol (rmcp took it for a
/// custom one because they did not); `None` for a method the protocol does not define.
fn misfit(method: &str, params: Option<&Value>) -> Option<String> {
    fn why<T: DeserializeOwned>(method: &str, params: Option<&Value>) -> String {
        let message = json!({"method": method, "params": params.cloned().unwrap_or(Value::Null)});
        match serde_json::from_value::<T>(message) {
            Err(e) => e.to_string(),
            Ok(_) => "they do not match the method's parameters".to_owned(),
        }
    }
    macro_rules! methods {
        ($($request:ty),* $(,)?) => {
            $(
                if method == <<$request as HasMethod>::Method as ConstString>::VALUE {
                    return Some(why::<$request>(method, params));
                }
            )*
        };
    }
    #[allow(deprecated)]
    {
        methods!(
            CallToolRequest,
            ReadResourceRequest,
            SubscribeRequest,
            UnsubscribeRequest,
            GetPromptRequest,
            CompleteRequest,
            SubscriptionsListenRequest,
        );
    }
    None
}

/// The method type of an rmcp request type (`Request<M, P>`).
trait HasMethod {
    type Method: ConstString;
}

impl<M: ConstString, P> HasMethod for rmcp::model::Request<M, P> {
    type Method = M;
}

fn error(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Option<(u16, i64)> {
        code_at(body, None)
    }

    fn code_at(body: &str, version: Option<&str>) -> Option<(u16, i64)> {
        let r = check(&Bytes::from(body.to_owned()), version)?;
        let status = r.status().as_u16();
        let bytes = futures::executor::block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .expect("body");
        let v: Value = serde_json::from_slice(&bytes).expect("JSON");
        Some((status, v["error"]["code"].as_i64().expect("a code")))
    }

    #[test]
    fn what_rmcp_would_refuse_with_a_bare_status_gets_a_json_rpc_error() {
        assert_eq!(code("{not json"), Some((400, PARSE_ERROR)));
        assert_eq!(
            code(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            Some((400, INVALID_REQUEST))
        );
        assert_eq!(code("42"), Some((400, INVALID_REQUEST)));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#),
            Some((200, INVALID_PARAMS))
        );
        assert_eq!(
            code(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"file_read","arguments":"x"}}"#
            ),
            Some((200, INVALID_PARAMS))
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#),
            Some((200, INVALID_PARAMS))
        );
    }

    #[test]
    fn good_messages_and_unknown_methods_go_on_to_rmcp() {
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None);
        assert_eq!(
            code(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"file_read","arguments":{}}}"#
            ),
            None
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#), None);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            None
        );
    }

    #[test]
    fn methods_removed_in_2026_07_28_go_on_to_rmcp_there() {
        let subscribe = r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{}}"#;
        assert_eq!(code(subscribe), Some((200, INVALID_PARAMS)));
        assert_eq!(
            code_at(subscribe, Some("2025-11-25")),
            Some((200, INVALID_PARAMS))
        );
        assert_eq!(code_at(subscribe, Some("2026-07-28")), None);
        let by_meta = r#"{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(code(by_meta), None);
        // Methods 2026-07-28 keeps are still checked there.
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#;
        assert_eq!(
            code_at(call, Some("2026-07-28")),
            Some((200, INVALID_PARAMS))
        );
    }
}
