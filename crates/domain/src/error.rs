//! The domain's one error type. A variant exists where a caller (or the wire) distinguishes
//! it; each maps to one stable [`ErrorCode`]. The domain knows no HTTP status: the gateway
//! maps codes to statuses through the table in `mcp-api`.
//!
//! Backend failures are classified at the store boundary: a lost connection, a timeout or a
//! full Redis (`OOM command not allowed`, see [`is_out_of_memory`]) is
//! [`DomainError::Unavailable`] (retry later), anything else is [`DomainError::Internal`].

use chrono::{DateTime, Utc};
use mcp_api::ErrorCode;
use serde_json::{Map, Value, json};

/// Why an operation failed. Each variant maps to one [`ErrorCode`] ([`DomainError::code`]),
/// and through `mcp-api`'s table to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The request asks for something no state could grant: a malformed id, a value out of
    /// range, a field missing (`invalid_argument`, 400).
    #[error("{0}")]
    InvalidArgument(String),
    /// A file path that `mcp_api::names::normalise_path` refuses (`invalid_path`, 400).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The actor's role or task scope does not allow this (`forbidden`, 403).
    #[error("{0}")]
    Forbidden(String),
    /// No task with this id (`task_not_found`, 404).
    #[error("task '{0}' not found")]
    TaskNotFound(String),
    /// No live file at this path: never written, or deleted (`file_not_found`, 404).
    #[error("file '{0}' not found")]
    FileNotFound(String),
    /// The file has revisions, but none at `version` (`revision_not_found`, 404).
    #[error("'{path}' has no version {version} (its versions are 1 to {latest})")]
    RevisionNotFound {
        /// The file's normalised path.
        path: String,
        /// The version asked for.
        version: i64,
        /// The file's newest version.
        latest: i64,
    },
    /// A version stored (before revisions kept every version's content) as an edit's diff
    /// only, behind more such diffs than one read replays (`too_large`, 413).
    #[error(
        "version {version} is stored as a diff behind more than {limit} diffs since the \
         file's last full copy, more than one read replays"
    )]
    ReplayTooLong {
        /// The version asked for.
        version: i64,
        /// How many diffs one read replays at most.
        limit: usize,
    },
    /// No agent with this id (`agent_not_found`, 404).
    #[error("agent '{0}' not found")]
    AgentNotFound(String),
    /// No message with this id that the caller may read (`message_not_found`, 404).
    #[error("no message {0} in your inbox")]
    MessageNotFound(i64),
    /// `create_task` with the id of an existing task (`already_exists`, 409).
    #[error("task '{0}' already exists")]
    TaskExists(String),
    /// A change's `expected_version` is not the file's current version
    /// (`version_conflict`, 409).
    #[error(
        "version conflict: expected version {}, current version {}",
        show(expected),
        show(current)
    )]
    VersionConflict {
        /// The version the change expected, `None` when it expected no file.
        expected: Option<i64>,
        /// The file's current version, `None` when it does not exist.
        current: Option<i64>,
    },
    /// Another agent's lease covers the path: a claim or a change is refused
    /// (`locked`, 409).
    #[error("{}", locked_detail(self))]
    Locked {
        /// The path the caller asked for.
        path: String,
        /// The agent that holds the conflicting lease.
        holder: String,
        /// When the conflicting lease ends; `None` while the path is free but being handed
        /// to the first of its waiters (then `holder` names that waiter).
        expires_at: Option<DateTime<Utc>>,
        /// The conflicting lease's path when it is not `path`: a directory lease above it,
        /// or (for a directory) a lease beneath it.
        lease_path: Option<String>,
        /// How many agents wait for the path (known for a claim).
        waiters: Option<u64>,
        /// The caller's place in the queue when its wait ran out (1: next).
        queue_position: Option<u64>,
    },
    /// A change's fence is older than the last fence the file was written under
    /// (the fence rule, part 2; `stale_fence`, 409).
    #[error("stale fence {fence}: the file has seen fence {last_fence}")]
    StaleFence {
        /// The fence the change presented.
        fence: i64,
        /// The newest fence the file has been written under.
        last_fence: i64,
    },
    /// A presented fence that is not the fence of the writer's own live lease on the path
    /// (the fence rule, part 1): forged, another path's or agent's, expired or released
    /// (`stale_fence`, 409).
    #[error("{}", fence_not_held(*fence, *lease_fence))]
    FenceNotHeld {
        /// The fence the change presented.
        fence: i64,
        /// The fence of the writer's live lease on the path, `None` when it holds none.
        lease_fence: Option<i64>,
    },
    /// A change with neither a fence nor `expected_version` of a file that has been written
    /// under a lease, while nobody holds it (the fence rule, part 3; `lease_required`, 409).
    #[error(
        "'{path}' has been written under a lease (fence {last_fence}) and nobody holds it now: \
         claim the path, or write with expected_version"
    )]
    LeaseRequired {
        /// The file's normalised path.
        path: String,
        /// The newest fence the file has been written under.
        last_fence: i64,
    },
    /// `renew_file` or `release_file` of a lease the caller does not hold
    /// (`lock_not_held`, 409).
    #[error("lock on '{path}' is not held by {agent}")]
    LockNotHeld {
        /// The lease's path.
        path: String,
        /// The caller.
        agent: String,
        /// The current holder, if another agent holds it.
        holder: Option<String>,
    },
    /// `file_edit`'s `old_string` is not in the file (`edit_no_match`, 409).
    #[error("old_string does not occur in the file")]
    EditNoMatch,
    /// `file_edit`'s `old_string` occurs more than once and `replace_all` is off
    /// (`edit_ambiguous`, 409).
    #[error("old_string occurs {count} times; give more context or set replace_all")]
    EditAmbiguous {
        /// How many times it occurs.
        count: usize,
    },
    /// Content, a message or a step over its size limit (`too_large`, 413).
    #[error("{what} is {actual} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large, for the sentence (`file`, `message body`, `step`).
        what: &'static str,
        /// Its size in bytes.
        actual: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A change would take the task past its file-count or byte quota
    /// (`quota_exceeded`, 413).
    #[error("the task's {what} quota of {limit} would be exceeded")]
    QuotaExceeded {
        /// `files` or `bytes`.
        what: String,
        /// The quota.
        limit: i64,
    },
    /// A store cannot be reached: a lost connection, a timeout, a full Redis; the caller may
    /// retry (`unavailable`, 503).
    #[error("{backend} is unavailable")]
    Unavailable {
        /// Which store (`redis`, `postgres`, `sqlite`), for the sentence.
        backend: &'static str,
        /// Kept for the log line; never sent to a client.
        cause: String,
    },
    /// Anything else, a bug or a backend answer nobody expects; the text is logged, never
    /// sent (`internal`, 500).
    #[error("internal error")]
    Internal(String),
}

