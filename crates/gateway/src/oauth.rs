//! Tokens from the operator's own authorization server (Keycloak, Auth0, Entra ID, Dex, …), as
//! the MCP authorization specification asks of an HTTP server (a protected resource).
//!
//! * **Discovery.** `OAUTH_ISSUER` names the issuer; its metadata is read from
//!   `{issuer}/.well-known/openid-configuration`, else RFC 8414's
//!   `/.well-known/oauth-authorization-server{path}`, and gives `jwks_uri`.
//! * **Keys.** The JWKS is fetched on first use and cached; a token whose `kid` is not in the
//!   cache makes one refetch (at most one every `OAUTH_JWKS_MIN_REFRESH_SECS`), so a key rotation at the
//!   issuer needs no restart. RS256 and ES256 only; never `none`, never HS256 here.
//! * **Checks.** Signature, `iss` (the configured issuer), `aud` (the resource:
//!   `OAUTH_AUDIENCE`, default `{PUBLIC_URL}/mcp`), `exp` (required) and `nbf`, with
//!   [`LEEWAY_SECS`] of skew.
//! * **Who.** The agent is the `OAUTH_AGENT_CLAIM` claim (default `sub`), a valid agent id; the
//!   task scope is `OAUTH_TASKS_CLAIM` (a list, or a space-separated string; `*` or absent:
//!   every task); the role is `OAUTH_ROLE_CLAIM` (a string or a list; `admin`, `observer` or
//!   `agent`, or an issuer's group name mapped by `OAUTH_ROLE_MAP`; none: `agent`).
//! * **Metadata.** [`router`] serves the Protected Resource Metadata (RFC 9728) at
//!   `/.well-known/oauth-protected-resource` and its `/mcp` form; a 401 names it in
//!   `WWW-Authenticate` (`resource_metadata`, and `scope` when scopes are configured).
//!
//! The issuer being unreachable when keys are needed is a backend outage (503 with
//! `Retry-After`), not the caller's fault.

use crate::AppState;
use crate::auth::{AuthError, Identity, LEEWAY_SECS, MAX_TOKEN_BYTES, parse_role};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcp_domain::{AgentId, Role, TaskId};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// How long a request to the issuer may take.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(5);
/// The path of the Protected Resource Metadata (RFC 9728).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What `OAUTH_*` configures.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The issuer URL, exactly as its tokens' `iss` says it.
    pub issuer: String,
    /// The `aud` a token must carry: this resource.
    pub audience: String,
    /// The gateway's public base URL (where the metadata is served).
    pub public_url: String,
    /// The claim naming the agent (`OAUTH_AGENT_CLAIM`).
    pub agent_claim: String,
    /// The claim listing the tasks a token reaches (`OAUTH_TASKS_CLAIM`).
    pub tasks_claim: String,
    /// The claim naming the role (`OAUTH_ROLE_CLAIM`).
    pub role_claim: String,
    /// Issuer values (group or role names) → gateway roles.
    pub role_map: Vec<(String, Role)>,
    /// Scopes announced in the metadata and in `WWW-Authenticate`.
    pub scopes_supported: Vec<String>,
    /// Least time between two key fetches caused by unknown key ids.
    pub min_refresh: Duration,
}

impl OAuthConfig {
    /// The MCP endpoint, the resource the metadata describes.
    pub fn resource(&self) -> String {
        format!("{}/mcp", self.public_url)
    }

    /// The URL of the metadata, for `WWW-Authenticate`'s `resource_metadata`.
    pub fn metadata_url(&self) -> String {
        format!("{}{METADATA_PATH}/mcp", self.public_url)
    }

    /// The Protected Resource Metadata document.
    pub fn metadata(&self) -> Value {
        let mut doc = json!({
            "resource": self.resource(),
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP Gateway",
        });
        if !self.scopes_supported.is_empty() {
            doc["scopes_supported"] = json!(self.scopes_supported);
        }
        doc
    }
}

/// The keys of the issuer, by key id.
#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
}

/// Verifies the issuer's tokens (see the module documentation).
pub struct OAuth {
    /// What it was configured with.
    pub config: OAuthConfig,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// When the keys were last fetched (`None`: never); held while fetching.
    fetched: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OAuth {
    /// A verifier for `config`; the issuer's metadata and keys are fetched when first needed.
    pub fn new(config: OAuthConfig) -> OAuth {
        OAuth {
            config,
            http: reqwest::Client::builder()
                .timeout(ISSUER_TIMEOUT)
                .build()
                .unwrap_or_default(),
            keys: RwLock::default(),
            fetched: Mutex::new(None),
        }
    }

    /// Verifies `token` at `now` (seconds since the epoch) and says who it names.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Malformed);
        }
        let kid = header.kid.unwrap_or_default();
        let (alg, key) = match self.key(&kid).await {
            Some(k) => k,
            None => {
                self.refresh(false).await?;
                self.key(&kid).await.ok_or(AuthError::Signature)?
            }
        };
        if alg != header.alg {
            return Err(AuthError::Signature);
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS as u64;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(refusal)?
            .claims;
        self.identity(&claims, now)
    }

