//! Messages between agents: the bodies of `send_message`, `read_messages` and `ack_message`
//! and the message as every door shows it. (Re-exported from [`crate::requests`] and
//! [`crate::responses`], beside the other tools' bodies.)
//!
//! A message belongs to one task. It is addressed to agents by id, or to `"*"`: everyone on
//! the task (whoever may see the task reads it). Each recipient has its own read state.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

/// The recipient that means everyone on the task.
pub const EVERYONE: &str = "*";

/// Who a message is for: some agents, or everyone on the task (`"*"`). On the wire: `"*"`,
/// an agent id, or a list of agent ids (`["*"]` is everyone too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// `"*"`: everyone who may see the task.
    Everyone,
    /// These agents (ids as sent; the gateway validates them).
    Agents(Vec<String>),
}

impl Default for Recipients {
    fn default() -> Self {
        Recipients::Agents(Vec::new())
    }
}

impl Recipients {
    /// The wire list: `["*"]`, or the agent ids.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Recipients::Everyone => vec![EVERYONE.to_owned()],
            Recipients::Agents(a) => a.clone(),
        }
    }
}

impl Serialize for Recipients {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Recipients::Everyone => s.serialize_str(EVERYONE),
            Recipients::Agents(a) => a.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            One(String),
            Many(Vec<String>),
        }
        Ok(
            match Wire::deserialize(d).map_err(|_| {
                serde::de::Error::custom("`to` must be \"*\", an agent id, or a list of agent ids")
            })? {
                Wire::One(s) if s == EVERYONE => Recipients::Everyone,
                Wire::One(s) => Recipients::Agents(vec![s]),
                Wire::Many(v) if v.len() == 1 && v[0] == EVERYONE => Recipients::Everyone,
                Wire::Many(v) => Recipients::Agents(v),
            },
        )
    }
}

/// The schema says a list (`["*"]` for everyone): model hosts want one type per property.
/// The string forms (`"*"`, one agent id) are accepted too.
impl JsonSchema for Recipients {
    fn schema_name() -> Cow<'static, str> {
        "Recipients".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1
        })
    }
}

/// How urgent a message is (`normal` when not given). Only a hint for the reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    /// Can wait.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Read soon.
    High,
    /// Read now.
    Urgent,
}

/// A string with its four values, inline (model hosts want a type on every property).
impl JsonSchema for Importance {
    fn schema_name() -> Cow<'static, str> {
        "Importance".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": ["low", "normal", "high", "urgent"]
        })
    }
}

impl Importance {
    /// The wire name, e.g. `"urgent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
            Importance::Urgent => "urgent",
        }
    }

    /// The importance a stored name names (`normal` for anything else).
    pub fn parse(s: &str) -> Importance {
        match s {
            "low" => Importance::Low,
            "high" => Importance::High,
            "urgent" => Importance::Urgent,
            _ => Importance::Normal,
        }
    }
}

/// `POST /tools/send_message`: a message to agents of the task, or to everyone on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SendMessageRequest {
    /// The task the message belongs to (1–128 characters of `[A-Za-z0-9._:@-]`).
    pub task_id: String,
    /// The recipients: a list of agent ids (at most 100), or ["*"] for everyone who may see
    /// the task.
    pub to: Recipients,
    /// One line saying what it is about (1–200 characters).
    pub subject: String,
    /// The message itself (text, at most 64 KiB).
    #[serde(default)]
    pub body: String,
    /// The conversation it belongs to (1–128 characters of `[A-Za-z0-9._:@-]`). Default:
    /// the thread of `reply_to`, else a new thread named by this message's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The id of the message this one answers (a message of the same task you can read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// low, normal (default), high or urgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<Importance>,
    /// The acting agent (the sender). With authentication off it names the actor (default:
    /// the task id); with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/read_messages`: the caller's inbox after a cursor, optionally waiting for the
/// first message to arrive (a long poll).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ReadMessagesRequest {
    /// Only this task's messages. Default: every task the caller may see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The cursor of the previous answer: only messages after it. Default: from the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// When nothing is there, wait up to this many seconds (0–60) for the first message to
    /// arrive, from whichever gateway instance it is sent. Default 0: answer at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_sec: Option<f64>,
    /// Most messages in one answer (1–500, default 100), oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only messages the caller has not acknowledged (`ack_message`).
    #[serde(default)]
    pub unread_only: bool,
    /// The acting agent, whose inbox this is. With authentication off it names the actor;
    /// with authentication on it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// `POST /tools/ack_message`: marks a message read for the caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AckMessageRequest {
    /// The message's id (`message_id` of `send_message`, `id` in `read_messages`).
    pub message_id: i64,
    /// The message's task (optional: checked when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The acting agent. With authentication off it names the actor; with authentication on
    /// it must match the token's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// A message as its reader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Its id: grows with every message sent (the cursor of `read_messages` is one).
    pub id: i64,
    /// The task it belongs to.
    pub task_id: String,
    /// The sender.
    pub from: String,
    /// The recipients as sent: agent ids, or `["*"]` for everyone on the task.
    pub to: Vec<String>,
    /// A short summary line.
    pub subject: String,
    /// The message itself (plain text or Markdown).
    pub body: String,
    /// The conversation it belongs to.
    pub thread_id: String,
    /// The message it answers, if any.
    pub reply_to: Option<i64>,
    /// How urgent the sender says it is.
    pub importance: Importance,
    /// When the gateway stored it.
    pub sent_at: DateTime<Utc>,
    /// When the reader acknowledged it (`ack_message`); `null` while unread.
    pub read_at: Option<DateTime<Utc>>,
}

/// `send_message`: the message is stored (durably) and its recipients can read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendMessageResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task acted on.
    pub task_id: String,
    /// The new message's id.
    pub message_id: i64,
    /// Its conversation.
    pub thread_id: String,
    /// When it was stored.
    pub sent_at: DateTime<Utc>,
    /// The recipients: agent ids (validated, without duplicates), or `["*"]`.
    pub to: Vec<String>,
}

/// `read_messages`: the caller's messages after the cursor, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadMessagesResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The task read, when the request named one.
    pub task_id: Option<String>,
    /// The reader.
    pub agent_id: String,
    /// The messages, oldest first; empty when none arrived within `wait_sec`.
    pub messages: Vec<Message>,
    /// Pass it as `after` next time: the last message's id (the request's `after` when
    /// there is none).
    pub cursor: i64,
    /// `true` when more messages wait after this page (ask again at once).
    pub more: bool,
}

/// `ack_message`: the message is read for the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AckMessageResponse {
    /// Always `true` on a success answer (errors are HTTP errors or MCP tool errors).
    pub success: bool,
    /// The message's task.
    pub task_id: String,
    /// The message acknowledged.
    pub message_id: i64,
    /// When the caller first acknowledged it (acknowledging again keeps it).
    pub read_at: DateTime<Utc>,
}
