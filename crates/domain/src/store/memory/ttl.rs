//! A keyspace whose entries may carry a time to live, as Redis keys do: an expired entry is
//! absent to every access (and removed by it), and [`TtlMap::sweep`] drops the expired
//! entries nobody touches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The deadline `ttl` after `now`; `None` (never) when the clock cannot represent it.
pub(super) fn deadline(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

fn expired(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

struct Slot<V> {
    value: V,
    /// `None`: no TTL (a Redis key without expiry).
    deadline: Option<Instant>,
}

pub(super) struct TtlMap<V> {
    map: HashMap<String, Slot<V>>,
}

impl<V> Default for TtlMap<V> {
    fn default() -> Self {
        TtlMap {
            map: HashMap::new(),
        }
    }
}

impl<V> TtlMap<V> {
    /// Removes `key` when it has expired, so that the accessors below only see live entries.
    fn purge(&mut self, key: &str, now: Instant) {
        if self.map.get(key).is_some_and(|s| expired(s.deadline, now)) {
            self.map.remove(key);
        }
    }

    pub(super) fn get(&mut self, key: &str, now: Instant) -> Option<&V> {
        self.purge(key, now);
        self.map.get(key).map(|s| &s.value)
    }

    /// A live entry, without removing an expired one (for `&self` readers).
    pub(super) fn peek(&self, key: &str, now: Instant) -> Option<&V> {
        self.map
            .get(key)
            .filter(|s| !expired(s.deadline, now))
            .map(|s| &s.value)
    }

    pub(super) fn get_mut(&mut self, key: &str, now: Instant) -> Option<&mut V> {
        self.purge(key, now);
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// The live entry, created with `make` (and no TTL) when absent.
    pub(super) fn get_or_insert_with(
        &mut self,
        key: &str,
        now: Instant,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        self.purge(key, now);
        &mut self
            .map
            .entry(key.to_owned())
            .or_insert_with(|| Slot {
                value: make(),
                deadline: None,
            })
            .value
    }

    /// Sets (replaces) an entry with its deadline (`None`: none).
    pub(super) fn insert(&mut self, key: &str, value: V, deadline: Option<Instant>) {
        self.map.insert(key.to_owned(), Slot { value, deadline });
    }

    /// The deadline of a live entry: `None` when absent, `Some(None)` when it has no TTL.
    pub(super) fn deadline_of(&mut self, key: &str, now: Instant) -> Option<Option<Instant>> {
        self.purge(key, now);
        self.map.get(key).map(|s| s.deadline)
    }

    /// Gives a live entry a new deadline (`EXPIRE`); false when there is no live entry.
    pub(super) fn expire(&mut self, key: &str, deadline: Option<Instant>, now: Instant) -> bool {
        self.purge(key, now);
        match self.map.get_mut(key) {
            Some(s) => {
                s.deadline = deadline;
                true
            }
            None => false,
        }
    }

    /// Removes an entry, answering it when it was live.
    pub(super) fn remove(&mut self, key: &str, now: Instant) -> Option<V> {
        self.purge(key, now);
        self.map.remove(key).map(|s| s.value)
    }

    /// Drops every expired entry; answers how many.
    pub(super) fn sweep(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| !expired(s.deadline, now));
        before - self.map.len()
    }

    /// Every live entry whose key starts with `prefix` (expired ones are skipped, not
    /// removed: this takes `&self`).
    pub(super) fn live_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        now: Instant,
    ) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
        self.map
            .iter()
            .filter(move |(k, s)| k.starts_with(prefix) && !expired(s.deadline, now))
            .map(|(k, s)| (k, &s.value))
    }

    /// Every entry still held (live or not yet swept).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
