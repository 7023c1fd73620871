//! Bearer tokens: HS256 JWTs signed with the deployment's `JWT_SECRET`. (Tokens of the
//! operator's own authorization server, RS256/ES256, are `crate::oauth`'s; `Tokens` picks one
//! by the token's algorithm.)
//!
//! A token names its agent (`agent_id`, or `sub`), expires (`exp`, required), and may carry
//! `tasks` (a list of task ids, or `"*"`) and `role` (`agent`, `observer`, `admin`; default
//! `agent`). Tokens of the original gateway's scheme carry only `agent_id` and `exp`: without
//! a `tasks` claim a token reaches every task (with its role, so `agent` by default, never
//! admin), unless `ACCEPT_LEGACY_TOKENS=false`, which refuses such tokens.
//!
//! Verification is strict: the header must say `HS256` (never `none` or another algorithm),
//! the signature is compared in constant time (`hmac`'s `verify_slice`), `exp` and `nbf` are
//! checked with [`LEEWAY_SECS`] of clock skew, and every id is validated like a request's.
//! [`Authenticator::mint`] makes tokens (`mcp-gateway token`, tests).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use mcp_domain::{AgentId, Role, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// Longest token accepted, in bytes (anything longer is malformed).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest secret the gateway starts with.
pub const MIN_SECRET_BYTES: usize = 16;

/// A secret that never appears in `Debug` output (the configuration is debug-printable).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for signing and for length checks; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The `tasks` claim: every task, or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskScope {
    /// `"*"` (any other single string names one task).
    One(String),
    /// Task ids (a `"*"` among them: every task).
    List(Vec<String>),
}

/// A token's claims, as signed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// The agent the token acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The agent, when `agent_id` is absent (the standard JWT subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<Value>,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<Value>,
    /// When it was issued, seconds since the epoch (informative; not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The tasks it may touch; absent (a legacy token): every task, unless legacy tokens are
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskScope>,
    /// `agent`, `observer` or `admin`; absent: `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The agent it acts as.
    pub agent: AgentId,
    /// What it may do.
    pub role: Role,
    /// The tasks it may touch; `None`: every task.
    pub tasks: Option<Vec<String>>,
    /// The last second (since the epoch) the token is accepted: `exp` plus [`LEEWAY_SECS`].
    /// Streams opened with it end when it passes (`Identity::remaining`).
    pub valid_until: i64,
}

impl Identity {
    /// How long from `now_ms` (milliseconds since the epoch) the token is still accepted: to
    /// the end of its `valid_until` second, after which every request with it gets 401.
    pub fn remaining(&self, now_ms: i64) -> Duration {
        let end_ms = self.valid_until.saturating_add(1).saturating_mul(1000);
        Duration::from_millis(u64::try_from(end_ms.saturating_sub(now_ms)).unwrap_or(0))
    }
}

/// Why a token was refused. [`AuthError::reason`] labels `mcp_auth_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token on a request that needs one.
    #[error("authentication required: send 'Authorization: Bearer <token>'")]
    Missing,
    /// Not a JWT, too long, or signed with an algorithm the verifier does not take.
    #[error("the bearer token is malformed")]
    Malformed,
    /// The signature does not match.
    #[error("the token's signature is not valid")]
    Signature,
    /// Past `exp` (and the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (less the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A claim is missing or invalid; the text says which.
    #[error("the token's claims are not acceptable: {0}")]
    Claims(&'static str),
    /// The authorization server's metadata or keys could not be fetched (a backend outage).
    #[error("the authorization server is unreachable: {0}")]
    IssuerUnavailable(String),
}

impl AuthError {
    /// The `reason` label of `mcp_auth_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Claims(_) => "claims",
            AuthError::IssuerUnavailable(_) => "issuer_unavailable",
        }
    }
}

/// The `role` claim naming `role`.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Agent => "agent",
        Role::Observer => "observer",
        Role::Admin => "admin",
    }
}

/// The role a `role` claim (or `mcp-gateway token --role`) names; `None` for an unknown name.
pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "agent" => Some(Role::Agent),
        "observer" => Some(Role::Observer),
        "admin" => Some(Role::Admin),
        _ => None,
    }
}

