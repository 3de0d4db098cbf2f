//! [`ParamMap`]: parameter values by name, as a sorted list in one allocation.
//!
//! Every idle transaction-pooled client carries a few of these (its wanted values, its
//! startup values) and every pooled server connection one. They hold a handful of entries,
//! and a `BTreeMap` of `String`s allocates a node of room for 11 entries (about 540 bytes)
//! for the first: with thousands of idle clients, that was a large part of what each one
//! cost. A sorted `Vec` keeps the map's order (replays and their SQL come out the same)
//! and costs what its entries take.
//!
//! Serialized as a map (JSON object), as the `BTreeMap` it replaces was: a session handed
//! over at a binary upgrade reads the same either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Parameter values by name (lowercase names by convention of its users), in name order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct ParamMap {
    entries: Vec<(String, String)>,
}

impl ParamMap {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.find(name).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Set `name` to `value`; the value it had comes back.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                // Exact room: these maps seldom grow after login.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.find(name).ok()?;
        Some(self.entries.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }

    /// Names and values, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }
}

impl FromIterator<(String, String)> for ParamMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut map = ParamMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl From<BTreeMap<String, String>> for ParamMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already in order and without duplicates.
        ParamMap {
            entries: map.into_iter().collect(),
        }
    }
}

impl From<ParamMap> for BTreeMap<String, String> {
    fn from(map: ParamMap) -> Self {
        map.entries.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_name_order_and_replaces_removes_as_a_map() {
        let mut m = ParamMap::new();
        assert_eq!(m.insert("timezone".into(), "UTC".into()), None);
        assert_eq!(m.insert("application_name".into(), "a".into()), None);
        assert_eq!(
            m.insert("timezone".into(), "CET".into()).as_deref(),
            Some("UTC")
        );
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(names, ["application_name", "timezone"]);
        assert_eq!(m.get("timezone").map(String::as_str), Some("CET"));
        assert!(m.contains_key("application_name"));
        assert_eq!(m.remove("application_name").as_deref(), Some("a"));
        assert_eq!(m.remove("application_name"), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn serializes_as_the_map_it_replaced() {
        let m: ParamMap = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let json = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        let old: BTreeMap<String, String> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(ParamMap::from(old), m);
    }
}