/// Why a presented fence was refused, for a sentence.
/// The detail of a `locked` refusal.
fn locked_detail(e: &DomainError) -> String {
    let DomainError::Locked {
        path,
        holder,
        expires_at,
        lease_path,
        waiters,
        queue_position,
    } = e
    else {
        return String::new();
    };
    let mut s = match expires_at {
        Some(at) => format!("'{path}' is locked by {holder} until {at}"),
        None => format!("'{path}' is being handed to {holder}, the first of its waiters"),
    };
    if let Some(lp) = lease_path {
        s.push_str(&format!(" (its lease on '{lp}')"));
    }
    match (queue_position, waiters) {
        (Some(p), Some(n)) => s.push_str(&format!(
            "; your wait ran out at place {p} of {n} in its queue"
        )),
        (None, Some(n)) if *n > 0 => s.push_str(&format!("; {n} agent(s) wait for it")),
        _ => {}
    }
    s
}

fn fence_not_held(fence: i64, lease_fence: Option<i64>) -> String {
    match lease_fence {
        None => format!(
            "stale fence {fence}: no live lease of yours on this path (never granted, expired \
             or released); claim the path again, or write with expected_version"
        ),
        Some(own) => format!(
            "stale fence {fence}: not your lease's fence (your lease on this path has fence {own})"
        ),
    }
}

