//! What the router keeps of one transaction-pooled client between its turns.
//!
//! Thousands of clients sit idle between turns, so this is kept small: the parameter maps
//! are sorted lists ([`Params`]) and the values the client was told ([`Reported`]) are one
//! buffer of `name\0value\0` pairs (a `BTreeMap` of `Vec`s was about 2.5 KB for the 14
//! values a PostgreSQL 15 login reports).

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
/// the order first told (names and values of a `ParameterStatus` hold no NUL).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Reported {
    pairs: Vec<u8>,
}

impl Reported {
    /// Name and value of each pair, with the offset of the pair and of its end.
    fn pairs(&self) -> impl Iterator<Item = (usize, &[u8], &[u8], usize)> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let rest = self.pairs.get(at..).filter(|r| !r.is_empty())?;
            let mut parts = rest.splitn(3, |b| *b == 0);
            let (name, value) = (parts.next()?, parts.next()?);
            let start = at;
            at += name.len() + value.len() + 2;
            Some((start, name, value, at))
        })
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
                self.pairs.drain(start..end);
            }
            None => {}
        }
        // Exact room: the values are told at login and seldom change after.
        self.pairs.reserve_exact(name.len() + value.len() + 2);
        for part in [name, value] {
            self.pairs.extend_from_slice(part);
            self.pairs.push(0);
        }
    }

    /// Bytes of heap it holds.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.pairs.capacity()
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
    use super::Reported;

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