    /// The cached key `kid` names (with one key and no `kid`, that key).
    async fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let keys = self.keys.read().await;
        match keys.by_kid.get(kid) {
            Some(k) => Some(k.clone()),
            None if kid.is_empty() && keys.by_kid.len() == 1 => {
                keys.by_kid.values().next().cloned()
            }
            None => None,
        }
    }

    /// Fetches the issuer's keys (and, the first time, its metadata), unless they were fetched
    /// less than `min_refresh` ago (`force` fetches anyway).
    pub async fn refresh(&self, force: bool) -> Result<(), AuthError> {
        let mut fetched = self.fetched.lock().await;
        if !force && fetched.is_some_and(|at| at.elapsed() < self.config.min_refresh) {
            return Ok(());
        }
        let jwks_uri = match self.keys.read().await.jwks_uri.clone() {
            Some(uri) => uri,
            None => self.discover().await?,
        };
        let set: JwkSet = self.get_json(&jwks_uri).await?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let alg = match jwk.common.key_algorithm.map(|a| a.to_string()).as_deref() {
                Some("RS256") => Algorithm::RS256,
                Some("ES256") => Algorithm::ES256,
                // No `alg`: by key type (RSA → RS256, EC P-256 → ES256).
                None => match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                },
                Some(_) => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                by_kid.insert(jwk.common.key_id.clone().unwrap_or_default(), (alg, key));
            }
        }
        metrics::counter!("mcp_oauth_jwks_fetches_total").increment(1);
        tracing::info!(keys = by_kid.len(), %jwks_uri, "OAuth issuer keys fetched");
        let mut keys = self.keys.write().await;
        keys.jwks_uri = Some(jwks_uri);
        keys.by_kid = by_kid;
        *fetched = Some(Instant::now());
        Ok(())
    }

    /// The issuer's `jwks_uri`, from its OpenID or RFC 8414 metadata.
    async fn discover(&self) -> Result<String, AuthError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let (origin, path) = match issuer.find("://").map(|i| i + 3) {
            Some(i) => match issuer[i..].find('/') {
                Some(j) => issuer.split_at(i + j),
                None => (issuer, ""),
            },
            None => (issuer, ""),
        };
        let candidates = [
            format!("{issuer}/.well-known/openid-configuration"),
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
        ];
        let mut last = String::new();
        for url in candidates {
            match self.get_json::<Value>(&url).await {
                Ok(doc) => {
                    if let Some(uri) = doc["jwks_uri"].as_str() {
                        return Ok(uri.to_owned());
                    }
                    last = format!("{url} names no jwks_uri");
                }
                Err(AuthError::IssuerUnavailable(e)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(AuthError::IssuerUnavailable(last))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, AuthError> {
        let unavailable = |e: String| AuthError::IssuerUnavailable(format!("{url}: {e}"));
        let r = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !r.status().is_success() {
            return Err(unavailable(format!("HTTP {}", r.status())));
        }
        r.json().await.map_err(|e| unavailable(e.to_string()))
    }

    /// The identity the verified `claims` name.
    fn identity(&self, claims: &Value, now: i64) -> Result<Identity, AuthError> {
        let c = &self.config;
        let agent = claims[&c.agent_claim]
            .as_str()
            .ok_or(AuthError::Claims("the agent claim is missing"))?;
        let agent = AgentId::parse(agent)
            .map_err(|_| AuthError::Claims("the agent claim is not a valid id"))?;
        let role = roles(&claims[&c.role_claim])
            .iter()
            .filter_map(|v| {
                parse_role(v).or_else(|| c.role_map.iter().find(|(k, _)| k == v).map(|(_, r)| *r))
            })
            .max_by_key(|r| match r {
                Role::Admin => 2,
                Role::Agent => 1,
                Role::Observer => 0,
            })
            .unwrap_or(Role::Agent);
        let tasks: Option<Vec<String>> = match &claims[&c.tasks_claim] {
            Value::Null => None,
            v => {
                let list = roles(v);
                (!list.iter().any(|t| t == "*")).then_some(list)
            }
        };
        if tasks.iter().flatten().any(|t| TaskId::parse(t).is_err()) {
            return Err(AuthError::Claims(
                "the tasks claim must hold task ids or \"*\"",
            ));
        }
        let exp = claims["exp"].as_i64().unwrap_or(now);
        Ok(Identity {
            agent,
            role,
            tasks,
            valid_until: exp.saturating_add(LEEWAY_SECS),
        })
    }
}

/// A claim's values: a list of strings, or one string of space-separated values.
fn roles(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Why `jsonwebtoken` refused a token, as the gateway says it.
fn refusal(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidIssuer => AuthError::Claims("iss is not the configured issuer"),
        ErrorKind::InvalidAudience => AuthError::Claims("aud is not this gateway"),
        ErrorKind::MissingRequiredClaim(_) => AuthError::Claims("exp, iss and aud are required"),
        _ => AuthError::Malformed,
    }
}

/// The Protected Resource Metadata routes (RFC 9728), served without a token.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(METADATA_PATH, get(metadata))
        .route(&format!("{METADATA_PATH}/mcp"), get(metadata))
}

async fn metadata(State(state): State<AppState>) -> Response {
    match &state.auth.oauth {
        Some(oauth) => axum::Json(oauth.config.metadata()).into_response(),
        None => crate::error::ApiError::new(
            mcp_api::ErrorCode::NotFound,
            "no authorization server is configured: this gateway takes static bearer tokens \
             ('Authorization: Bearer <token>', made by `mcp-gateway token`)",
        )
        .into_response(),
    }
}
