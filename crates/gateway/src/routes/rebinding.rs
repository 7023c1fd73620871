//! The `Host` and `Origin` checks that stop web pages from driving the gateway: one layer in
//! front of every route (REST tools, resources, admin, the live streams, `/mcp`, and unknown
//! paths alike), the only implementation of these checks (rmcp's own is turned off).
//!
//! * **DNS rebinding** — a page on `attacker.example` whose name the attacker then points at
//!   `127.0.0.1` makes same-origin requests to the gateway, carrying `Host: attacker.example`.
//!   While authentication is off every caller is trusted, so such a request would act as
//!   admin: the `Host` must be one of `ALLOWED_HOSTS` (alias `MCP_ALLOWED_HOSTS`), else 403.
//! * **Cross-origin pages** — a page on another origin that sends requests to
//!   `http://127.0.0.1:8001` carries its own `Origin`: a present `Origin` must be one of
//!   `ALLOWED_ORIGINS` (alias `MCP_ALLOWED_ORIGINS`), one of `CORS_ORIGINS`, or the origin of
//!   the `Host` itself (same-origin), else 403. Clients that are not browsers send no `Origin`.
//!
//! With authentication on, a browser never attaches the bearer token by itself, so a rebound
//! or cross-origin page gains nothing: the `Host` check is off (a deployed gateway is reached
//! under names and addresses a proxy chooses), and only the `Origin` check stays, as the MCP
//! specification asks of every server. `/health` and `/metrics` are exempt from both: probes
//! and scrapers address the gateway by bare IP or container name, and neither route carries
//! task data.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use mcp_api::ErrorCode;
use std::sync::Arc;

/// Routes that answer any `Host` and `Origin` (load-balancer probes, Prometheus).
const EXEMPT: &[&str] = &["/health", "/metrics"];

/// The configured checks. Built once at start ([`RebindingGuard::new`]).
#[derive(Debug, Clone)]
pub struct RebindingGuard {
    /// Check `Host` at all: only while authentication is off.
    check_host: bool,
    /// `ALLOWED_HOSTS=*`: any host.
    any_host: bool,
    /// Accepted `Host` values.
    hosts: Vec<Authority>,
    /// Accepted `Origin` values (`ALLOWED_ORIGINS` and `CORS_ORIGINS`).
    origins: Vec<AllowedOrigin>,
    /// `CORS_ORIGINS=*`: the operator lets every origin call.
    any_origin: bool,
    /// The last `Host` header found allowed, as it was sent: the same text is allowed again
    /// without being parsed (nearly every request of a client sends the same; issue #19).
    last_allowed_host: Arc<std::sync::RwLock<Option<Box<[u8]>>>>,
}

/// A host and optional port, normalised (lower case, no IPv6 brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

/// A browser origin: `null` (sandboxed frames, `file:` pages) or scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        /// The port, or the scheme's default when the origin omits it.
        port: Option<u16>,
    },
}

/// An entry of the origin allow-list: an origin, or `scheme://host:*` (any port).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    Exact(Origin),
    AnyPort { scheme: String, host: String },
}

impl RebindingGuard {
    /// `hosts`: `host` (any port) or `host:port` entries, `*` for any host; `origins`:
    /// `scheme://host[:port]` (no port: the scheme's default) or `scheme://host:*`;
    /// `cors`: the `CORS_ORIGINS` entries (`*`: any origin). Unparsable entries are dropped
    /// with a warning.
    pub fn new(auth_on: bool, hosts: &[String], origins: &[String], cors: &[String]) -> Self {
        let any_host = hosts.iter().any(|h| h.trim() == "*");
        let hosts = hosts
            .iter()
            .filter(|h| h.trim() != "*")
            .filter_map(|h| {
                let parsed = parse_allowed_host(h.trim());
                if parsed.is_none() {
                    tracing::warn!(host = h.as_str(), "ALLOWED_HOSTS entry ignored: not a host");
                }
                parsed
            })
            .collect();
        let any_origin = cors.iter().any(|o| o.trim() == "*");
        let origins = origins
            .iter()
            .chain(cors.iter().filter(|o| o.trim() != "*"))
            .filter_map(|o| {
                let parsed = parse_allowed_origin(o.trim());
                if parsed.is_none() {
                    tracing::warn!(origin = o.as_str(), "allowed origin ignored: not an origin");
                }
                parsed
            })
            .collect();
        RebindingGuard {
            check_host: !auth_on,
            any_host,
            hosts,
            origins,
            any_origin,
            last_allowed_host: Arc::default(),
        }
    }

    /// Whether `host` (a `Host` header's bytes) is the last one found allowed.
    fn known_allowed(&self, host: &[u8]) -> bool {
        let last = self.last_allowed_host.read();
        last.as_ref()
            .is_ok_and(|last| last.as_deref() == Some(host))
    }

