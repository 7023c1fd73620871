//! The one typed registry of tools. Every door serves exactly these, and takes everything it
//! knows about a tool from here:
//!
//! * the REST routes `POST /tools/{name}` (and one per alias) and their OpenAPI operations,
//! * the MCP `tools/list` (schemas and annotations) and `tools/call` dispatch,
//! * the client's generic [`call`](https://docs.rs/mcp-agent-client) (`client.call::<FileWrite>(req)`),
//!   its retry rule, and the LLM tool specs built from the request's JSON Schema.
//!
//! A tool is a unit type implementing [`Tool`]: its wire name, aliases, whether it changes
//! state, whether repeating it is harmless, its description, and its request and response
//! types. The types are listed once, in [`for_each_tool!`]; the crates that need code per tool
//! (the gateway's dispatch to the domain method, the client's dispatch) expand that list with
//! a macro of their own, so a tool added here reaches every door or fails to compile.

use crate::requests::*;
use crate::responses::*;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A tool of the gateway, described by its types and constants. Implemented by the unit types
/// of this module ([`FileRead`], [`FileWrite`], …), never by hand outside [`for_each_tool!`].
pub trait Tool: Send + Sync + 'static {
    /// The request body (`POST /tools/{NAME}`, MCP `arguments`).
    type Request: ToolRequest;
    /// The success body.
    type Response: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
    /// The wire name: the route `POST /tools/{NAME}` and the MCP tool name.
    const NAME: &'static str;
    /// Further wire names of the same tool (routes and MCP calls; not listed to models).
    const ALIASES: &'static [&'static str];
    /// Whether the tool changes state (MCP `readOnlyHint` is its negation).
    const MUTATES: bool;
    /// Whether repeating the same call leaves the same state (MCP `idempotentHint`), so a
    /// client may send it again after a failure whose outcome it does not know.
    const IDEMPOTENT: bool;
    /// Whether the tool may destroy content (MCP `destructiveHint`).
    const DESTRUCTIVE: bool;
    /// What the tool does, for people and models.
    const DESCRIPTION: &'static str;

    /// Whether this request may be sent again when its outcome is unknown (a timeout, a
    /// broken connection): reads and idempotent tools always; some tools for some requests
    /// (an unconditional `file_write` writes the same content twice).
    fn retry_safe(req: &Self::Request) -> bool {
        !Self::MUTATES || Self::IDEMPOTENT || req.replays_safely()
    }

    /// The entry of this tool in [`TOOLS`].
    fn info() -> ToolInfo {
        ToolInfo {
            name: Self::NAME,
            aliases: Self::ALIASES,
            mutates: Self::MUTATES,
            idempotent: Self::IDEMPOTENT,
            destructive: Self::DESTRUCTIVE,
            description: Self::DESCRIPTION,
        }
    }

    /// Whether `name` is this tool's name or one of its aliases.
    fn answers_to(name: &str) -> bool {
        name == Self::NAME || Self::ALIASES.contains(&name)
    }
}

