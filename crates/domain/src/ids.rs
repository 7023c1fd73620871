//! Validated identifiers. A `TaskId` or `AgentId` exists only once `parse` accepted it, so
//! every key, channel and SQL parameter built from one is known to be safe.

use crate::error::DomainError;
use std::fmt;

use mcp_api::names::MAX_ID_LEN;

fn parse_id(kind: &str, raw: &str) -> Result<String, DomainError> {
    if !mcp_api::names::is_valid_id(raw) {
        return Err(DomainError::InvalidArgument(format!(
            "{kind} must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:@-]"
        )));
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1–128 characters of `[A-Za-z0-9._:@-]`; anything else is `invalid_argument`.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                parse_id($kind, raw).map(Self)
            }

            /// The validated id as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A task: the namespace of files, locks, logs and collaboration.
    TaskId,
    "task_id"
);
id_type!(
    /// An agent: the actor of every mutation and the owner of locks.
    AgentId,
    "agent_id"
);

impl AgentId {
    /// The owner used when a request names no agent (the original clients send only
    /// `task_id`): the task itself acts. Task ids are valid agent ids by construction.
    pub fn for_task(task: &TaskId) -> AgentId {
        AgentId(task.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["t1", "task-42", "a.b_c:d@e-f", &"x".repeat(128)] {
            assert!(TaskId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "a b",
            "a/b",
            "a{b}",
            "é",
            "a\0",
            &"x".repeat(129),
            "a\nb",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
            assert!(AgentId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