/// Parses a lifetime: `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a lifetime like 90s, 15m, 1h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

/// A claim holding a time: an integer or a float number of seconds.
fn time_claim(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Authenticator {
    key: Secret,
    accept_legacy: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("accept_legacy", &self.accept_legacy)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Signs and verifies with `key`; `accept_legacy`: a token without a `tasks` claim
    /// reaches every task (`ACCEPT_LEGACY_TOKENS`) rather than being refused.
    pub fn new(key: Secret, accept_legacy: bool) -> Authenticator {
        Authenticator { key, accept_legacy }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; this cannot fail.
        HmacSha256::new_from_slice(self.key.expose().as_bytes()).expect("HMAC accepts any key")
    }

    /// Signs `claims` as an HS256 JWT.
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Claims for `agent` on `tasks` (`None`: the claim is left out) with `role`, valid for
    /// `ttl` from now.
    pub fn claims_for(
        agent: &str,
        tasks: Option<Vec<String>>,
        role: Role,
        ttl: Duration,
    ) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            agent_id: Some(agent.to_owned()),
            exp: Some(Value::from(now + ttl.as_secs() as i64)),
            iat: Some(now),
            tasks: tasks.map(TaskScope::List),
            role: Some(role_name(role).to_owned()),
            ..Claims::default()
        }
    }

    /// Verifies `token` at time `now` (seconds since the epoch) and says who it names.
    pub fn verify(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            // Never `none`, never an algorithm the caller picks.
            return Err(AuthError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| AuthError::Signature)?;
        // Only a correctly signed payload is parsed.
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        let exp = claims
            .exp
            .as_ref()
            .map(|v| time_claim(v).ok_or(AuthError::Claims("exp must be a number")))
            .transpose()?
            .ok_or(AuthError::Claims("exp is required"))?;
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf.as_ref() {
            let nbf = time_claim(nbf).ok_or(AuthError::Claims("nbf must be a number"))?;
            if now < nbf.saturating_sub(LEEWAY_SECS) {
                return Err(AuthError::NotYetValid);
            }
        }
        let agent = claims
            .agent_id
            .as_deref()
            .or(claims.sub.as_deref())
            .ok_or(AuthError::Claims("agent_id (or sub) is required"))?;
        let agent =
            AgentId::parse(agent).map_err(|_| AuthError::Claims("agent_id is not a valid id"))?;
        let role = match claims.role.as_deref() {
            None => Role::Agent,
            Some(r) => {
                parse_role(r).ok_or(AuthError::Claims("role must be agent, observer or admin"))?
            }
        };
        let tasks = match claims.tasks {
            None if self.accept_legacy => None,
            None => return Err(AuthError::Claims("tasks is required")),
            Some(TaskScope::One(t)) if t == "*" => None,
            Some(TaskScope::One(t)) => Some(vec![t]),
            Some(TaskScope::List(list)) if list.iter().any(|t| t == "*") => None,
            Some(TaskScope::List(list)) => Some(list),
        };
        if tasks.iter().flatten().any(|t| TaskId::parse(t).is_err()) {
            return Err(AuthError::Claims("tasks must be task ids or \"*\""));
        }
        Ok(Identity {
            agent,
            role,
            tasks,
            valid_until: exp.saturating_add(LEEWAY_SECS),
        })
    }
}

/// Every kind of token the gateway accepts: the static HS256 ones (`JWT_SECRET`) and those of
/// the operator's authorization server (`OAUTH_ISSUER`), either or both.
#[derive(Debug, Default)]
pub struct Tokens {
    /// The HS256 verifier of `JWT_SECRET`, if set.
    pub static_key: Option<Authenticator>,
    /// The authorization server's verifier, if `OAUTH_ISSUER` is set.
    pub oauth: Option<std::sync::Arc<crate::oauth::OAuth>>,
}

impl Tokens {
    /// Whether any token is required (authentication on).
    pub fn enabled(&self) -> bool {
        self.static_key.is_some() || self.oauth.is_some()
    }