/// Declares optional request fields as their type alone (for the MCP tool list and the
/// client's LLM tool specs) (`"string"`, not `["string", "null"]`;
/// the field is optional because it is not `required`), everywhere in a schema: some model hosts
/// (Gemini's function declarations) refuse type arrays. Only request schemas: answers do carry
/// nulls, and their output schemas say so.
pub fn without_null_types(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            // An optional enum lists `null` among its values: not a value of its one type.
            if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(serde_json::Value::Array(options)) = map.get_mut(key) {
                    options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
                    if options.len() == 1 {
                        let only = options.remove(0);
                        map.remove(key);
                        if let serde_json::Value::Object(inner) = only {
                            for (k, v) in inner {
                                map.entry(k).or_insert(v);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(without_null_types);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_null_types),
        _ => {}
    }
}

/// A tool request: it names the task it acts on and, optionally, the acting agent.
pub trait ToolRequest:
    Serialize + DeserializeOwned + JsonSchema + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The task the request acts on; `None` for a request that may span the caller's tasks
    /// (`read_messages` without `task_id`).
    fn task_id(&self) -> Option<&str>;
    /// The acting agent it names, if any.
    fn agent_id(&self) -> Option<&str>;
    /// The `agent_id` field, for a client that fills in its configured agent.
    fn agent_slot(&mut self) -> &mut Option<String>;
    /// Whether sending this very request twice has the effect of sending it once, beyond
    /// what the tool's [`Tool::IDEMPOTENT`] says (default: no).
    fn replays_safely(&self) -> bool {
        false
    }
    /// How long the tool may wait for something to happen before it answers (a long poll:
    /// `read_messages`' and `claim_file`'s `wait_sec`), beyond the usual time of a call. Doors that bound a
    /// call's time (the gateway's request timeout, the client's timeout) add it.
    fn wait(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A tool's constants, as a value (for lists, docs and lookups by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolInfo {
    /// The wire name.
    pub name: &'static str,
    /// Further wire names.
    pub aliases: &'static [&'static str],
    /// Whether it changes state.
    pub mutates: bool,
    /// Whether repeating it leaves the same state.
    pub idempotent: bool,
    /// Whether it may destroy content.
    pub destructive: bool,
    /// What it does.
    pub description: &'static str,
}

impl ToolInfo {
    /// Whether `name` is this tool's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

/// The registry entry for a wire name or alias.
pub fn find(name: &str) -> Option<&'static ToolInfo> {
    TOOLS.iter().find(|t| t.answers_to(name))
}

/// Expands `$m!` with the registry, the one list of tools: for every tool, its type's name
/// (in `mcp_api::tools`), the `mcp_domain::Service` method that performs it, and its
/// constants, as `$m! { FileRead => file_read { name: "file_read", … }, … }`. This crate
/// declares the types from it; a consumer matches
/// `$($tool:ident => $method:ident { $($rest:tt)* }),*` and ignores the rest.
/// Adding a tool: `docs/ADDING_A_TOOL.md`.
#[macro_export]
macro_rules! for_each_tool {
    ($m:ident) => {
        $m! {
            FileRead => file_read {
                name: "file_read",
                aliases: [],
                request: FileReadRequest,
                response: FileReadResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "Read a file of the task: content, version, sha256, size.",
            },
            FileWrite => file_write {
                name: "file_write",
                aliases: [],
                request: FileWriteRequest,
                response: FileWriteResponse,
                mutates: true,
                idempotent: false,
                destructive: true,
                description: "Create or replace a file (optionally only at expected_version).",
            },
            FileEdit => file_edit {
                name: "file_edit",
                aliases: [],
                request: FileEditRequest,
                response: FileEditResponse,
                mutates: true,
                idempotent: false,
                destructive: true,
                description: "Replace old_string by new_string in a file, atomically; returns a unified diff.",
            },
            ListFiles => list_files {
                name: "list_files",
                aliases: [],
                request: ListFilesRequest,
                response: ListFilesResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "List the task's files (optionally under a prefix).",
            },
            DeleteFile => delete_file {
                name: "delete_file",
                aliases: [],
                request: DeleteFileRequest,
                response: DeleteFileResponse,
                mutates: true,
                idempotent: false,
                destructive: true,
                description: "Delete a file.",
            },
            FileHistory => file_history {
                name: "file_history",
                aliases: [],
                request: FileHistoryRequest,
                response: FileHistoryResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "List a file's revisions, newest first: version, op (write, edit, delete), agent, fence, time.",
            },
            FileRevision => file_revision {
                name: "file_revision",
                aliases: [],
                request: FileRevisionRequest,
                response: FileRevisionResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "Read a file's full content at one version; with diff_from, also the unified diff from that version.",
            },
            ClaimFile => claim_file {
                name: "claim_file",
                aliases: [],
                request: ClaimFileRequest,
                response: LockResponse,
                mutates: true,
                idempotent: true,
                destructive: false,
                description: "Take (or refresh) the lease on a path, or on a directory (`recursive`); returns a fencing token. With `wait_sec`, wait in a FIFO queue while another agent holds it.",
            },
            RenewFile => renew_file {
                name: "renew_file",
                aliases: [],
                request: RenewFileRequest,
                response: LockResponse,
                mutates: true,
                idempotent: true,
                destructive: false,
                description: "Extend a lease the caller holds.",
            },
            ReleaseFile => release_file {
                name: "release_file",
                aliases: [],
                request: ReleaseFileRequest,
                response: ReleaseResponse,
                mutates: true,
                idempotent: false,
                destructive: false,
                description: "Release a lease the caller holds.",
            },
            ListLeases => list_leases {
                name: "list_leases",
                aliases: [],
                request: ListLeasesRequest,
                response: ListLeasesResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "List the task's live leases: path, holder, fence, acquired and expiry times, time left.",
            },
            LogStep => log_step {
                name: "log_step",
                aliases: [],
                request: LogStepRequest,
                response: LogStepResponse,
                mutates: true,
                idempotent: false,
                destructive: false,
                description: "Append an execution step to the task's log.",
            },
            SubscribeLogs => subscribe_logs {
                name: "subscribe_logs",
                aliases: [],
                request: SubscribeLogsRequest,
                response: SubscribeLogsResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "Where to listen for the task's live events.",
            },
            JoinCollaboration => join_collab {
                name: "join_collaboration",
                aliases: ["join_collab"],
                request: CollaborationRequest,
                response: CollaborationResponse,
                mutates: true,
                idempotent: true,
                destructive: false,
                description: "Join the task's collaboration session.",
            },
            LeaveCollaboration => leave_collab {
                name: "leave_collaboration",
                aliases: ["leave_collab"],
                request: CollaborationRequest,
                response: CollaborationResponse,
                mutates: true,
                idempotent: true,
                destructive: false,
                description: "Leave the task's collaboration session.",
            },
            SendMessage => send_message {
                name: "send_message",
                aliases: [],
                request: SendMessageRequest,
                response: SendMessageResponse,
                mutates: true,
                idempotent: false,
                destructive: false,
                description: "Send a message to agents of the task (to: agent ids) or to everyone on it (to: \"*\"); stored durably before the answer.",
            },
            ReadMessages => read_messages {
                name: "read_messages",
                aliases: [],
                request: ReadMessagesRequest,
                response: ReadMessagesResponse,
                mutates: false,
                idempotent: true,
                destructive: false,
                description: "Read your inbox after a cursor (one task or all yours); with wait_sec (up to 60) wait for the first message to arrive.",
            },
            AckMessage => ack_message {
                name: "ack_message",
                aliases: [],
                request: AckMessageRequest,
                response: AckMessageResponse,
                mutates: true,
                idempotent: true,
                destructive: false,
                description: "Mark a message of your inbox read.",
            },
        }
    };
}

/// Declares each tool's unit type and its [`Tool`] impl.
macro_rules! declare_tools {
    ($(
        $ty:ident => $method:ident {
            name: $name:literal,
            aliases: [$($alias:literal),*],
            request: $req:ty,
            response: $resp:ty,
            mutates: $mutates:literal,
            idempotent: $idem:literal,
            destructive: $destructive:literal,
            description: $desc:literal $(,)?
        }
    ),* $(,)?) => {$(
        #[doc = concat!("The tool `", $name, "`: ", $desc)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $ty;

        impl Tool for $ty {
            type Request = $req;
            type Response = $resp;
            const NAME: &'static str = $name;
            const ALIASES: &'static [&'static str] = &[$($alias),*];
            const MUTATES: bool = $mutates;
            const IDEMPOTENT: bool = $idem;
            const DESTRUCTIVE: bool = $destructive;
            const DESCRIPTION: &'static str = $desc;
        }
    )*

        /// Every tool's constants, in registry order.
        pub const TOOLS: &[ToolInfo] = &[$(ToolInfo {
            name: $name,
            aliases: &[$($alias),*],
            mutates: $mutates,
            idempotent: $idem,
            destructive: $destructive,
            description: $desc,
        }),*];
    };
}

