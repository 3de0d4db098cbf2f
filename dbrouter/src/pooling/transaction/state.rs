//! What the router keeps of one transaction-pooled client between its turns.
//!
//! Thousands of clients sit idle between turns, so this is kept small: the parameter maps
//! are sorted lists ([`Params`]) and the values the client was told ([`Reported`]) are one
//! buffer of `name\0value\0` pairs (a `BTreeMap` of `Vec`s was about 2.5 KB for the 14
//! values a PostgreSQL 15 login reports), shared by the clients that were told the same.

use std::sync::{Arc, Mutex};

use super::params::Params;
use super::prepared::ClientStatements;

/// One client's session state, carried from one server connection to the next.
#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// The parameter values it wants.
    pub params: Params,
    /// Its replayable startup parameters (what `RESET` goes back to).
    pub startup: Params,
    /// The `ParameterStatus` values it was told, by name.
    pub reported: Reported,
    /// Its named prepared statements.
    pub statements: ClientStatements,
}

/// The `ParameterStatus` values a client was told: `name\0value\0` pairs in one buffer, in
/// the order first told (names and values of a `ParameterStatus` hold no NUL). The buffer
/// is shared by the clients of a node that were told the same values ([`Reported::share`]:
/// most of a node's clients log in alike), and copied when one client's values change.
#[derive(Debug, Default, Clone)]
pub(super) struct Reported {
    pairs: Option<Arc<Vec<u8>>>,
}

impl PartialEq for Reported {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Reported {}

/// The values of the latest login to a node, for the next logins that were told the same
/// to share ([`Reported::share`]).
#[derive(Debug, Default)]
pub(super) struct LastReported(Mutex<Option<Arc<Vec<u8>>>>);

impl Reported {
    fn bytes(&self) -> &[u8] {
        self.pairs.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// Name and value of each pair, with the offset of the pair and of its end.
    fn pairs(&self) -> impl Iterator<Item = (usize, &[u8], &[u8], usize)> {
        let bytes = self.bytes();
        let mut at = 0;
        std::iter::from_fn(move || {
            let rest = bytes.get(at..).filter(|r| !r.is_empty())?;
            let mut parts = rest.splitn(3, |b| *b == 0);
            let (name, value) = (parts.next()?, parts.next()?);
            let start = at;
            at += name.len() + value.len() + 2;
            Some((start, name, value, at))
        })
    }

    /// Share the buffer of `last` when it holds the same values; else this one becomes
    /// `last`, for the next login.
    pub fn share(&mut self, last: &LastReported) {
        let Some(mine) = self.pairs.clone() else {
            return;
        };
        let mut last = last.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(theirs) if **theirs == *mine => self.pairs = Some(theirs.clone()),
            _ => *last = Some(mine),
        }
    }

    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.pairs()
            .find(|(_, n, _, _)| *n == name)
            .map(|(_, _, v, _)| v)
    }

    /// Record that the client was told `name` is `value`.
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let old = self
            .pairs()
            .find(|(_, n, _, _)| *n == name)
            .map(|(start, _, v, end)| (start, v == value, end));
        match old {
            Some((_, true, _)) => return,
            Some((start, false, end)) => {
                self.own().drain(start..end);
            }
            None => {}
        }
        let pairs = self.own();
        // Exact room: the values are told at login and seldom change after.
        pairs.reserve_exact(name.len() + value.len() + 2);
        for part in [name, value] {
            pairs.extend_from_slice(part);
            pairs.push(0);
        }
    }

    /// The buffer, this client's own (copied first if it is shared).
    fn own(&mut self) -> &mut Vec<u8> {
        Arc::make_mut(self.pairs.get_or_insert_with(Arc::default))
    }

    /// Bytes of heap it holds.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.pairs.as_ref().map_or(0, |p| p.capacity())
    }

    /// Names and values, in the order first told (a changed value moves to the end).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs().map(|(_, n, v, _)| (n, v))
    }
}

impl<'a> FromIterator<(&'a [u8], &'a [u8])> for Reported {
    fn from_iter<I: IntoIterator<Item = (&'a [u8], &'a [u8])>>(iter: I) -> Self {
        let mut r = Reported::default();
        for (n, v) in iter {
            r.insert(n, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::{LastReported, Reported};

    #[test]
    fn clients_told_the_same_share_one_buffer_until_one_changes() {
        let told = |tz: &[u8]| -> Reported {
            [
                (&b"TimeZone"[..], tz),
                (&b"DateStyle"[..], &b"ISO, MDY"[..]),
            ]
            .into_iter()
            .collect()
        };
        let last = LastReported::default();
        let (mut a, mut b, mut c) = (told(b"UTC"), told(b"UTC"), told(b"Europe/Paris"));
        a.share(&last);
        b.share(&last);
        c.share(&last);
        let ptr = |r: &Reported| r.pairs.as_ref().map(std::sync::Arc::as_ptr);
        assert_eq!(ptr(&a), ptr(&b), "the same values share one buffer");
        assert_ne!(ptr(&a), ptr(&c));
        b.insert(b"TimeZone", b"Asia/Tokyo");
        assert_ne!(ptr(&a), ptr(&b), "a change copies");
        assert_eq!(a.get(b"TimeZone"), Some(&b"UTC"[..]));
        assert_eq!(b.get(b"TimeZone"), Some(&b"Asia/Tokyo"[..]));
        assert_eq!(b.get(b"DateStyle"), Some(&b"ISO, MDY"[..]));
    }

    #[test]
    fn reported_values_are_found_replaced_and_listed() {
        let mut r = Reported::default();
        assert_eq!(r.get(b"TimeZone"), None);
        r.insert(b"TimeZone", b"UTC");
        r.insert(b"application_name", b"");
        r.insert(b"DateStyle", b"ISO, MDY");
        assert_eq!(r.get(b"application_name"), Some(&b""[..]));
        r.insert(b"TimeZone", b"Europe/Paris");
        r.insert(b"DateStyle", b"ISO, MDY");
        assert_eq!(r.get(b"TimeZone"), Some(&b"Europe/Paris"[..]));
        let all: Vec<(&[u8], &[u8])> = r.iter().collect();
        assert_eq!(
            all,
            [
                (&b"application_name"[..], &b""[..]),
                (&b"DateStyle"[..], &b"ISO, MDY"[..]),
                (&b"TimeZone"[..], &b"Europe/Paris"[..]),
            ]
        );
        assert_eq!(all.into_iter().collect::<Reported>(), r);
    }
}
