//! Every Redis key and channel name the gateway uses, built in one place.
//!
//! Every key a script or a transaction touches together lives in one Redis Cluster hash slot:
//! the keys of a task carry the hash tag `{<prefix>task:<id>}` (`lock:{task:t1}:src/a.py`),
//! whose content is exactly the name of the task's cached row `<prefix>task:<id>`, so that
//! row (kept under the original's name, without braces, because other systems such as the
//! orchestrator read it) hashes to the same slot as the task's other keys. Task ids cannot
//! contain `}`, so a key names exactly one (task, path) pair. The keys of an agent carry
//! `{<agent>}`, those of an MCP session `{<session>}`. A deployment-wide prefix (empty by
//! default) lets tests and tenants share one Redis without collisions.
//!
//! Two names depend on the topology ([`Keys::cluster`]): on one server (single or Sentinel)
//! the rollback marker and the sync outbox are one key each; on a Redis Cluster there is one
//! of each per hash slot, named with a tag that hashes to that slot ([`slot_tag`]), so that a
//! script that acts on a task's keys finds its marker and its outbox in the same slot.
//! Channels are not keys: plain `PUBLISH` reaches the subscribers of every cluster node.
//! The channel `task:{id}:updates` keeps the seed's name.

use crate::ids::{AgentId, TaskId};
use crate::path::{FilePath, LeasePath};
use crate::store::hot::{McpSession, SubScope, Subscriber};

/// Separates the fields of an MCP subscription index entry; ids, canonical keys and URIs
/// never contain it.
const SEP: char = '\u{1f}';

/// Builds key names under one prefix.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    prefix: String,
    /// A Redis Cluster: the rollback marker and the outbox are kept per hash slot.
    cluster: bool,
}