/// A version for a sentence: the number, or "none" when the file does not exist.
fn show(v: &Option<i64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// The domain's result: [`DomainError`] unless another error is named.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;

impl DomainError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            DomainError::InvalidPath(_) => ErrorCode::InvalidPath,
            DomainError::Forbidden(_) => ErrorCode::Forbidden,
            DomainError::TaskNotFound(_) => ErrorCode::TaskNotFound,
            DomainError::FileNotFound(_) => ErrorCode::FileNotFound,
            DomainError::RevisionNotFound { .. } => ErrorCode::RevisionNotFound,
            DomainError::ReplayTooLong { .. } => ErrorCode::TooLarge,
            DomainError::AgentNotFound(_) => ErrorCode::AgentNotFound,
            DomainError::MessageNotFound(_) => ErrorCode::MessageNotFound,
            DomainError::TaskExists(_) => ErrorCode::AlreadyExists,
            DomainError::VersionConflict { .. } => ErrorCode::VersionConflict,
            DomainError::Locked { .. } => ErrorCode::Locked,
            DomainError::StaleFence { .. } | DomainError::FenceNotHeld { .. } => {
                ErrorCode::StaleFence
            }
            DomainError::LeaseRequired { .. } => ErrorCode::LeaseRequired,
            DomainError::LockNotHeld { .. } => ErrorCode::LockNotHeld,
            DomainError::EditNoMatch => ErrorCode::EditNoMatch,
            DomainError::EditAmbiguous { .. } => ErrorCode::EditAmbiguous,
            DomainError::TooLarge { .. } => ErrorCode::TooLarge,
            DomainError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            DomainError::Unavailable { .. } => ErrorCode::Unavailable,
            DomainError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Context for the error body, beside `detail` and `code`.
    pub fn context(&self) -> Map<String, Value> {
        let v = match self {
            DomainError::VersionConflict { expected, current } => {
                json!({"expected_version": expected, "current_version": current})
            }
            DomainError::Locked {
                path,
                holder,
                expires_at,
                lease_path,
                waiters,
                queue_position,
            } => {
                let mut v = json!({"path": path, "holder": holder, "expires_at": expires_at});
                let extra = [
                    ("lease_path", lease_path.as_ref().map(|p| json!(p))),
                    ("waiters", waiters.map(|n| json!(n))),
                    ("queue_position", queue_position.map(|n| json!(n))),
                ];
                if let Some(m) = v.as_object_mut() {
                    m.extend(
                        extra
                            .into_iter()
                            .filter_map(|(k, x)| Some((k.to_owned(), x?))),
                    );
                }
                v
            }
            DomainError::StaleFence { fence, last_fence } => {
                json!({"fence": fence, "last_fence": last_fence})
            }
            DomainError::FenceNotHeld { fence, lease_fence } => {
                json!({"fence": fence, "lease_fence": lease_fence})
            }
            DomainError::LeaseRequired { path, last_fence } => {
                json!({"path": path, "last_fence": last_fence})
            }
            DomainError::LockNotHeld { holder, .. } => json!({"holder": holder}),
            DomainError::EditAmbiguous { count } => json!({"occurrences": count}),
            DomainError::TooLarge { limit, .. } => json!({"limit": limit}),
            DomainError::RevisionNotFound {
                version, latest, ..
            } => {
                json!({"version": version, "latest_version": latest})
            }
            DomainError::ReplayTooLong { limit, .. } => json!({"limit": limit}),
            DomainError::QuotaExceeded { what, limit } => json!({"quota": what, "limit": limit}),
            DomainError::Unavailable { .. } => json!({"retry_after": 1}),
            _ => json!({}),
        };
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The sentence for the client: the Display text, except for internals.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> DomainError {
        DomainError::Internal(what.to_string())
    }

    /// Text a store cannot keep: a NUL character (Postgres refuses it in text and jsonb; the
    /// SQLite store refuses it too, so both backends answer alike).
    pub(crate) fn nul_text() -> DomainError {
        DomainError::InvalidArgument("text must not contain NUL characters (U+0000)".into())
    }

    /// Classifies a failure of the embedded SQLite store ([`DomainError::from_sqlx`]).
    pub(crate) fn from_sqlite(e: sqlx::Error) -> DomainError {
        DomainError::from_sqlx(SqlBackend::Sqlite, e)
    }

    /// The one classifier of sqlx failures, for both SQL backends. The connection failing
    /// (I/O, TLS, the pool timed out or closed, a crashed worker) and the backend's transient
    /// codes ([`SqlBackend::transient`]) are [`DomainError::Unavailable`] (retry later); text
    /// Postgres cannot store is the caller's input ([`DomainError::nul_text`]); anything else
    /// is [`DomainError::Internal`]. (Constraint violations the caller expects, such as a
    /// duplicate task id, are classified by the store where they can occur.)
    pub(crate) fn from_sqlx(backend: SqlBackend, e: sqlx::Error) -> DomainError {
        let code = match &e {
            sqlx::Error::Database(db) => db.code(),
            _ => None,
        };
        let unavailable = matches!(
            &e,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        ) || code.as_deref().is_some_and(|c| backend.transient(c));
        if unavailable {
            return DomainError::Unavailable {
                backend: backend.name(),
                cause: e.to_string(),
            };
        }
        // 22021 character_not_in_repertoire (a NUL in text), 22P05 untranslatable_character
        // (`\u0000` in jsonb): text Postgres cannot store is the caller's input, refused
        // before anything was written.
        if backend == SqlBackend::Postgres && matches!(code.as_deref(), Some("22021" | "22P05")) {
            return DomainError::nul_text();
        }
        DomainError::Internal(format!("{}: {e}", backend.name()))
    }
}

/// The SQL backend an sqlx error came from ([`DomainError::from_sqlx`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlBackend {
    Postgres,
    Sqlite,
}

