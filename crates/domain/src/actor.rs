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
    /// Who acts: the name written into leases, messages and the audit.
    pub agent: AgentId,
    /// What the actor may do (reads only, reads and writes, or administration).
    pub role: Role,
    /// Tasks this actor may touch; `None` means every task.
    pub tasks: Option<Vec<String>>,
    /// Correlates the audit record with the request's logs.
    pub request_id: Option<String>,
    /// The caller named nobody (authentication off, no `agent_id`): it acts as its task (or
    /// `anonymous`), a name any other such caller shares, so it cannot prove it holds a
    /// lease and its claims are never re-entrant.
    pub anonymous: bool,
    /// The task the door parsed from the request and checked against the scope, when the
    /// request names one: the operation takes it from here ([`Actor::task`]) rather than
    /// parsing and checking it again.
    pub checked_task: Option<TaskId>,
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
            checked_task: None,
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
        self.ensure_writer()
    }

    fn ensure_writer(&self) -> Result<()> {
        if self.role == Role::Observer {
            return Err(DomainError::Forbidden(
                "observers cannot change anything".into(),
            ));
        }
        Ok(())
    }

    /// Records the task the door parsed and checked for this request ([`Actor::task`]).
    pub fn with_checked_task(mut self, task: TaskId) -> Actor {
        self.checked_task = Some(task);
        self
    }

    /// The task a request names (`raw`), in the actor's scope: the one the door checked when
    /// it is that one (no second parse), else parsed and checked now (`invalid_argument`,
    /// `forbidden`).
    pub fn task(&self, raw: &str) -> Result<TaskId> {
        if let Some(task) = self.checked_task.as_ref().filter(|t| t.as_str() == raw) {
            return Ok(task.clone());
        }
        let task = TaskId::parse(raw)?;
        self.ensure_task(&task)?;
        Ok(task)
    }

    /// [`Actor::task`], for a change: read-only actors are refused too.
    pub fn write_task(&self, raw: &str) -> Result<TaskId> {
        let task = self.task(raw)?;
        self.ensure_writer()?;
        Ok(task)
    }

    /// Refuses (`forbidden`) an actor without the admin role.
    pub fn ensure_admin(&self) -> Result<()> {
        if self.role != Role::Admin {
            return Err(DomainError::Forbidden(
                "this action needs the admin role".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(tasks: &[&str]) -> Actor {
        Actor {
            tasks: Some(tasks.iter().map(|t| t.to_string()).collect()),
            role: Role::Agent,
            ..Actor::trusted(AgentId::parse("a1").unwrap())
        }
    }

    #[test]
    fn the_task_the_door_checked_travels_to_the_operation() {
        let door = scoped(&["t1"]);
        let task = door.task("t1").unwrap();
        let actor = door.with_checked_task(task.clone());
        assert_eq!(actor.task("t1").unwrap(), task);
        assert_eq!(actor.write_task("t1").unwrap(), task);
        // Another task than the checked one is parsed and checked as ever.
        assert!(matches!(actor.task("t2"), Err(DomainError::Forbidden(_))));
        assert!(matches!(
            actor.task("bad id"),
            Err(DomainError::InvalidArgument(_))
        ));
    }

    #[test]
    fn observers_get_the_task_but_not_for_a_change() {
        let observer = Actor {
            role: Role::Observer,
            ..scoped(&["t1"])
        };
        assert!(observer.task("t1").is_ok());
        assert!(matches!(
            observer.write_task("t1"),
            Err(DomainError::Forbidden(_))
        ));
        let checked = observer
            .clone()
            .with_checked_task(TaskId::parse("t1").unwrap());
        assert!(matches!(
            checked.write_task("t1"),
            Err(DomainError::Forbidden(_))
        ));
    }
}