for_each_tool!(declare_tools);

/// Implements [`ToolRequest`] for request types with `task_id: String` (or, after
/// `optional_task:`, `task_id: Option<String>`) and `agent_id: Option<String>` fields.
macro_rules! tool_request {
    (optional_task: $($t:ty),* $(,)?) => {$(
        impl ToolRequest for $t {
            fn task_id(&self) -> Option<&str> { self.task_id.as_deref() }
            fn agent_id(&self) -> Option<&str> { self.agent_id.as_deref() }
            fn agent_slot(&mut self) -> &mut Option<String> { &mut self.agent_id }
        }
    )*};
    ($($t:ty),* $(,)?) => {$(
        impl ToolRequest for $t {
            fn task_id(&self) -> Option<&str> { Some(&self.task_id) }
            fn agent_id(&self) -> Option<&str> { self.agent_id.as_deref() }
            fn agent_slot(&mut self) -> &mut Option<String> { &mut self.agent_id }
        }
    )*};
}

tool_request!(
    FileReadRequest,
    FileEditRequest,
    DeleteFileRequest,
    ListFilesRequest,
    FileHistoryRequest,
    FileRevisionRequest,
    RenewFileRequest,
    ReleaseFileRequest,
    ListLeasesRequest,
    LogStepRequest,
    SubscribeLogsRequest,
    CollaborationRequest,
    SendMessageRequest,
);