    /// Whether a request with this target and these headers may proceed; the refusal
    /// otherwise (403 `forbidden`, or 400 for a missing or unreadable `Host`).
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        if EXEMPT.contains(&uri.path()) {
            return Ok(());
        }
        let host_header = headers.get(header::HOST).map(|h| h.as_bytes());
        let origin_header = headers.get(header::ORIGIN);
        if self.check_host
            && origin_header.is_none()
            && host_header.is_some_and(|h| self.known_allowed(h))
        {
            return Ok(());
        }
        let host = request_authority(uri, headers);
        if self.check_host {
            let Some(host) = &host else {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "the request has no readable Host header",
                ));
            };
            if !self.host_allowed(host) {
                return Err(refused(format!(
                    "Host '{}' is not one this gateway answers to (ALLOWED_HOSTS)",
                    show(host)
                )));
            }
            if let (Some(sent), Ok(mut last)) = (host_header, self.last_allowed_host.write()) {
                *last = Some(sent.into());
            }
        }
        let Some(origin) = origin_header else {
            return Ok(());
        };
        let text = origin.to_str().unwrap_or("");
        let Some(origin) = parse_origin(text.trim()) else {
            return Err(refused("the Origin header is not an origin".to_owned()));
        };
        if self.origin_allowed(&origin, host.as_ref()) {
            Ok(())
        } else {
            Err(refused(format!(
                "Origin '{}' is not allowed (ALLOWED_ORIGINS, CORS_ORIGINS)",
                text.trim()
            )))
        }
    }

    fn host_allowed(&self, host: &Authority) -> bool {
        self.any_host
            || self
                .hosts
                .iter()
                .any(|a| a.host == host.host && a.port.is_none_or(|p| host.port == Some(p)))
    }

    fn origin_allowed(&self, origin: &Origin, host: Option<&Authority>) -> bool {
        if self.any_origin {
            return true;
        }
        if let (
            Origin::Tuple {
                scheme,
                host: h,
                port,
            },
            Some(a),
        ) = (origin, host)
        {
            // Same origin: a page the gateway itself served (under an allowed Host).
            if *h == a.host && *port == a.port.or(default_port(scheme)) {
                return true;
            }
        }
        self.origins.iter().any(|allowed| match (allowed, origin) {
            (AllowedOrigin::Exact(a), o) => a == o,
            (
                AllowedOrigin::AnyPort { scheme, host },
                Origin::Tuple {
                    scheme: s, host: h, ..
                },
            ) => scheme == s && host == h,
            (AllowedOrigin::AnyPort { .. }, Origin::Null) => false,
        })
    }
}

/// The layer: refuses before anything else runs (authentication, body, handler).
pub async fn guard(
    State(guard): State<Arc<RebindingGuard>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(e) = guard.check(req.uri(), req.headers()) {
        metrics::counter!("mcp_rebinding_refused_total").increment(1);
        tracing::debug!(detail = %e.detail, "request refused by the Host/Origin check");
        return Err(e);
    }
    Ok(next.run(req).await)
}

fn refused(detail: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, detail)
}

/// The authority for a message: user input, so only printable ASCII and bounded.
fn show(a: &Authority) -> String {
    let s = match a.port {
        Some(p) if a.host.contains(':') => format!("[{}]:{p}", a.host),
        Some(p) => format!("{}:{p}", a.host),
        None => a.host.clone(),
    };
    s.chars().take(256).collect()
}

/// The request's authority: the `Host` header, or HTTP/2's `:authority`.
fn request_authority(uri: &Uri, headers: &HeaderMap) -> Option<Authority> {
    match headers.get(header::HOST) {
        Some(h) => parse_authority(h.to_str().ok()?),
        None => uri.authority().and_then(|a| parse_authority(a.as_str())),
    }
}

fn parse_authority(s: &str) -> Option<Authority> {
    if s.is_empty() {
        return None;
    }
    let a = axum::http::uri::Authority::try_from(s).ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    Some(Authority {
        host: normalise_host(a.host()),
        port: a.port_u16(),
    })
}

/// An `ALLOWED_HOSTS` entry: an authority, or a bare IPv6 address (`::1`, any port).
fn parse_allowed_host(s: &str) -> Option<Authority> {
    match s.parse::<std::net::Ipv6Addr>() {
        Ok(_) => Some(Authority {
            host: normalise_host(s),
            port: None,
        }),
        Err(_) => parse_authority(s),
    }
}

