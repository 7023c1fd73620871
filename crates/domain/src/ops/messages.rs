//! `send_message`, `read_messages`, `ack_message` and the `inbox://{agent_id}` resource:
//! messages between the agents of a task.
//!
//! * **Durable when acknowledged**: a message, its recipients and its audit record are one
//!   durable transaction, committed before the answer. Redis holds nothing of it.
//! * **Who reads what**: a message addressed to agents is in those agents' inboxes; one
//!   addressed to `"*"` is in the inbox of everyone who may see its task (but its sender).
//!   A reader's scope (a token's tasks) bounds both: a message on a task outside the
//!   reader's scope is not in its inbox. Admins may read any agent's inbox (the resource).
//!   Anything else is `message_not_found`, never a hint that the message exists.
//! * **The event** `message_sent` on the task carries metadata only (id, sender,
//!   recipients, thread, importance; the subject too when the message is for everyone):
//!   every watcher of the task sees task events, and a direct message is for its recipients.
//! * **The long poll**: `read_messages` with `wait_sec` registers with the process's
//!   [`crate::inbox::InboxBell`] before it reads, then sleeps without holding a database
//!   connection until the bell rings (a message that may concern it, sent through any
//!   instance), the wait runs out, or [`RECHECK`] passes (a safety net for a lost ring).
//!   When the process shuts down, waiting calls answer at once with what they have.

use super::Service;
use crate::actor::Actor;
use crate::error::{DomainError, Result};
use crate::ids::{AgentId, TaskId};
use crate::store::durable::{InboxQuery, NewMessage, StoredMessage};
use mcp_api::EventType;
use mcp_api::messages::{
    AckMessageRequest, AckMessageResponse, EVERYONE, Importance, Message, ReadMessagesRequest,
    ReadMessagesResponse, Recipients, SendMessageRequest, SendMessageResponse,
};
use mcp_api::tools::MAX_MESSAGE_WAIT_SECS;
use serde_json::json;
use std::time::Duration;

/// Largest message body, in bytes.
pub const MAX_MESSAGE_BODY_BYTES: usize = 64 * 1024;
/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Most recipients of one message.
pub const MAX_RECIPIENTS: usize = 100;
/// Most messages in one `read_messages` answer, and the default.
pub const MAX_READ_LIMIT: usize = 500;
const DEFAULT_READ_LIMIT: usize = 100;
/// How often a long poll reads again when no ring came (a ring lost with its event).
pub(super) const RECHECK: Duration = Duration::from_secs(10);

