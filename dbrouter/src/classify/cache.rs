//! A bounded map from statement text to [`Decision`], shared by every session of a cluster.
//!
//! Prepared statements and ORM queries repeat the same text endlessly, and parsing costs
//! tens of microseconds where a lookup costs well under one. The cache is split into shards,
//! each behind its own `RwLock`, so concurrent lookups only share a read lock. Eviction is
//! CLOCK (second chance): a hit sets the entry's `referenced` bit with a relaxed atomic store
//! under the read lock; an insert into a full shard sweeps a hand that clears set bits and
//! evicts the first entry found clear, so entries in use survive and one-off texts (literal
//! values inlined into the SQL) make way. Each shard is bounded by entries and by bytes.
//! Hit and miss counts live in the shards too, so sessions on different cores working on
//! different statements never write to the same cache line.
//!
//! Entries are keyed by a 64-bit SipHash of the text with a per-process random key (clients
//! choose the text, so the hash must not be predictable), and the text is compared on a hit:
//! a collision is a miss, never a wrong answer.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use super::{Decision, Limits};

/// Shards: enough that sessions on different cores rarely meet on one lock.
const SHARDS: usize = 32;
/// Bytes charged per entry on top of its text: the slot, the index entry, the decision.
const ENTRY_OVERHEAD: usize = 128;

/// The cache itself: see the module docs.
#[derive(Debug)]
pub(super) struct DecisionCache {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    max_len: usize,
}

#[derive(Debug)]
struct Shard {
    /// Text hash → index into `slots`.
    index: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    slots: Vec<Slot>,
    /// The CLOCK hand: the next slot the eviction sweep looks at.
    hand: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    text: Box<str>,
    decision: Decision,
    referenced: AtomicBool,
}

impl DecisionCache {
    pub(super) fn new(limits: &Limits) -> Self {
        let max_entries = limits.cache_entries.div_ceil(SHARDS).max(1);
        let max_bytes = (limits.cache_bytes / SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    index: HashMap::default(),
                    slots: Vec::new(),
                    hand: 0,
                    bytes: 0,
                    max_entries,
                    max_bytes,
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                })
            })
            .collect();
        let max_len = max_bytes.saturating_sub(ENTRY_OVERHEAD);
        Self {
            shards,
            hasher: RandomState::new(),
            max_len,
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits the shard's own table does not index by (it uses the low bits, and the top 7
        // as tags), so keys stay spread inside each shard.
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// The cached decision for exactly `sql`, marking it recently used; counted as a hit,
    /// or as a miss when `final_try` (not when another key is tried next).
    pub(super) fn get(&self, sql: &str, final_try: bool) -> Option<Decision> {
        let hash = self.hasher.hash_one(sql);
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let found = shard
            .index
            .get(&hash)
            .map(|&i| &shard.slots[i])
            .filter(|s| *s.text == *sql);
        let Some(slot) = found else {
            if final_try {
                shard.misses.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        shard.hits.fetch_add(1, Ordering::Relaxed);
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(slot.decision.clone())
    }

    /// Remember `decision` for `sql`, evicting what CLOCK picks if the shard is full.
    pub(super) fn insert(&self, sql: &str, decision: &Decision) {
        if sql.len() > self.max_len {
            return;
        }
        let hash = self.hasher.hash_one(sql);
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let cost = sql.len() + ENTRY_OVERHEAD;
        let slot = Slot {
            hash,
            text: sql.into(),
            decision: decision.clone(),
            referenced: AtomicBool::new(false),
        };
        if let Some(&i) = shard.index.get(&hash) {
            // Inserted by another session meanwhile, or a hash collision: replace.
            let old = std::mem::replace(&mut shard.slots[i], slot);
            shard.bytes = shard.bytes - (old.text.len() + ENTRY_OVERHEAD) + cost;
            return;
        }
        while !shard.slots.is_empty()
            && (shard.slots.len() >= shard.max_entries || shard.bytes + cost > shard.max_bytes)
        {
            shard.evict_one();
        }
        let at = shard.slots.len();
        shard.index.insert(hash, at);
        shard.slots.push(slot);
        shard.bytes += cost;
    }

    /// `(hits, misses, entries)` summed over the shards.
    pub(super) fn counts(&self) -> (u64, u64, usize) {
        self.shards.iter().fold((0, 0, 0), |(h, m, n), shard| {
            let s = shard.read().unwrap_or_else(PoisonError::into_inner);
            let (hits, misses) = (
                s.hits.load(Ordering::Relaxed),
                s.misses.load(Ordering::Relaxed),
            );
            (h + hits, m + misses, n + s.slots.len())
        })
    }
}

impl Shard {
    /// CLOCK: give referenced entries a second chance, evict the first that has had it.
    /// Ends within two sweeps, since the first clears every bit it passes.
    fn evict_one(&mut self) {
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            if self.slots[self.hand]
                .referenced
                .swap(false, Ordering::Relaxed)
            {
                self.hand += 1;
                continue;
            }
            let gone = self.slots.swap_remove(self.hand);
            self.index.remove(&gone.hash);
            self.bytes -= gone.text.len() + ENTRY_OVERHEAD;
            if let Some(moved) = self.slots.get(self.hand) {
                self.index.insert(moved.hash, self.hand);
            }
            return;
        }
    }
}

/// The index keys are already SipHash values: hashing them again would only cost time.
#[derive(Debug, Default, Clone, Copy)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::classify::Reason;

    fn limits(entries: usize) -> Limits {
        Limits {
            cache_entries: entries,
            cache_bytes: 1 << 30,
            ..Limits::default()
        }
    }

    #[test]
    fn hit_after_insert_and_miss_for_other_text() {
        let cache = DecisionCache::new(&limits(1024));
        cache.insert("SELECT a FROM t", &Decision::replica(Reason::Read));
        assert_eq!(
            cache.get("SELECT a FROM t", true),
            Some(Decision::replica(Reason::Read))
        );
        assert_eq!(cache.get("SELECT b FROM t", true), None);
        assert_eq!(cache.counts(), (1, 1, 1));
    }

    #[test]
    fn stays_within_its_entry_limit_and_keeps_what_is_used() {
        let cache = DecisionCache::new(&limits(SHARDS * 4));
        cache.insert("hot", &Decision::replica(Reason::Read));
        for i in 0..10_000 {
            assert!(
                cache.get("hot", true).is_some(),
                "hot entry evicted after {i} inserts"
            );
            cache.insert(&format!("SELECT {i}"), &Decision::replica(Reason::Read));
        }
        let (_, _, entries) = cache.counts();
        assert!(entries <= SHARDS * 4, "{entries} entries");
    }

    #[test]
    fn stays_within_its_byte_limit_and_skips_text_longer_than_a_shard() {
        let cache = DecisionCache::new(&Limits {
            cache_entries: 1 << 20,
            cache_bytes: SHARDS * 4096,
            ..Limits::default()
        });
        for i in 0..5_000 {
            cache.insert(&format!("{i:0>500}"), &Decision::primary(Reason::Write));
        }
        let held: usize = cache.shards.iter().map(|s| s.read().unwrap().bytes).sum();
        assert!(held <= SHARDS * 4096, "{held} bytes");
        cache.insert(&"x".repeat(4000), &Decision::primary(Reason::Write));
        assert_eq!(cache.get(&"x".repeat(4000), true), None);
    }
}
