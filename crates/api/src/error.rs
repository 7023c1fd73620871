//! Error codes and the error body: the one table that maps a code to an HTTP status.
//!
//! A code is part of the contract: clients branch on it, so codes are only ever added.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every error the gateway can answer with. The snake_case name is the wire `code`.
// Codes are only ever added, so the enum is non-exhaustive: a `match` outside this crate
// needs a `_` arm, and a client reads a code it does not know as `ErrorCode::Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A field is missing, malformed or out of range.
    InvalidArgument,
    /// A file path escapes its task, or is too long, or holds forbidden characters.
    InvalidPath,
    /// No valid credentials were presented.
    Unauthorized,
    /// The credentials do not allow this action on this task.
    Forbidden,
    /// The task does not exist.
    TaskNotFound,
    /// The file does not exist (or was deleted).
    FileNotFound,
    /// The file exists (or existed), but not at the version asked for.
    RevisionNotFound,
    /// The agent is unknown.
    AgentNotFound,
    /// No message with this id that the caller may read (unknown, or not addressed to it).
    MessageNotFound,
    /// The route does not exist.
    NotFound,
    /// The route exists but not with this HTTP method.
    MethodNotAllowed,
    /// `expected_version` did not match the file's current version.
    VersionConflict,
    /// Another owner holds the lock on this path.
    Locked,
    /// The write carried a fence that is not its writer's live lease's on the path (forged,
    /// another lease's, expired or released), or one older than the file has already seen.
    StaleFence,
    /// A change without a lease and without `expected_version` of a file that was written
    /// under a lease: claim the path, or make the change conditional.
    LeaseRequired,
    /// Release or renew of a lock the caller does not hold.
    LockNotHeld,
    /// `file_edit`: `old_string` does not occur in the file.
    EditNoMatch,
    /// `file_edit`: `old_string` occurs more than once and `replace_all` is false.
    EditAmbiguous,
    /// The task already exists (admin create).
    AlreadyExists,
    /// A body, file or step is over its size limit.
    TooLarge,
    /// The task's file or byte quota would be exceeded.
    QuotaExceeded,
    /// Too many requests from this agent; retry after `Retry-After` seconds.
    RateLimited,
    /// The request body stopped arriving before it was complete (the client's connection,
    /// not a backend).
    RequestTimeout,
    /// A backend (Redis or Postgres) is unreachable; retry after `Retry-After` seconds.
    Unavailable,
    /// A bug or an unexpected backend answer. The body never carries internals.
    Internal,
    /// A code this version does not know (a newer gateway's), as a client reads it. The
    /// gateway never answers it; it is not in [`ErrorCode::ALL`] nor in the document.
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

impl ErrorCode {
    /// All codes, for tests and documentation.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidPath,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TaskNotFound,
        ErrorCode::FileNotFound,
        ErrorCode::RevisionNotFound,
        ErrorCode::AgentNotFound,
        ErrorCode::MessageNotFound,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::VersionConflict,
        ErrorCode::Locked,
        ErrorCode::StaleFence,
        ErrorCode::LeaseRequired,
        ErrorCode::LockNotHeld,
        ErrorCode::EditNoMatch,
        ErrorCode::EditAmbiguous,
        ErrorCode::AlreadyExists,
        ErrorCode::TooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::RateLimited,
        ErrorCode::RequestTimeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidArgument | InvalidPath => 400,
            Unauthorized => 401,
            Forbidden => 403,
            TaskNotFound | FileNotFound | RevisionNotFound | AgentNotFound | MessageNotFound
            | NotFound => 404,
            MethodNotAllowed => 405,
            RequestTimeout => 408,
            VersionConflict | Locked | StaleFence | LeaseRequired | LockNotHeld | EditNoMatch
            | EditAmbiguous | AlreadyExists => 409,
            TooLarge | QuotaExceeded => 413,
            RateLimited => 429,
            Unavailable => 503,
            Internal | Unknown => 500,
        }
    }

    /// The wire name, e.g. `"version_conflict"`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidArgument => "invalid_argument",
            InvalidPath => "invalid_path",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            TaskNotFound => "task_not_found",
            FileNotFound => "file_not_found",
            RevisionNotFound => "revision_not_found",
            AgentNotFound => "agent_not_found",
            MessageNotFound => "message_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            VersionConflict => "version_conflict",
            Locked => "locked",
            StaleFence => "stale_fence",
            LeaseRequired => "lease_required",
            LockNotHeld => "lock_not_held",
            EditNoMatch => "edit_no_match",
            EditAmbiguous => "edit_ambiguous",
            AlreadyExists => "already_exists",
            TooLarge => "too_large",
            QuotaExceeded => "quota_exceeded",
            RateLimited => "rate_limited",
            RequestTimeout => "request_timeout",
            Unavailable => "unavailable",
            Internal => "internal",
            Unknown => "unknown",
        }
    }

    /// Whether the caller may retry the same request later and expect success.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::Unavailable)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer: `{"detail": "...", "code": "...", ...context}`.
///
/// `detail` is a human sentence; `code` is what programs branch on. Context fields
/// (`current_version`, `holder`, `expires_at`, `retry_after`, …) are flattened beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// Human-readable explanation, never carrying internals or server paths.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Extra context for the caller (e.g. the current version on a conflict).
    #[serde(flatten)]
    pub context: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, Value::String(code.as_str().to_owned()));
            let back: ErrorCode = serde_json::from_value(json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn an_unknown_code_is_read_as_unknown() {
        let b: ErrorBody =
            serde_json::from_str(r#"{"detail":"x","code":"lease_required_v9"}"#).unwrap();
        assert_eq!(b.code, ErrorCode::Unknown);
        assert!(!ErrorCode::ALL.contains(&ErrorCode::Unknown));
    }

    #[test]
    fn statuses_are_errors() {
        for code in ErrorCode::ALL {
            assert!(code.http_status() >= 400, "{code}");
        }
        assert_eq!(ErrorCode::Locked.http_status(), 409);
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
    }
}