impl Keys {
    /// Names for a single server or Sentinel, under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
            cluster: false,
        }
    }

    /// Names for a Redis Cluster (see the module's documentation).
    pub fn for_cluster(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
            cluster: true,
        }
    }

    /// The prefix of every key and channel.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether these are a Redis Cluster's names.
    pub fn cluster(&self) -> bool {
        self.cluster
    }

    /// `<prefix><kind>{<prefix>task:<id>}<rest>`: a task's key, whose hash tag's content is the
    /// name of the task's cached row ([`Keys::task`]), which therefore shares their slot. Built in one allocation of its
    /// size (three nested `format!`s cost a few thousand instructions per key, and a step
    /// names five keys: issue #19).
    fn tagged(&self, kind: &str, task: &TaskId, rest: &[&str]) -> String {
        let (prefix, id) = (self.prefix.as_str(), task.as_str());
        let rest_len: usize = rest.iter().map(|r| r.len()).sum();
        let mut key = String::with_capacity(
            2 * prefix.len() + kind.len() + "{task:}".len() + id.len() + rest_len,
        );
        for part in [prefix, kind, "{", prefix, "task:", id, "}"] {
            key.push_str(part);
        }
        for part in rest {
            key.push_str(part);
        }
        key
    }

    /// The hash slot of a task's keys.
    pub fn task_slot(&self, task: &TaskId) -> u16 {
        key_slot(self.task(task).as_bytes())
    }

    /// Hot copy of a file: hash {version, content, sha256, size, updated_by, updated_at, deleted}.
    pub fn file(&self, task: &TaskId, path: &FilePath) -> String {
        self.tagged("file:", task, &[":", path.as_str()])
    }

    /// A file's lease: hash {owner, fence, token, acquired_at, expires_at}, with a TTL.
    pub fn lock(&self, task: &TaskId, path: &FilePath) -> String {
        format!("{}{path}", self.lock_prefix(task))
    }

    /// What every lease key of a task starts with: the key of a lease is this + its path.
    pub fn lock_prefix(&self, task: &TaskId) -> String {
        self.tagged("lock:", task, &[":"])
    }

    /// The lease on a file or a directory ([`LeasePath`]: a directory's ends in `/`, so the
    /// two never share a key). For a file it is [`Keys::lock`].
    pub fn lease(&self, task: &TaskId, path: &LeasePath) -> String {
        format!("{}{path}", self.lock_prefix(task))
    }

    /// The wait queue of one lease path (`claim_file` with `wait_sec`): a sorted set of waiter
    /// tickets scored by arrival (Redis time in microseconds, strictly increasing), the first
    /// the next to be granted. It lives while its waiters keep it alive (its TTL is the
    /// waiters' liveness); an empty one is deleted.
    pub fn lease_queue(&self, task: &TaskId, path: &LeasePath) -> String {
        format!("{}{path}", self.lease_queue_prefix(task))
    }

    /// What every wait queue key of a task starts with: the queue of a path is this + the
    /// path (as for leases: [`Keys::lock_prefix`]).
    pub fn lease_queue_prefix(&self, task: &TaskId) -> String {
        self.tagged("lockq:", task, &[":"])
    }

    /// What every waiter liveness key of a task starts with: the key of a ticket's is this +
    /// the ticket. Its value is the waiting agent; the waiting gateway refreshes its short
    /// TTL at every check, so a waiter whose gateway died drops out of its queue.
    pub fn lease_waiter_prefix(&self, task: &TaskId) -> String {
        self.tagged("lockw:", task, &[":"])
    }

    /// The pub/sub channel on which a task's lease waiters are woken (a release, a waiter
    /// leaving the head of a queue). Gateways with waiters subscribe to every task's
    /// ([`Keys::lease_wake_pattern`]).
    pub fn lease_wake(&self, task: &TaskId) -> String {
        format!("{}lease_wake:{{{task}}}", self.prefix)
    }

    /// Pattern matching every task's lease wake-up channel.
    pub fn lease_wake_pattern(&self) -> String {
        format!("{}lease_wake:*", self.prefix)
    }

    /// The task a wake-up channel belongs to.
    pub fn task_of_lease_wake(&self, channel: &str) -> Option<TaskId> {
        let task = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("lease_wake:{")?
            .strip_suffix('}')?;
        TaskId::parse(task).ok()
    }

    /// The task's lease index: a sorted set of its lease keys scored by expiry (ms), kept by
    /// the claim, renew and release scripts (`lua/lease_index.lua`), so that listing a task's
    /// leases reads its own members instead of scanning the key space. It expires with its
    /// longest lease; members of expired or vanished leases are dropped when it is read.
    pub fn lease_index(&self, task: &TaskId) -> String {
        self.tagged("leases:", task, &[])
    }

    /// The task's step log stream (capped).
    pub fn logs(&self, task: &TaskId) -> String {
        self.tagged("logs:", task, &[])
    }

    /// The task's event stream (capped): the resume source of live streams.
    pub fn events(&self, task: &TaskId) -> String {
        self.tagged("events:", task, &[])
    }

    /// Collaboration members: hash agent -> joined_at (ms).
    pub fn collab_members(&self, task: &TaskId) -> String {
        self.tagged("collaboration:", task, &[])
    }

    /// Collaboration activity: hash agent -> last_active (ms).
    pub fn collab_activity(&self, task: &TaskId) -> String {
        self.tagged("collaboration_activity:", task, &[])
    }

    /// An agent's presence: hash {last_seen (ms), task}.
    pub fn agent(&self, agent: &str) -> String {
        [self.prefix.as_str(), "agent:{", agent, "}"].concat()
    }

    /// The tasks whose collaboration an agent is part of (set).
    pub fn agent_tasks(&self, agent: &AgentId) -> String {
        format!("{}agent_tasks:{{{agent}}}", self.prefix)
    }

    /// Cached task row (JSON), the original's name.
    pub fn task(&self, task: &TaskId) -> String {
        [self.prefix.as_str(), "task:", task.as_str()].concat()
    }

    /// The sync outbox stream of one server (single or Sentinel): records the push loop
    /// persists to Postgres. On a cluster see [`Keys::outbox_of`].
    pub fn outbox(&self) -> String {
        format!("{}outbox", self.prefix)
    }

    /// The outbox a task's records go to: [`Keys::outbox`] on one server; on a cluster the
    /// outbox of the task's slot ([`Keys::outbox_shard`]), so that a step is appended to the
    /// task's log and to the outbox by one script.
    pub fn outbox_of(&self, task: &TaskId) -> String {
        if self.cluster {
            self.outbox_shard(self.task_slot(task))
        } else {
            self.outbox()
        }
    }

    /// A cluster's outbox of one hash slot.
    pub fn outbox_shard(&self, slot: u16) -> String {
        format!("{}outbox:{{{}}}", self.prefix, slot_tag(slot))
    }

    /// A cluster's index of the slots whose outbox may hold records (a set of slot numbers),
    /// which the push loop reads; a slot is added before its outbox's first record.
    pub fn outbox_slots(&self) -> String {
        format!("{}outbox:slots", self.prefix)
    }

    /// The task's pub/sub channel, the seed's name.
    pub fn channel(&self, task: &TaskId) -> String {
        [self.prefix.as_str(), "task:", task.as_str(), ":updates"].concat()
    }

    /// Pattern matching every task channel (for one subscription per process).
    pub fn channel_pattern(&self) -> String {
        format!("{}task:*:updates", self.prefix)
    }

    /// The task a channel matched by [`Keys::channel_pattern`] belongs to; `None` for a name
    /// that is not a task channel under this prefix or names an invalid task id.
    pub fn task_of_channel(&self, channel: &str) -> Option<TaskId> {
        let task = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("task:")?
            .strip_suffix(":updates")?;
        TaskId::parse(task).ok()
    }

    /// A request-rate window of one subject (an agent, or `ip:<addr>` with authentication
    /// off): a counter whose TTL is the rest of the window. Shared by every gateway instance.
    pub fn rate(&self, subject: &str) -> String {
        format!("{}rate:{{{subject}}}", self.prefix)
    }

    /// The hot layer's validation marker: the `master_replid` of the Redis server on which the
    /// hot copies, leases and cached task rows were last known to be current (see
    /// `lua/hot_guard.lua`). A rollback brings back an older value, never the current id.
    pub fn hot_validated(&self) -> String {
        format!("{}hot:validated", self.prefix)
    }

    /// The validation marker that guards `key`: [`Keys::hot_validated`] on one server; on a
    /// cluster the marker of the key's hash slot (each primary has its own `master_replid`,
    /// and a script may only touch keys of one slot).
    pub fn hot_validated_for(&self, key: &str) -> String {
        if self.cluster {
            self.hot_validated_slot(key_slot(key.as_bytes()))
        } else {
            self.hot_validated()
        }
    }

    /// A cluster's validation marker of one hash slot.
    pub fn hot_validated_slot(&self, slot: u16) -> String {
        format!("{}hot:validated:{{{}}}", self.prefix, slot_tag(slot))
    }

    /// What the rebuild after a rollback drops: key name prefixes of hot file copies,
    /// leases, the tasks' lease indexes and cached task rows (everything else the hot layer
    /// keeps is either re-read from the durable store on a miss or not a copy of durable
    /// state).
    pub fn rebuilt_on_rollback(&self) -> [String; 4] {
        [
            format!("{}file:", self.prefix),
            format!("{}lock:", self.prefix),
            format!("{}leases:", self.prefix),
            format!("{}task:", self.prefix),
        ]
    }

    /// A `SCAN MATCH` pattern for every key under this prefix (glob characters escaped).
    pub fn scan_all_pattern(&self) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('*');
        p
    }

    /// The write probe of `/health` and of the metrics scrape (a short-lived key): a full
    /// Redis answers `PING` but refuses writes, so only a write shows it.
    pub fn health_probe(&self) -> String {
        format!("{}health:probe", self.prefix)
    }

    /// Marker set by the sync pull loop once the task cache is warm; when it is missing
    /// (Redis lost its data), the next pull rebuilds the whole cache from Postgres.
    pub fn sync_warm(&self) -> String {
        format!("{}sync:warm", self.prefix)
    }

    /// An MCP session's state (the client's `initialize` parameters, JSON), with a TTL: any
    /// gateway instance restores the session from it.
    pub fn mcp_session(&self, session: &str) -> String {
        format!("{}mcp_session:{{{session}}}", self.prefix)
    }

    /// The pub/sub channel of `notifications/cancelled` for 2026-07-28 `subscriptions/listen`
    /// requests: the instance that receives a cancellation publishes it, the one holding the
    /// listen ends it.
    pub fn mcp_listen_cancels(&self) -> String {
        format!("{}mcp_listen_cancel", self.prefix)
    }

    /// The record of one cancellation of a listen (its time, ms; a short TTL), named by the
    /// SHA-256 of the cancellation's payload.
    pub fn mcp_listen_cancelled(&self, name: &str) -> String {
        let digest = crate::digest::sha256_hex(name);
        format!("{}mcp_listen_cancelled:{digest}", self.prefix)
    }

    /// The resource subscriptions an MCP session holds (set of `index key \x1f entry`), so that
    /// closing the session removes them from the indexes below.
    pub fn mcp_session_subs(&self, session: &str) -> String {
        format!("{}mcp_session_subs:{{{session}}}", self.prefix)
    }

    /// Index of the MCP resource subscriptions on a task's resources (set of
    /// `session \x1f resource key \x1f uri as subscribed`).
    pub fn mcp_task_subs(&self, task: &TaskId) -> String {
        self.tagged("mcp_subs:", task, &[])
    }

    /// Index of the MCP subscriptions on an agent's status resource (same entries).
    pub fn mcp_agent_subs(&self, agent: &AgentId) -> String {
        format!("{}mcp_agent_subs:{{{agent}}}", self.prefix)
    }

    /// The index a subscription of `scope` lives in.
    pub fn mcp_subs(&self, scope: SubScope<'_>) -> String {
        match scope {
            SubScope::Task(t) => self.mcp_task_subs(t),
            SubScope::Agent(a) => self.mcp_agent_subs(a),
        }
    }
}

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the text between
/// the first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A short tag that hashes to `slot` (the first decimal number that does), to name a key
/// of that slot (`outbox:{<tag>}`).
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let mut tags = vec![String::new(); SLOTS as usize];
        let mut left = SLOTS as usize;
        let mut n = 0u64;
        while left > 0 {
            let t = n.to_string();
            let s = key_slot(t.as_bytes()) as usize;
            if tags[s].is_empty() {
                tags[s] = t;
                left -= 1;
            }
            n += 1;
        }
        tags
    });
    &TAGS[(slot % SLOTS) as usize]
}

