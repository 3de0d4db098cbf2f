//! The shape every long-lived registry of the router shares: state kept by cluster name or
//! node address in a `DashMap`, outliving reloads, created on first use ([`shared`], and
//! [`ByNode`] for state per node of a cluster). A lookup that finds its entry takes a read
//! lock; only the first use of a key inserts.
//!
//! A leaf: it imports no other part.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;

/// The entry of `key` in `map`, made with `make` on first use.
pub fn shared_with<K, Q, V>(map: &DashMap<K, Arc<V>>, key: &Q, make: impl FnOnce() -> V) -> Arc<V>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    if let Some(v) = map.get(key) {
        return v.clone();
    }
    map.entry(key.to_owned())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// The entry of `key` in `map`, created empty on first use.
pub fn shared<K, Q, V>(map: &DashMap<K, Arc<V>>, key: &Q) -> Arc<V>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    shared_with(map, key, V::default)
}

/// State kept per node of a cluster, by cluster name and node address.
#[derive(Debug)]
pub struct ByNode<V> {
    map: DashMap<(String, String), Arc<V>>,
}

impl<V> Default for ByNode<V> {
    fn default() -> Self {
        ByNode {
            map: DashMap::new(),
        }
    }
}

impl<V: Default> ByNode<V> {
    /// The state of `node` in `cluster` (created on first use).
    pub fn get(&self, cluster: &str, node: &str) -> Arc<V> {
        shared(&self.map, &(cluster.to_string(), node.to_string()))
    }
}

impl<V> ByNode<V> {
    /// `f` of the state of `node` in `cluster`, if there is one (nothing is created).
    pub fn with<R>(&self, cluster: &str, node: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.map
            .get(&(cluster.to_string(), node.to_string()))
            .map(|v| f(&v))
    }

    /// `f(cluster, node, state)` for every entry.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str, &V)) {
        for entry in self.map.iter() {
            let (cluster, node) = entry.key();
            f(cluster, node, entry.value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_made_once_and_shared() {
        let map: DashMap<String, Arc<std::sync::atomic::AtomicU32>> = DashMap::new();
        let a = shared(&map, "main");
        a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = shared(&map, "main");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(map.len(), 1);
        let made = shared_with(&map, "other", || std::sync::atomic::AtomicU32::new(7));
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 7);
    }
}