    /// Verifies `token`. With both kinds configured, its header's algorithm picks the
    /// verifier (HS256 → the static secret, anything else → the authorization server); with
    /// one, that one decides alone (no extra parse of the header on the common path).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        match (&self.static_key, &self.oauth) {
            (Some(key), None) => key.verify(token, now),
            (None, Some(oauth)) => oauth.verify(token, now).await,
            (Some(key), Some(oauth)) => {
                let hs256 = token
                    .split('.')
                    .next()
                    .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|h| h.get("alg").and_then(Value::as_str) == Some("HS256"));
                if hs256 {
                    key.verify(token, now)
                } else {
                    oauth.verify(token, now).await
                }
            }
            (None, None) => Err(AuthError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(Secret("0123456789abcdef0123456789abcdef".into()), true)
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn minted_tokens_verify_with_their_scope_and_role() {
        let a = auth();
        let claims = Authenticator::claims_for(
            "coder",
            Some(vec!["t1".into()]),
            Role::Observer,
            Duration::from_secs(60),
        );
        let id = a.verify(&a.mint(&claims), now()).unwrap();
        assert_eq!(id.agent.as_str(), "coder");
        assert_eq!(id.role, Role::Observer);
        assert_eq!(id.tasks, Some(vec!["t1".to_owned()]));
    }

    #[test]
    fn legacy_tokens_reach_every_task_as_agents_unless_refused() {
        let a = auth();
        let legacy = Claims {
            agent_id: Some("old".into()),
            exp: Some(Value::from(now() + 60)),
            ..Claims::default()
        };
        let id = a.verify(&a.mint(&legacy), now()).unwrap();
        assert_eq!((id.role, id.tasks), (Role::Agent, None));
        let strict = Authenticator::new(a.key.clone(), false);
        assert_eq!(
            strict.verify(&a.mint(&legacy), now()).unwrap_err(),
            AuthError::Claims("tasks is required")
        );
        // `sub` names the agent when `agent_id` is absent; "*" is every task.
        let sub = Claims {
            sub: Some("s".into()),
            exp: Some(Value::from(now() + 60)),
            tasks: Some(TaskScope::One("*".into())),
            ..Claims::default()
        };
        let id = a.verify(&a.mint(&sub), now()).unwrap();
        assert_eq!((id.agent.as_str(), id.tasks), ("s", None));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let a = auth();
        let good = Authenticator::claims_for("x", None, Role::Agent, Duration::from_secs(60));
        let token = a.mint(&good);
        let other = Authenticator::new(Secret("another secret, long enough!!".into()), true);
        assert_eq!(
            other.verify(&token, now()).unwrap_err(),
            AuthError::Signature
        );
        assert_eq!(
            a.verify(&token, now() + 3600).unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(a.verify("abc", now()).unwrap_err(), AuthError::Malformed);
        assert_eq!(
            a.verify("a.b.c.d", now()).unwrap_err(),
            AuthError::Malformed
        );
        // alg "none" with an empty signature.
        let (h, rest) = token.split_once('.').unwrap();
        let _ = h;
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = rest.split('.').next().unwrap();
        assert_eq!(
            a.verify(&format!("{none_header}.{payload}."), now())
                .unwrap_err(),
            AuthError::Malformed
        );
        // A tampered payload breaks the signature.
        let admin = URL_SAFE_NO_PAD.encode(br#"{"agent_id":"x","exp":9999999999,"role":"admin"}"#);
        let sig = token.rsplit('.').next().unwrap();
        assert_eq!(
            a.verify(&format!("{h}.{admin}.{sig}"), now()).unwrap_err(),
            AuthError::Signature
        );
        let no_exp = Claims {
            agent_id: Some("x".into()),
            ..Claims::default()
        };
        assert_eq!(
            a.verify(&a.mint(&no_exp), now()).unwrap_err(),
            AuthError::Claims("exp is required")
        );
        let bad_role = Claims {
            role: Some("root".into()),
            ..good.clone()
        };
        assert!(matches!(
            a.verify(&a.mint(&bad_role), now()).unwrap_err(),
            AuthError::Claims(_)
        ));
        let bad_task = Claims {
            tasks: Some(TaskScope::List(vec!["../x".into()])),
            ..good
        };
        assert!(matches!(
            a.verify(&a.mint(&bad_task), now()).unwrap_err(),
            AuthError::Claims(_)
        ));
    }

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            format!("{:?}", Secret("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
