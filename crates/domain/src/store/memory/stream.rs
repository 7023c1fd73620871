//! An append-only stream with Redis stream ids and Redis's range syntax.

use crate::error::{DomainError, Result};
use mcp_api::StreamId;
use std::collections::BTreeMap;
use std::ops::Bound;

pub(super) const MAX_ID: StreamId = StreamId {
    ms: u64::MAX,
    seq: u64::MAX,
};

/// The id `XADD *` gives the next entry: the current millisecond with sequence 0, or, when
/// the clock has not moved past the last id (same millisecond, or the clock went back), the
/// last id's millisecond with the next sequence. `None` once the last possible id was used.
pub(super) fn next_id(last: StreamId, now_ms: u64) -> Option<StreamId> {
    if now_ms > last.ms {
        return Some(StreamId { ms: now_ms, seq: 0 });
    }
    match last.seq.checked_add(1) {
        Some(seq) => Some(StreamId { ms: last.ms, seq }),
        None => Some(StreamId {
            ms: last.ms.checked_add(1)?,
            seq: 0,
        }),
    }
}

/// The first id after `id` (an exclusive range start); an error after the last possible id.
pub(super) fn after(id: StreamId) -> Result<StreamId> {
    match id.seq.checked_add(1) {
        Some(seq) => Ok(StreamId { ms: id.ms, seq }),
        None => match id.ms.checked_add(1) {
            Some(ms) => Ok(StreamId { ms, seq: 0 }),
            None => Err(DomainError::internal(
                "in-process store: invalid start ID for the interval",
            )),
        },
    }
}

/// The last id before `id` (an exclusive range end); an error before the first possible id.
pub(super) fn before(id: StreamId) -> Result<StreamId> {
    match id.seq.checked_sub(1) {
        Some(seq) => Ok(StreamId { ms: id.ms, seq }),
        None => match id.ms.checked_sub(1) {
            Some(ms) => Ok(StreamId { ms, seq: u64::MAX }),
            None => Err(DomainError::internal(
                "in-process store: invalid end ID for the interval",
            )),
        },
    }
}

/// One stream. It exists from its first append on, even once trimmed empty (like a Redis
/// stream key), and remembers its last id so ids never repeat.
pub(super) struct Stream<V> {
    entries: BTreeMap<StreamId, V>,
    last: StreamId,
}

impl<V> Default for Stream<V> {
    fn default() -> Self {
        Stream {
            entries: BTreeMap::new(),
            last: StreamId::ZERO,
        }
    }
}

impl<V> Stream<V> {
    /// The id of the next entry (`XADD *`), taken: no later entry gets it or a lower one.
    pub(super) fn next_id(&mut self, now_ms: i64) -> Result<StreamId> {
        let id = next_id(self.last, u64::try_from(now_ms).unwrap_or(0)).ok_or_else(|| {
            DomainError::internal("in-process store: the stream has exhausted the last possible ID")
        })?;
        self.last = id;
        Ok(id)
    }

    /// Adds the entry of an id from [`Stream::next_id`] and trims the stream to its newest
    /// `cap` entries when capped.
    pub(super) fn push(&mut self, id: StreamId, value: V, cap: Option<usize>) {
        self.entries.insert(id, value);
        if let Some(cap) = cap {
            while self.entries.len() > cap {
                self.entries.pop_first();
            }
        }
    }

    /// Appends (`XADD [MAXLEN cap] *`).
    pub(super) fn add(&mut self, value: V, now_ms: i64, cap: Option<usize>) -> Result<StreamId> {
        let id = self.next_id(now_ms)?;
        self.push(id, value, cap);
        Ok(id)
    }

    pub(super) fn last_entry(&self) -> Option<StreamId> {
        self.entries.last_key_value().map(|(id, _)| *id)
    }

    /// Entries in `[start, end]`, oldest first (`XRANGE`; `XREVRANGE` with `.rev()`).
    pub(super) fn range(
        &self,
        start: StreamId,
        end: StreamId,
    ) -> impl DoubleEndedIterator<Item = (&StreamId, &V)> {
        let (lo, hi) = if start <= end {
            (Bound::Included(start), Bound::Included(end))
        } else {
            // An empty range (BTreeMap panics on a reversed one).
            (Bound::Included(start), Bound::Excluded(start))
        };
        self.entries.range((lo, hi))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values()
    }
}
