//! `send` and `inbox`: messages between agents (`send_message`, `read_messages` with its
//! long poll, `ack_message`).

use crate::{EXIT_OK, Out};
use mcp_agent_client::{ClientError, GatewayClient};
use mcp_api::requests::{
    AckMessageRequest, Importance, ReadMessagesRequest, Recipients, SendMessageRequest,
};
use mcp_api::responses::Message;
use serde_json::json;
use tokio::io::AsyncReadExt;

/// What `mcpctl send` sends.
pub struct Send {
    /// The task whose agents receive it.
    pub task: String,
    /// Agent ids, or `*`.
    pub to: Vec<String>,
    /// One line saying what it is about.
    pub subject: String,
    /// `None`: read from standard input.
    pub body: Option<String>,
    /// The conversation; `None`: that of `reply_to`, else a new one.
    pub thread: Option<String>,
    /// The id of the message this one answers.
    pub reply_to: Option<i64>,
    /// How urgent it is; `None`: the gateway's default.
    pub importance: Option<Importance>,
}

/// `send`: sends the message and prints its id, recipients and thread.
pub async fn send(c: &GatewayClient, s: Send, out: Out) -> Result<u8, ClientError> {
    let body = match s.body {
        Some(b) => b,
        None => {
            let mut b = String::new();
            tokio::io::stdin().read_to_string(&mut b).await?;
            b
        }
    };
    let to = match s.to.as_slice() {
        [one] if one == mcp_api::messages::EVERYONE => Recipients::Everyone,
        list => Recipients::Agents(list.to_vec()),
    };
    let r = c
        .send_message(SendMessageRequest {
            task_id: s.task,
            to,
            subject: s.subject,
            body,
            thread_id: s.thread,
            reply_to: s.reply_to,
            importance: s.importance,
            agent_id: None,
        })
        .await?;
    out.emit(&json!(r), || {
        format!(
            "sent message {} to {} (thread {})",
            r.message_id,
            r.to.join(", "),
            r.thread_id
        )
    });
    Ok(EXIT_OK)
}

/// What `mcpctl inbox` reads.
pub struct Inbox {
    /// Only this task's messages; `None`: every task.
    pub task: Option<String>,
    /// Only messages after this cursor.
    pub after: Option<i64>,
    /// Seconds to wait for a message when none is there (a long poll).
    pub wait: Option<f64>,
    /// Most messages to print; `None`: the gateway's default.
    pub limit: Option<usize>,
    /// Also messages already acknowledged.
    pub all: bool,
    /// Acknowledge the messages printed.
    pub ack: bool,
}

/// `inbox`: prints the messages (unread ones unless `all`) and, on stderr, the cursor of the
/// next call; acknowledges them with `ack`.
pub async fn inbox(c: &GatewayClient, i: Inbox, out: Out) -> Result<u8, ClientError> {
    let r = c
        .read_messages(ReadMessagesRequest {
            task_id: i.task,
            after: i.after,
            wait_sec: i.wait,
            limit: i.limit,
            unread_only: !i.all,
            agent_id: None,
        })
        .await?;
    if i.ack {
        for m in r.messages.iter().filter(|m| m.read_at.is_none()) {
            c.ack_message(AckMessageRequest {
                message_id: m.id,
                task_id: Some(m.task_id.clone()),
                agent_id: None,
            })
            .await?;
        }
    }
    out.emit(&json!(r), || {
        if r.messages.is_empty() {
            return "no messages".to_owned();
        }
        r.messages.iter().map(show).collect::<Vec<_>>().join("\n")
    });
    out.progress(format!(
        "cursor {}{}",
        r.cursor,
        if r.more {
            " (more waiting: ask again)"
        } else {
            ""
        }
    ));
    Ok(EXIT_OK)
}

/// One message for a terminal: a header line, then the body indented.
fn show(m: &Message) -> String {
    let mut head = format!(
        "#{} {} [{}] {} -> {}",
        m.id,
        m.sent_at.format("%Y-%m-%d %H:%M:%S"),
        m.task_id,
        m.from,
        m.to.join(", ")
    );
    if m.importance != Importance::Normal {
        head.push_str(&format!(" ({})", m.importance.as_str()));
    }
    head.push_str(&format!(": {}", m.subject));
    let mut meta = vec![format!("thread {}", m.thread_id)];
    if let Some(r) = m.reply_to {
        meta.push(format!("re #{r}"));
    }
    if m.read_at.is_some() {
        meta.push("read".into());
    }
    head.push_str(&format!("  [{}]", meta.join(", ")));
    for line in m.body.lines() {
        head.push_str("\n    ");
        head.push_str(line);
    }
    head
}