impl SqlBackend {
    fn name(self) -> &'static str {
        match self {
            SqlBackend::Postgres => "postgres",
            SqlBackend::Sqlite => "sqlite",
        }
    }

    /// Whether a database error code says "not now" rather than "never": the statement did
    /// not happen and a retry is likely to pass.
    fn transient(self, code: &str) -> bool {
        match self {
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx
            // connection errors; 25006 read_only_sql_transaction (a write reached a standby:
            // the primary moved, and the pool follows it, see `store::postgres::hosts`); 40001
            // serialization_failure and 40P01 deadlock_detected (the transaction was rolled
            // back whole: a retry is safe and likely to pass); 53xxx insufficient resources
            // (too many connections, out of memory or disk).
            SqlBackend::Postgres => {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(
                        code,
                        "57P01" | "57P02" | "57P03" | "25006" | "40001" | "40P01"
                    )
            }
            // Primary result codes (the low byte of the extended code): 5 SQLITE_BUSY, 6
            // SQLITE_LOCKED (the write lock not obtained in time), 10 SQLITE_IOERR, 13
            // SQLITE_FULL, 14 SQLITE_CANTOPEN, 15 SQLITE_PROTOCOL.
            SqlBackend::Sqlite => code
                .parse::<i64>()
                .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14 | 15)),
        }
    }
}

impl From<sqlx::Error> for DomainError {
    fn from(e: sqlx::Error) -> Self {
        let sqlite = matches!(&e, sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some());
        let backend = if sqlite {
            SqlBackend::Sqlite
        } else {
            SqlBackend::Postgres
        };
        DomainError::from_sqlx(backend, e)
    }
}

/// Whether Redis refused a command because it is full: `maxmemory` reached and nothing it may
/// evict (`noeviction`). The error reads `OOM command not allowed when used memory >
/// 'maxmemory'`, also when a script's write met it (the code survives the script error).
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed")
}

impl From<redis::RedisError> for DomainError {
    fn from(e: redis::RedisError) -> Self {
        if is_out_of_memory(&e) {
            // A full Redis refuses every write until it has room again: an outage like a
            // Redis that is down (retry later), counted so that an alert can say which.
            metrics::counter!("mcp_backend_full_refusals_total", "backend" => "redis").increment(1);
            return DomainError::Unavailable {
                backend: "redis",
                cause: format!("out of memory: {e}"),
            };
        }
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
            // A primary demoted to a replica (a failover in progress): nothing was written.
            || crate::store::redis::conn::is_read_only(&e)
            || matches!(
                e.kind(),
                redis::ErrorKind::BusyLoadingError
                    | redis::ErrorKind::TryAgain
                    | redis::ErrorKind::ClusterDown
            )
        {
            DomainError::Unavailable {
                backend: "redis",
                cause: e.to_string(),
            }
        } else {
            DomainError::Internal(format!("redis: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sqlx_classifier_names_the_backend_it_was_given() {
        for (backend, name) in [
            (SqlBackend::Postgres, "postgres"),
            (SqlBackend::Sqlite, "sqlite"),
        ] {
            match DomainError::from_sqlx(backend, sqlx::Error::PoolTimedOut) {
                DomainError::Unavailable { backend, .. } => assert_eq!(backend, name),
                other => panic!("{other:?}"),
            }
            match DomainError::from_sqlx(backend, sqlx::Error::RowNotFound) {
                DomainError::Internal(m) => assert!(m.starts_with(name), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn transient_codes_are_the_backends_own() {
        assert!(SqlBackend::Postgres.transient("40P01"));
        assert!(SqlBackend::Postgres.transient("08006"));
        assert!(!SqlBackend::Postgres.transient("23505"));
        // SQLITE_BUSY, and SQLITE_BUSY_SNAPSHOT (517 = 5 | 2 << 8).
        assert!(SqlBackend::Sqlite.transient("5") && SqlBackend::Sqlite.transient("517"));
        assert!(!SqlBackend::Sqlite.transient("2067"));
        assert!(!SqlBackend::Sqlite.transient("40P01"));
    }
}