// The encodings both hot stores share (the in-process one keeps Redis's layout).

/// An MCP subscription index entry: `session \x1f key \x1f uri`.
pub fn subscription_entry(session: &str, key: &str, uri: &str) -> String {
    format!("{session}{SEP}{key}{SEP}{uri}")
}

/// The entry of a session's own list: which index holds which entry.
pub fn session_entry(index: &str, entry: &str) -> String {
    format!("{index}{SEP}{entry}")
}

/// The (index, entry) a session's own list names.
pub fn split_session_entry(e: &str) -> Option<(&str, &str)> {
    e.split_once(SEP)
}

/// An MCP session record as both hot stores keep it: `owner \x1f state` (an empty owner:
/// unbound). Neither an agent id nor serialised JSON holds a raw `\x1f`.
pub fn session_record(record: &McpSession) -> String {
    format!(
        "{}{SEP}{}",
        record.owner.as_deref().unwrap_or(""),
        record.state
    )
}

/// The record [`session_record`] wrote; a value without the separator is a record written
/// before sessions had owners: its whole text is the state, unbound.
pub fn parse_session_record(v: String) -> McpSession {
    match v.split_once(SEP) {
        Some((owner, state)) => McpSession {
            owner: (!owner.is_empty()).then(|| owner.to_owned()),
            state: state.to_owned(),
        },
        None => McpSession {
            owner: None,
            state: v,
        },
    }
}

