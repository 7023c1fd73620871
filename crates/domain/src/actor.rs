//! Who is acting: resolved once per request by the door (REST extractor, MCP, stream) and
//! passed to every operation, which checks it the same way whichever door it came through.

use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};

/// What an actor may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and writes the tasks in its scope.
    Agent,
    /// Reads only.
    Observer,
    /// Everything, including task administration and forced lock release.
    Admin,
}

/// The acting agent of one request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub agent: AgentId,
    pub role: Role,
    /// Tasks this actor may touch; `None` means every task.
    pub tasks: Option<Vec<String>>,
    /// Correlates the audit record with the request's logs.
    pub request_id: Option<String>,
    /// The caller named nobody (authentication off, no `agent_id`): it acts as its task (or
    /// `anonymous`), a name any other such caller shares, so it cannot prove it holds a
    /// lease and its claims are never re-entrant.
    pub anonymous: bool,
}

impl Actor {
    /// An actor with every right (authentication off, tools, tests).
    pub fn trusted(agent: AgentId) -> Actor {
        Actor {
            agent,
            role: Role::Admin,
            tasks: None,
            request_id: None,
            anonymous: false,
        }
    }

    /// A trusted actor that named no identity (authentication off, no `agent_id`), acting as
    /// `agent` (its task id).
    pub fn anonymous(agent: AgentId) -> Actor {
        Actor {
            anonymous: true,
            ..Actor::trusted(agent)
        }
    }

    /// Whether `task` is in the actor's scope.
    pub fn may_access(&self, task: &str) -> bool {
        match &self.tasks {
            Some(list) => list.iter().any(|t| t == task || t == "*"),
            None => true,
        }
    }

    /// The tasks the actor is limited to, `None` when it may access every task.
    pub fn scope(&self) -> Option<&[String]> {
        match &self.tasks {
            Some(list) if !list.iter().any(|t| t == "*") => Some(list),
            _ => None,
        }
    }

    /// Refuses a task outside the actor's scope. The message names only the caller's own
    /// input, never what exists.
    pub fn ensure_task(&self, task: &TaskId) -> Result<()> {
        if self.may_access(task.as_str()) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "not allowed to access task '{task}'"
            )))
        }
    }

    /// Refuses mutations by read-only actors, and tasks outside the scope.
    pub fn ensure_write(&self, task: &TaskId) -> Result<()> {
        self.ensure_task(task)?;
        if self.role == Role::Observer {
            return Err(DomainError::Forbidden(
                "observers cannot change anything".into(),
            ));
        }
        Ok(())
    }

    pub fn ensure_admin(&self) -> Result<()> {
        if self.role != Role::Admin {
            return Err(DomainError::Forbidden(
                "this action needs the admin role".into(),
            ));
        }
        Ok(())
    }
}