impl Service {
    /// Sends a message to agents of a task (or `"*"`, everyone who may see it), durable before it answers.
    pub async fn send_message(
        &self,
        actor: &Actor,
        req: SendMessageRequest,
    ) -> Result<SendMessageResponse> {
        let task = actor.write_task(&req.task_id)?;
        let to = recipients(&req.to)?;
        let subject = req.subject.trim();
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(DomainError::InvalidArgument(format!(
                "subject must be 1-{MAX_SUBJECT_CHARS} characters"
            )));
        }
        if req.body.len() > MAX_MESSAGE_BODY_BYTES {
            return Err(DomainError::TooLarge {
                what: "message body",
                actual: req.body.len(),
                limit: MAX_MESSAGE_BODY_BYTES,
            });
        }
        if subject.contains('\0') || req.body.contains('\0') {
            return Err(DomainError::nul_text());
        }
        if let Some(t) = &req.thread_id
            && !mcp_api::names::is_valid_id(t)
        {
            return Err(DomainError::InvalidArgument(
                "thread_id must be 1-128 characters of [A-Za-z0-9._:@-]".into(),
            ));
        }
        let mut thread_id = req.thread_id.clone();
        if let Some(parent) = req.reply_to {
            let found = self
                .durable
                .message_for(parent, actor.agent.as_str(), actor.scope())
                .await?
                .filter(|m| m.task_id == task.as_str())
                .ok_or(DomainError::MessageNotFound(parent))?;
            thread_id.get_or_insert(found.thread_id);
        }
        let importance = req.importance.unwrap_or_default();
        let stored = self
            .durable
            .send_message(&NewMessage {
                task: &task,
                from: actor.agent.as_str(),
                broadcast: to.is_none(),
                to: to.as_deref().unwrap_or(&[]),
                subject,
                body: &req.body,
                thread_id: thread_id.as_deref(),
                reply_to: req.reply_to,
                importance: importance.as_str(),
                request_id: actor.request_id.as_deref(),
            })
            .await?;
        self.inbox.ring(task.as_str(), to.as_deref());
        let wire_to = wire_recipients(&stored);
        let mut data = json!({
            "message_id": stored.id,
            "from": stored.from,
            "to": wire_to,
            "thread_id": stored.thread_id,
            "reply_to": stored.reply_to,
            "importance": stored.importance,
            "sent_at": stored.sent_at,
        });
        if stored.broadcast {
            data["subject"] = json!(stored.subject);
        }
        // The message is committed: a lost event (Redis down) delays only the wake-up of
        // readers on other instances (their next recheck, or the hub's resync, finds it).
        if let Err(e) = self
            .emit(actor, &task, EventType::MessageSent, data, None)
            .await
        {
            tracing::warn!(task = %task, message = stored.id, error = %e, "message_sent event lost");
        }
        Ok(SendMessageResponse {
            success: true,
            task_id: task.to_string(),
            message_id: stored.id,
            thread_id: stored.thread_id,
            sent_at: stored.sent_at,
            to: wire_to,
        })
    }

    /// Reads the actor's inbox after a cursor, waiting up to `wait_sec` for a message when it is empty.
    pub async fn read_messages(
        &self,
        actor: &Actor,
        req: ReadMessagesRequest,
    ) -> Result<ReadMessagesResponse> {
        let task = req.task_id.as_deref().map(|t| actor.task(t)).transpose()?;
        let after = req.after.unwrap_or(0);
        if after < 0 {
            return Err(DomainError::InvalidArgument(
                "after must be a cursor (0 or more)".into(),
            ));
        }
        let limit = req.limit.unwrap_or(DEFAULT_READ_LIMIT);
        if !(1..=MAX_READ_LIMIT).contains(&limit) {
            return Err(DomainError::InvalidArgument(format!(
                "limit must be 1-{MAX_READ_LIMIT}"
            )));
        }
        let wait = match req.wait_sec {
            None => Duration::ZERO,
            Some(w) if w.is_finite() && (0.0..=MAX_MESSAGE_WAIT_SECS).contains(&w) => {
                Duration::from_secs_f64(w)
            }
            Some(_) => {
                return Err(DomainError::InvalidArgument(format!(
                    "wait_sec must be 0-{MAX_MESSAGE_WAIT_SECS}"
                )));
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Registered before the first read, so a message committed after it rings.
        let ticket = (!wait.is_zero()).then(|| self.inbox.register(actor, task.as_ref()));
        let query = InboxQuery {
            agent: actor.agent.as_str(),
            task: task.as_ref().map(TaskId::as_str),
            tasks_in: actor.scope(),
            after,
            unread_only: req.unread_only,
            limit: limit as i64 + 1,
        };
        let mut page = self.durable.inbox(&query).await?;
        if let Some(ticket) = &ticket {
            while page.is_empty()
                && tokio::time::Instant::now() < deadline
                && !self.inbox.is_closed()
            {
                let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
                tokio::select! {
                    () = ticket.rung() => {}
                    () = tokio::time::sleep_until(recheck) => {}
                }
                page = self.durable.inbox(&query).await?;
            }
        }
        let more = page.len() > limit;
        page.truncate(limit);
        Ok(ReadMessagesResponse {
            success: true,
            task_id: task.map(|t| t.to_string()),
            agent_id: actor.agent.to_string(),
            cursor: page.last().map_or(after, |m| m.id),
            messages: page.into_iter().map(to_wire).collect(),
            more,
        })
    }

    /// Marks a message of the actor's inbox as read.
    pub async fn ack_message(
        &self,
        actor: &Actor,
        req: AckMessageRequest,
    ) -> Result<AckMessageResponse> {
        let task = req.task_id.as_deref().map(|t| actor.task(t)).transpose()?;
        let me = actor.agent.as_str();
        let message = self
            .durable
            .message_for(req.message_id, me, actor.scope())
            .await?
            .filter(|m| in_inbox(m, me))
            .filter(|m| task.as_ref().is_none_or(|t| t.as_str() == m.task_id))
            .ok_or(DomainError::MessageNotFound(req.message_id))?;
        let read_at = self.durable.ack_message(message.id, me).await?;
        Ok(AckMessageResponse {
            success: true,
            task_id: message.task_id,
            message_id: message.id,
            read_at,
        })
    }

    /// The `inbox://{agent_id}` resource: the agent's unread messages, oldest first (at most
    /// [`DEFAULT_READ_LIMIT`]). The agent itself, or an admin, may read it.
    pub async fn inbox_of(&self, actor: &Actor, agent: &str) -> Result<ReadMessagesResponse> {
        let agent = AgentId::parse(agent)?;
        if agent != actor.agent {
            actor.ensure_admin()?;
        }
        let query = InboxQuery {
            agent: agent.as_str(),
            task: None,
            tasks_in: actor.scope(),
            after: 0,
            unread_only: true,
            limit: DEFAULT_READ_LIMIT as i64 + 1,
        };
        let mut page = self.durable.inbox(&query).await?;
        let more = page.len() > DEFAULT_READ_LIMIT;
        page.truncate(DEFAULT_READ_LIMIT);
        Ok(ReadMessagesResponse {
            success: true,
            task_id: None,
            agent_id: agent.to_string(),
            cursor: page.last().map_or(0, |m| m.id),
            messages: page.into_iter().map(to_wire).collect(),
            more,
        })
    }
}

/// The validated recipients: `None` for everyone on the task, else agent ids without
/// duplicates (in the order given).
fn recipients(to: &Recipients) -> Result<Option<Vec<String>>> {
    let Recipients::Agents(list) = to else {
        return Ok(None);
    };
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        return Err(DomainError::InvalidArgument(format!(
            "to must name 1-{MAX_RECIPIENTS} agents, or be \"*\" for everyone on the task"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        if a == EVERYONE {
            return Err(DomainError::InvalidArgument(
                "\"*\" (everyone on the task) cannot be combined with agent ids".into(),
            ));
        }
        let a = AgentId::parse(a)?.to_string();
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(Some(out))
}

/// Whether `m` is in `reader`'s inbox (not merely readable because it sent it).
fn in_inbox(m: &StoredMessage, reader: &str) -> bool {
    (m.broadcast && m.from != reader) || m.to.iter().any(|a| a == reader)
}

/// The recipients as the wire shows them: `["*"]` or the agent ids.
fn wire_recipients(m: &StoredMessage) -> Vec<String> {
    if m.broadcast {
        vec![EVERYONE.to_owned()]
    } else {
        m.to.clone()
    }
}

fn to_wire(m: StoredMessage) -> Message {
    Message {
        to: wire_recipients(&m),
        id: m.id,
        task_id: m.task_id,
        from: m.from,
        subject: m.subject,
        body: m.body,
        thread_id: m.thread_id,
        reply_to: m.reply_to,
        importance: Importance::parse(&m.importance),
        sent_at: m.sent_at,
        read_at: m.read_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_validated_and_deduplicated() {
        let agents = |v: &[&str]| Recipients::Agents(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(recipients(&Recipients::Everyone).unwrap(), None);
        assert_eq!(
            recipients(&agents(&["b", "a", "b"])).unwrap(),
            Some(vec!["b".to_string(), "a".to_string()])
        );
        assert!(recipients(&agents(&[])).is_err());
        assert!(recipients(&agents(&["a", "*"])).is_err());
        assert!(recipients(&agents(&["bad id"])).is_err());
        let many: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("a{i}")).collect();
        assert!(recipients(&Recipients::Agents(many)).is_err());
    }
}
