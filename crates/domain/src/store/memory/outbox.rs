//! The sync outbox: one stream read through consumer groups, as Redis streams do it. A group
//! has a last-delivered id and a pending list (entry → consumer, delivery time); an entry is
//! delivered once to one consumer, stays pending until acknowledged, and can be claimed
//! from a consumer that has held it too long.

use super::stream::{Stream, invalid_id, parse_id};
use crate::error::{DomainError, Result};
use crate::store::hot::{OutboxDepth, OutboxEntry};
use mcp_api::StreamId;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// An outbox entry's fields, in the order they were added.
pub(super) type Fields = Vec<(String, String)>;

/// `XAUTOCLAIM` examines at most this many pending entries per entry it may answer.
const CLAIM_ATTEMPTS_FACTOR: usize = 10;

struct Pending {
    consumer: String,
    delivered: Instant,
    deliveries: u64,
}

struct Group {
    last_delivered: StreamId,
    pel: BTreeMap<StreamId, Pending>,
}

/// The group of that name, created (delivering from the stream's start) if missing.
fn group_in<'a>(groups: &'a mut HashMap<String, Group>, name: &str) -> &'a mut Group {
    groups.entry(name.to_owned()).or_insert_with(Group::new)
}

impl Group {
    fn new() -> Group {
        Group {
            last_delivered: StreamId::ZERO,
            pel: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
pub(super) struct Outbox {
    stream: Stream<Fields>,
    groups: HashMap<String, Group>,
}

fn entry(id: &StreamId, fields: &Fields) -> OutboxEntry {
    OutboxEntry {
        id: id.to_string(),
        fields: fields.iter().cloned().collect(),
    }
}

/// `COUNT` of `XREADGROUP`: 0 is no limit.
fn read_limit(count: usize) -> usize {
    if count == 0 { usize::MAX } else { count }
}

impl Outbox {
    pub(super) fn add(&mut self, fields: Fields, now_ms: i64) -> Result<StreamId> {
        self.stream.add(fields, now_ms, None)
    }

    pub(super) fn len(&self) -> usize {
        self.stream.len()
    }

    /// Creates the group (delivering from the stream's start) unless it exists.
    pub(super) fn create_group(&mut self, group: &str) {
        group_in(&mut self.groups, group);
    }

    /// `XREADGROUP … >`: entries after the group's last-delivered id, now pending in
    /// `consumer`. A missing group is created first (as the Redis store does on `NOGROUP`).
    pub(super) fn read_new(
        &mut self,
        group: &str,
        consumer: &str,
        count: usize,
        now: Instant,
    ) -> Vec<OutboxEntry> {
        let g = group_in(&mut self.groups, group);
        let mut out = Vec::new();
        for (id, fields) in self.stream.after(g.last_delivered).take(read_limit(count)) {
            g.last_delivered = *id;
            g.pel.insert(
                *id,
                Pending {
                    consumer: consumer.to_owned(),
                    delivered: now,
                    deliveries: 1,
                },
            );
            out.push(entry(id, fields));
        }
        out
    }

    /// `XREADGROUP … 0`: the consumer's own pending entries still in the stream, oldest
    /// first; each counts as delivered again (its idle time restarts).
    pub(super) fn read_pending(
        &mut self,
        group: &str,
        consumer: &str,
        count: usize,
        now: Instant,
    ) -> Vec<OutboxEntry> {
        let g = group_in(&mut self.groups, group);
        let mut out = Vec::new();
        let limit = read_limit(count);
        for (id, p) in g.pel.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if p.consumer != consumer {
                continue;
            }
            let Some(fields) = self.stream.get(id) else {
                continue;
            };
            p.delivered = now;
            p.deliveries += 1;
            out.push(entry(id, fields));
        }
        out
    }

    /// `XAUTOCLAIM … 0-0 COUNT count`: entries pending in any consumer for at least
    /// `min_idle` move to `consumer` with their idle time restarted. Pending entries no
    /// longer in the stream are dropped from the pending list (and count against `count`).
    /// At most `count` × 10 pending entries are examined. A missing group is created and
    /// nothing is claimed.
    pub(super) fn claim_idle(
        &mut self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        now: Instant,
    ) -> Result<Vec<OutboxEntry>> {
        if count == 0 {
            return Err(DomainError::internal(
                "in-process store: XAUTOCLAIM COUNT must be > 0",
            ));
        }
        let Some(g) = self.groups.get_mut(group) else {
            self.create_group(group);
            return Ok(Vec::new());
        };
        let mut attempts = count.saturating_mul(CLAIM_ATTEMPTS_FACTOR);
        let mut left = count;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (id, p) in g.pel.iter_mut() {
            if attempts == 0 || left == 0 {
                break;
            }
            attempts -= 1;
            let Some(fields) = self.stream.get(id) else {
                gone.push(*id);
                left -= 1;
                continue;
            };
            if now.saturating_duration_since(p.delivered) < min_idle {
                continue;
            }
            consumer.clone_into(&mut p.consumer);
            p.delivered = now;
            p.deliveries += 1;
            out.push(entry(id, fields));
            left -= 1;
        }
        for id in gone {
            g.pel.remove(&id);
        }
        Ok(out)
    }

    /// `XACK` + `XDEL`: the entries leave the group's pending list and the stream. Every id
    /// is checked first; one invalid id changes nothing.
    pub(super) fn ack(&mut self, group: &str, ids: &[String]) -> Result<()> {
        let parsed = ids
            .iter()
            .map(|id| parse_id(id, 0))
            .collect::<Option<Vec<StreamId>>>()
            .ok_or_else(invalid_id)?;
        if let Some(g) = self.groups.get_mut(group) {
            for id in &parsed {
                g.pel.remove(id);
            }
        }
        for id in &parsed {
            self.stream.remove(id);
        }
        Ok(())
    }

    /// Whether the entry is still in the outbox (not yet acknowledged).
    pub(super) fn holds(&self, id: &StreamId) -> bool {
        self.stream.get(id).is_some()
    }

    /// The stream's length and the group's pending count (0 for a missing group).
    pub(super) fn depth(&self, group: &str) -> OutboxDepth {
        OutboxDepth {
            length: self.stream.len() as u64,
            pending: self.groups.get(group).map_or(0, |g| g.pel.len() as u64),
        }
    }

    /// Bytes held, roughly (see `State::bytes`).
    pub(super) fn bytes(&self) -> usize {
        let entries: usize = self
            .stream
            .values()
            .map(|f| {
                f.iter()
                    .map(|(k, v)| k.len() + v.len() + 2 * super::STRING_OVERHEAD)
                    .sum::<usize>()
                    + super::ENTRY_OVERHEAD
            })
            .sum();
        let pending: usize = self
            .groups
            .iter()
            .map(|(name, g)| {
                name.len()
                    + g.pel
                        .values()
                        .map(|p| p.consumer.len() + super::ENTRY_OVERHEAD)
                        .sum::<usize>()
            })
            .sum();
        entries + pending
    }

    #[cfg(test)]
    pub(super) fn deliveries(&self, group: &str, id: &str) -> Option<(String, u64)> {
        let g = self.groups.get(group)?;
        let p = g.pel.get(&StreamId::parse(id)?)?;
        Some((p.consumer.clone(), p.deliveries))
    }
}