/// The longest `wait_sec` of `read_messages`, in seconds.
pub const MAX_MESSAGE_WAIT_SECS: f64 = 60.0;

impl ToolRequest for ReadMessagesRequest {
    fn task_id(&self) -> Option<&str> {
        self.task_id.as_deref()
    }
    fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }
    fn agent_slot(&mut self) -> &mut Option<String> {
        &mut self.agent_id
    }
    /// `wait_sec`, as the operation bounds it (0–60 s; a bad value waits for nothing and is
    /// refused by the operation).
    fn wait(&self) -> Option<std::time::Duration> {
        let w = self.wait_sec.filter(|w| w.is_finite() && *w > 0.0)?;
        Some(std::time::Duration::from_secs_f64(
            w.min(MAX_MESSAGE_WAIT_SECS),
        ))
    }
}

tool_request!(optional_task: AckMessageRequest);

impl ToolRequest for FileWriteRequest {
    fn task_id(&self) -> Option<&str> {
        Some(&self.task_id)
    }
    fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }
    fn agent_slot(&mut self) -> &mut Option<String> {
        &mut self.agent_id
    }
    /// Unconditional (no `expected_version`): writing the same content twice leaves the same
    /// content. A conditional write's second attempt would meet its own first.
    fn replays_safely(&self) -> bool {
        self.expected_version.is_none()
    }
}

impl ToolRequest for ClaimFileRequest {
    fn task_id(&self) -> Option<&str> {
        Some(&self.task_id)
    }
    fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }
    fn agent_slot(&mut self) -> &mut Option<String> {
        &mut self.agent_id
    }
    /// `wait_sec`: a claim may wait in the path's queue that long (0–60 s, checked by the
    /// operation).
    fn wait(&self) -> Option<std::time::Duration> {
        self.wait_sec
            .filter(|s| *s > 0)
            .map(|s| std::time::Duration::from_secs(s.unsigned_abs().min(60)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn optional_fields_lose_their_null_type() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": {"type": ["string", "null"], "description": "a"},
                "b": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}], "description": "b"},
                "c": {"type": "array", "items": {"type": ["integer", "null"]}},
                "d": {"type": ["string", "integer", "null"]},
                "e": {"type": ["string", "null"], "enum": ["x", null]}
            }
        });
        super::without_null_types(&mut s);
        assert_eq!(
            s["properties"],
            json!({
                "a": {"type": "string", "description": "a"},
                "b": {"$ref": "#/$defs/B", "description": "b"},
                "c": {"type": "array", "items": {"type": "integer"}},
                "d": {"type": ["string", "integer"]},
                "e": {"type": "string", "enum": ["x"]}
            })
        );
    }

    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut all: Vec<&str> = TOOLS
            .iter()
            .flat_map(|t| std::iter::once(t.name).chain(t.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a name or alias is used twice");
        assert_eq!(
            find("join_collab").map(|t| t.name),
            Some("join_collaboration")
        );
        assert_eq!(find("nope"), None);
        assert_eq!(FileWrite::info(), *find("file_write").unwrap());
    }

    #[test]
    fn retry_rule() {
        let w = |v: Option<i64>| FileWriteRequest {
            task_id: "t".into(),
            path: "a".into(),
            content: String::new(),
            expected_version: v,
            fence: None,
            agent_id: None,
        };
        assert!(FileWrite::retry_safe(&w(None)));
        assert!(!FileWrite::retry_safe(&w(Some(1))));
        const { assert!(ClaimFile::IDEMPOTENT && !LogStep::IDEMPOTENT && !FileRead::MUTATES) };
    }
}