/// The subscription an index entry records.
pub fn parse_subscription_entry(e: &str) -> Option<Subscriber> {
    let mut parts = e.splitn(3, SEP);
    Some(Subscriber {
        session: parts.next()?.to_owned(),
        key: parts.next()?.to_owned(),
        uri: parts.next()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_keys_are_named_as_before() {
        // The names as three nested `format!`s built them (issue #19 builds them in one go).
        let k = Keys::new("p:");
        let t = TaskId::parse("t-1.x").unwrap();
        let f = FilePath::parse("src/a b.py").unwrap();
        let tag = format!("{{p:task:{t}}}");
        assert_eq!(k.file(&t, &f), format!("p:file:{tag}:{f}"));
        assert_eq!(k.lock_prefix(&t), format!("p:lock:{tag}:"));
        assert_eq!(k.lease_index(&t), format!("p:leases:{tag}"));
        assert_eq!(k.mcp_task_subs(&t), format!("p:mcp_subs:{tag}"));
        assert_eq!(k.logs(&t), format!("p:logs:{tag}"));
        assert_eq!(k.events(&t), format!("p:events:{tag}"));
        assert_eq!(k.collab_members(&t), format!("p:collaboration:{tag}"));
        assert_eq!(
            k.collab_activity(&t),
            format!("p:collaboration_activity:{tag}")
        );
        assert_eq!(k.task(&t), "p:task:t-1.x");
        assert_eq!(k.channel(&t), "p:task:t-1.x:updates");
        assert_eq!(k.agent("a-1"), "p:agent:{a-1}");
        let bare = Keys::new("");
        assert_eq!(bare.events(&t), "events:{task:t-1.x}");
    }

    #[test]
    fn keys_are_unambiguous_and_prefixed() {
        let k = Keys::new("p:");
        let a = k.lock(
            &TaskId::parse("a:b").unwrap(),
            &FilePath::parse("c").unwrap(),
        );
        let b = k.lock(
            &TaskId::parse("a").unwrap(),
            &FilePath::parse("b:c").unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(a, "p:lock:{p:task:a:b}:c");
        assert_eq!(key_slot(a.as_bytes()), key_slot(b"p:task:a:b"));
        // Redis's own examples (CLUSTER KEYSLOT).
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), key_slot(b"hash_tag"));
        assert_eq!(key_slot(b"foo{}bar"), key_slot(b"foo{}bar"));
        for slot in [0, 1, 5000, SLOTS - 1] {
            assert_eq!(
                key_slot(format!("x{{{}}}", slot_tag(slot)).as_bytes()),
                slot
            );
        }
        assert_eq!(
            k.channel(&TaskId::parse("t1").unwrap()),
            "p:task:t1:updates"
        );
        let t = TaskId::parse("a:updates").unwrap();
        assert_eq!(k.task_of_channel(&k.channel(&t)), Some(t));
        assert_eq!(k.task_of_channel("task:t1:updates"), None);
        assert_eq!(k.task_of_channel("p:task:bad id:updates"), None);
    }
}
