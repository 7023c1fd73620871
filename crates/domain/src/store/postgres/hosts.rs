//! `DATABASE_URL` with several hosts, as libpq takes it (issue #20):
//! `postgres://user@h1:5432,h2:5433/db?target_session_attrs=read-write`.
//!
//! sqlx connects to one host, so the URL is parsed here into one set of connect options per
//! host, and [`Failover`] keeps the pool pointed at the right one:
//!
//! * `target_session_attrs=read-write` (or `primary`): the host that accepts writes
//!   (`pg_is_in_recovery()` is false). Every new pooled connection is checked (`after_connect`);
//!   one that reached a standby is refused, so a write never runs on it, and the watcher looks
//!   for the primary at once. `any` (libpq's default): the first host that answers.
//! * **the watcher** (one task per pool) holds its own connection to the current host and
//!   asks it once a second whether it is still the right one. When it is not (the connection
//!   broke, the host is down, it became a standby), it tries the hosts in turn, four times a
//!   second, from the current one on, and points the pool at the first that fits
//!   (`Pool::set_connect_options`). The pool's own connection attempts re-read the options on
//!   each retry, so a request waiting for a connection during a switchover gets one to the new
//!   primary as soon as it is found (or 503 with `Retry-After` once its acquire timeout runs
//!   out). The `LISTEN` connection of the sync loop comes from the pool, so it follows too.
//!
//! A URL with one host and no `target_session_attrs` is passed to sqlx unchanged.

use crate::error::{DomainError, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// What a connection must be to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any host that answers (libpq's `any`).
    Any,
    /// A host that accepts writes (libpq's `read-write` and `primary`).
    ReadWrite,
}

/// A parsed `DATABASE_URL`: one set of connect options per host, in the URL's order.
#[derive(Debug, Clone)]
pub struct PgTargets {
    /// Each host as written in the URL, with its connect options.
    pub(crate) hosts: Vec<(String, PgConnectOptions)>,
    /// What a host must accept to be used (libpq's `target_session_attrs`).
    pub(crate) attrs: SessionAttrs,
}

impl PgTargets {
    /// Whether the URL needs [`Failover`] (several hosts, or a session attribute to check).
    pub fn needs_failover(&self) -> bool {
        self.hosts.len() > 1 || self.attrs == SessionAttrs::ReadWrite
    }
}

fn invalid(why: impl std::fmt::Display) -> DomainError {
    DomainError::InvalidArgument(format!("DATABASE_URL: {why}"))
}

/// Parses `url`: `postgres[ql]://[user[:password]@]host[:port][,host[:port]…][/db][?params]`.
/// A host is a name, an IPv4 address or a bracketed IPv6 address; a missing port is 5432.
pub fn parse(url: &str) -> Result<PgTargets> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("not a postgres:// URL"))?;
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(invalid(format!("unknown scheme {scheme:?}")));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostlist) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut attrs = SessionAttrs::Any;
    let mut params = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => {
                attrs = match value {
                    "any" => SessionAttrs::Any,
                    "read-write" | "primary" => SessionAttrs::ReadWrite,
                    other => {
                        return Err(invalid(format!(
                            "target_session_attrs={other} is not supported (the gateway \
                             writes: use read-write, primary or any)"
                        )));
                    }
                };
            }
            _ => params.push(pair),
        }
    }
    let mut hosts = Vec::new();
    for host in hostlist.split(',') {
        let (name, port) = split_host(host)?;
        let mut single = format!("{scheme}://");
        if let Some(u) = userinfo {
            single.push_str(u);
            single.push('@');
        }
        single.push_str(&name);
        if let Some(p) = port {
            single.push_str(&format!(":{p}"));
        }
        single.push_str(path);
        if !params.is_empty() {
            single.push('?');
            single.push_str(&params.join("&"));
        }
        let options = PgConnectOptions::from_str(&single).map_err(invalid)?;
        let label = format!("{name}:{}", port.unwrap_or(options.get_port()));
        hosts.push((label, options));
    }
    Ok(PgTargets { hosts, attrs })
}

/// `host[:port]` or `[v6]:port`.
fn split_host(host: &str) -> Result<(String, Option<u16>)> {
    if host.is_empty() {
        return Err(invalid("an empty host in the host list"));
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(format!("unclosed '[' in {host:?}")))?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p)),
            None => (host.to_owned(), None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| invalid(format!("bad port in {host:?}")))
        })
        .transpose()?;
    Ok((name, port))
}

/// How often the watcher asks the current host whether it still fits.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often it tries the hosts while none fits.
const SEARCH_EVERY: Duration = Duration::from_millis(250);
/// How long one host may take to connect and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps a pool pointed at the host `DATABASE_URL` asks for (module documentation).
pub struct Failover {
    targets: PgTargets,
    current: AtomicUsize,
    /// Rung when a pooled connection reached a host that does not fit.
    kick: Notify,
}

impl Failover {
    /// A watcher over these hosts, starting with the first.
    pub(crate) fn new(targets: PgTargets) -> Arc<Failover> {
        Arc::new(Failover {
            targets,
            current: AtomicUsize::new(0),
            kick: Notify::new(),
        })
    }