/// Lower case, no brackets or trailing dot; IPv6 addresses in their canonical form.
fn normalise_host(h: &str) -> String {
    let h = h
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    match h.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h.to_ascii_lowercase(),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// An `Origin` header value: `null`, or `scheme://host[:port]` with nothing after it.
fn parse_origin(s: &str) -> Option<Origin> {
    if s.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty() || rest.contains(['/', '?', '#']) {
        return None;
    }
    let a = parse_authority(rest)?;
    Some(Origin::Tuple {
        port: a.port.or(default_port(&scheme)),
        scheme,
        host: a.host,
    })
}

fn parse_allowed_origin(s: &str) -> Option<AllowedOrigin> {
    let s = s.trim_end_matches('/');
    if let Some(base) = s.strip_suffix(":*") {
        return match parse_origin(base)? {
            Origin::Tuple { scheme, host, .. } => Some(AllowedOrigin::AnyPort { scheme, host }),
            Origin::Null => None,
        };
    }
    parse_origin(s).map(AllowedOrigin::Exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard(auth_on: bool) -> RebindingGuard {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        RebindingGuard::new(
            auth_on,
            &v(&["localhost", "127.0.0.1", "::1", "gw.example:8443"]),
            &v(&["http://localhost:*", "https://app.example"]),
            &v(&["https://ui.example:8080"]),
        )
    }

    fn req(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn passes(g: &RebindingGuard, path: &str, host: Option<&str>, origin: Option<&str>) -> bool {
        g.check(&path.parse().unwrap(), &req(host, origin)).is_ok()
    }

    #[test]
    fn hosts_are_matched_by_name_and_optional_port() {
        let g = guard(false);
        assert!(passes(&g, "/x", Some("localhost:8001"), None));
        assert!(passes(&g, "/x", Some("LOCALHOST."), None));
        assert!(passes(&g, "/x", Some("[::1]:8001"), None));
        assert!(passes(&g, "/x", Some("[0:0::1]"), None));
        assert!(passes(&g, "/x", Some("gw.example:8443"), None));
        assert!(!passes(&g, "/x", Some("gw.example:8001"), None));
        assert!(!passes(&g, "/x", Some("attacker.example"), None));
        assert!(!passes(&g, "/x", Some("localhost.attacker.example"), None));
        assert!(!passes(&g, "/x", Some("user@localhost"), None));
        assert!(!passes(&g, "/x", None, None));
        // Probes and scrapers.
        assert!(passes(&g, "/health", Some("10.0.0.7:8001"), None));
        assert!(passes(&g, "/metrics", Some("mcp-gateway:8001"), None));
    }

    #[test]
    fn a_host_found_allowed_is_remembered_and_nothing_else() {
        let g = guard(false);
        assert!(!passes(&g, "/x", Some("attacker.example"), None));
        assert!(
            !passes(&g, "/x", Some("attacker.example"), None),
            "not remembered"
        );
        assert!(passes(&g, "/x", Some("localhost:8001"), None));
        assert!(passes(&g, "/x", Some("localhost:8001"), None), "remembered");
        assert!(!passes(&g, "/x", Some("attacker.example"), None));
        assert!(passes(&g, "/x", Some("gw.example:8443"), None));
        assert!(!passes(&g, "/x", Some("gw.example:8001"), None));
        assert!(!passes(&g, "/x", Some("gw.example:84430"), None));
        // The host remembered, a foreign origin is still refused.
        let h = Some("localhost:8001");
        assert!(!passes(&g, "/x", h, Some("https://attacker.example")));
        assert!(passes(&g, "/x", h, None));
    }

    #[test]
    fn origins_must_be_listed_or_the_hosts_own() {
        let g = guard(false);
        let h = Some("127.0.0.1:8001");
        assert!(passes(&g, "/x", h, Some("http://localhost:6274")));
        assert!(passes(&g, "/x", h, Some("https://app.example")));
        assert!(passes(&g, "/x", h, Some("https://app.example:443")));
        assert!(!passes(&g, "/x", h, Some("https://app.example:444")));
        assert!(passes(&g, "/x", h, Some("https://ui.example:8080")));
        assert!(passes(&g, "/x", h, Some("http://127.0.0.1:8001")));
        assert!(!passes(&g, "/x", h, Some("http://127.0.0.1:9999")));
        assert!(!passes(&g, "/x", h, Some("https://localhost:8001")));
        assert!(!passes(&g, "/x", h, Some("http://attacker.example")));
        assert!(!passes(&g, "/x", h, Some("null")));
        assert!(!passes(&g, "/x", h, Some("http://localhost:1/path")));
        assert!(!passes(&g, "/x", h, Some("garbage")));
    }

    #[test]
    fn with_authentication_on_only_the_origin_is_checked() {
        let g = guard(true);
        assert!(passes(&g, "/x", Some("attacker.example"), None));
        assert!(passes(&g, "/x", None, None));
        assert!(!passes(
            &g,
            "/x",
            Some("gw.internal"),
            Some("http://attacker.example")
        ));
        assert!(passes(
            &g,
            "/x",
            Some("gw.internal"),
            Some("http://gw.internal")
        ));
    }

    #[test]
    fn stars_allow_everything() {
        let star = vec!["*".to_owned()];
        let g = RebindingGuard::new(false, &star, &[], &star);
        assert!(passes(
            &g,
            "/x",
            Some("anything.example"),
            Some("https://any.example")
        ));
    }
}
