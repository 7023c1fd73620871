//! `TestIssuer`: a real OAuth 2.0 / OpenID Connect authorization server on loopback, for the
//! tests of the gateway's OAuth door. It serves its metadata
//! (`/.well-known/openid-configuration`, with the fields OpenID Connect Discovery requires),
//! its keys (`/jwks`: an RS256 and an ES256 key, more
//! after [`TestIssuer::rotate`]) and a token endpoint for the `client_credentials` grant
//! (`/token`: `client_id` + `client_secret` [`CLIENT_SECRET`], in the form body or HTTP Basic;
//! the agent is the client id), and counts the key fetches. Its signing keys are fixed test
//! keys (`src/oauth_keys/`).

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The secret of every client of the test issuer.
pub const CLIENT_SECRET: &str = "test-client-secret";

const RSA_1: &str = include_str!("oauth_keys/rsa-1.pem");
const EC_1: &str = include_str!("oauth_keys/ec-1.pem");
const EC_2: &str = include_str!("oauth_keys/ec-2.pem");

/// A signing key of the issuer.
#[derive(Clone)]
struct Key {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
}

impl Key {
    fn new(kid: &'static str, alg: Algorithm, pem: &str) -> Key {
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .expect("a test key");
        Key { kid, alg, encoding }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }
}

struct Inner {
    url: String,
    /// The audience the token endpoint puts in its tokens.
    audience: Mutex<String>,
    /// The keys published (and usable for signing), newest last.
    keys: Mutex<Vec<Key>>,
    jwks_fetches: AtomicUsize,
    /// Extra claims the token endpoint adds, by client id.
    client_claims: Mutex<HashMap<String, Value>>,
}

/// See the module documentation.
pub struct TestIssuer {
    inner: Arc<Inner>,
    shutdown: CancellationToken,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestIssuer {
    /// Starts an issuer on an ephemeral loopback port; its tokens name `audience`.
    pub async fn start(audience: &str) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Inner {
            url,
            audience: Mutex::new(audience.to_owned()),
            keys: Mutex::new(vec![
                Key::new("rsa-1", Algorithm::RS256, RSA_1),
                Key::new("ec-1", Algorithm::ES256, EC_1),
            ]),
            jwks_fetches: AtomicUsize::new(0),
            client_claims: Mutex::default(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(metadata))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/authorize", get(authorize))
            .with_state(inner.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        TestIssuer { inner, shutdown }
    }

    /// The issuer URL (its tokens' `iss`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// How many times its keys were fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Sets the audience of the tokens the token endpoint issues.
    pub fn set_audience(&self, audience: &str) {
        *self.inner.audience.lock().unwrap() = audience.to_owned();
    }

    /// Claims the token endpoint adds to `client_id`'s tokens (`tasks`, `role`, …).
    pub fn set_client_claims(&self, client_id: &str, claims: Value) {
        self.inner
            .client_claims
            .lock()
            .unwrap()
            .insert(client_id.to_owned(), claims);
    }

    /// Publishes a new ES256 key, `ec-2` (a key rotation); tokens of `kid` "ec-2" then verify.
    pub fn rotate(&self) {
        self.inner
            .keys
            .lock()
            .unwrap()
            .push(Key::new("ec-2", Algorithm::ES256, EC_2));
    }

    /// A token signed with key `kid` (`rsa-1`, `ec-1`, or `ec-2` even before [`rotate`]
    /// publishes it) carrying exactly `claims`.
    ///
    /// [`rotate`]: TestIssuer::rotate
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let key = match kid {
            "rsa-1" => Key::new("rsa-1", Algorithm::RS256, RSA_1),
            "ec-1" => Key::new("ec-1", Algorithm::ES256, EC_1),
            "ec-2" => Key::new("ec-2", Algorithm::ES256, EC_2),
            other => panic!("no test key {other}"),
        };
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("signed")
    }

    /// The usual claims: this issuer, `aud`, agent `sub`, valid for an hour, plus `extra`.
    pub fn claims(&self, aud: &str, sub: &str, extra: Value) -> Value {
        let now = chrono_now();
        let mut claims = json!({
            "iss": self.inner.url, "aud": aud, "sub": sub,
            "iat": now, "nbf": now, "exp": now + 3600,
        });
        if let (Some(c), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        claims
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn metadata(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let url = &inner.url;
    Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "token_endpoint": format!("{url}/token"),
        // Required by OpenID Connect Discovery (SDKs validate them), though this issuer
        // grants client credentials only (its `/authorize` says so).
        "authorization_endpoint": format!("{url}/authorize"),
        "subject_types_supported": ["public"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["token"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

/// No authorization-code flow here: a client that tries it is told so.
async fn authorize() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "unsupported_response_type",
                    "error_description": "this test issuer grants client_credentials only"})),
    )
        .into_response()
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Json<JwkSet> {
    inner.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = inner.keys.lock().unwrap().iter().map(Key::jwk).collect();
    Json(JwkSet { keys })
}

/// `client_credentials`: a token (signed with the newest key) for the client.
async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (client, secret) = match basic {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    if client.is_empty() || secret != CLIENT_SECRET {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let key = inner.keys.lock().unwrap().last().cloned().expect("a key");
    let audience = form
        .get("resource")
        .cloned()
        .unwrap_or_else(|| inner.audience.lock().unwrap().clone());
    let now = chrono_now();
    let mut claims = json!({
        "iss": inner.url, "aud": audience, "sub": client,
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    if let Some(scope) = form.get("scope") {
        claims["scope"] = json!(scope);
    }
    if let (Some(c), Some(Value::Object(extra))) = (
        claims.as_object_mut(),
        inner.client_claims.lock().unwrap().get(&client).cloned(),
    ) {
        c.extend(extra);
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("signed");
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})).into_response()
}