    /// The connect options of the host the pool uses now.
    pub fn current_options(&self) -> PgConnectOptions {
        self.targets.hosts[self.current.load(Ordering::Relaxed)]
            .1
            .clone()
    }

    /// The check of a new pooled connection: refused (and the watcher rung) when it must be
    /// read-write and reached a standby.
    pub async fn admit(&self, conn: &mut PgConnection) -> std::result::Result<(), sqlx::Error> {
        if self.targets.attrs == SessionAttrs::Any {
            return Ok(());
        }
        if is_standby(conn).await? {
            self.kick.notify_one();
            return Err(sqlx::Error::Configuration(
                "DATABASE_URL asks for a read-write host and this one is a standby".into(),
            ));
        }
        Ok(())
    }

    /// The first host from the current one on that fits, with a connection to it.
    async fn find(&self) -> Option<(usize, PgConnection)> {
        let n = self.targets.hosts.len();
        let start = self.current.load(Ordering::Relaxed);
        for i in (0..n).map(|k| (start + k) % n) {
            let options = &self.targets.hosts[i].1;
            let probe = async {
                let mut conn = options.connect().await?;
                if self.targets.attrs == SessionAttrs::ReadWrite && is_standby(&mut conn).await? {
                    return Ok::<_, sqlx::Error>(None);
                }
                Ok(Some(conn))
            };
            if let Ok(Ok(Some(conn))) = tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                return Some((i, conn));
            }
        }
        None
    }

    /// A connection to the first host that fits (from the current one on), if any answers.
    pub async fn first_fitting(&self) -> Option<PgConnection> {
        self.find().await.map(|(_, c)| c)
    }

    /// Points `pool` at the host that fits now, if one does; its index.
    pub async fn point(&self, pool: &PgPool) -> Option<(usize, PgConnection)> {
        let (i, conn) = self.find().await?;
        let before = self.current.swap(i, Ordering::Relaxed);
        if before != i {
            pool.set_connect_options(self.targets.hosts[i].1.clone());
            tracing::warn!(
                from = %self.targets.hosts[before].0,
                to = %self.targets.hosts[i].0,
                "Postgres: the pool now connects to another host of DATABASE_URL"
            );
        }
        Some((i, conn))
    }
}

async fn is_standby(conn: &mut PgConnection) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(conn)
        .await
}

/// The watcher: runs until the last handle of `failover` is dropped.
pub async fn watch(failover: Weak<Failover>, pool: PgPool) {
    let mut conn: Option<PgConnection> = None;
    loop {
        let Some(f) = failover.upgrade() else {
            return;
        };
        let fits = match conn.as_mut() {
            Some(c) => {
                let check = async {
                    match f.targets.attrs {
                        SessionAttrs::ReadWrite => is_standby(c).await.map(|standby| !standby),
                        SessionAttrs::Any => c.ping().await.map(|()| true),
                    }
                };
                matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, check).await,
                    Ok(Ok(true))
                )
            }
            None => false,
        };
        if !fits {
            conn = f.point(&pool).await.map(|(_, c)| c);
        }
        let wait = if conn.is_some() {
            CHECK_EVERY
        } else {
            SEARCH_EVERY
        };
        let kicked = async { f.kick.notified().await };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = kicked => {
                // A pooled connection found a host that does not fit: check now.
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> Vec<(String, u16, Option<String>)> {
        parse(url)
            .unwrap()
            .hosts
            .into_iter()
            .map(|(label, o)| (label, o.get_port(), o.get_database().map(str::to_owned)))
            .collect()
    }

    #[test]
    fn a_host_list_is_one_set_of_options_per_host() {
        let t = parse("postgres://u:p@h1:5433,h2,[::1]:5435/db?target_session_attrs=read-write&sslmode=disable")
            .unwrap();
        assert_eq!(t.attrs, SessionAttrs::ReadWrite);
        assert!(t.needs_failover());
        assert_eq!(
            hosts("postgres://u:p@h1:5433,h2,[::1]:5435/db?target_session_attrs=primary"),
            vec![
                ("h1:5433".to_owned(), 5433, Some("db".to_owned())),
                ("h2:5432".to_owned(), 5432, Some("db".to_owned())),
                ("[::1]:5435".to_owned(), 5435, Some("db".to_owned())),
            ]
        );
        assert_eq!(t.hosts[0].1.get_username(), "u");
    }

    #[test]
    fn one_host_without_attributes_needs_nothing_more() {
        let t = parse("postgresql://postgres@127.0.0.1:5432/postgres").unwrap();
        assert!(!t.needs_failover());
        assert_eq!(t.attrs, SessionAttrs::Any);
        let t = parse("postgres://h/db?target_session_attrs=any").unwrap();
        assert!(!t.needs_failover());
    }

    #[test]
    fn what_cannot_be_followed_is_refused() {
        for bad in [
            "mysql://h/db",
            "postgres://h1,,h2/db",
            "postgres://h1:nope/db",
            "postgres://h1/db?target_session_attrs=standby",
            "postgres://[::1/db",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(matches!(e, DomainError::InvalidArgument(_)), "{bad}: {e:?}");
        }
    }
}
