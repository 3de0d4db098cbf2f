//! `If-Match` as RFC 9110 §13.1.1 defines it, for the config's version ETags (`"7"`).
//!
//! The header is `*` or a comma-separated list of entity tags (several header lines make one
//! list). It uses the *strong* comparison: a weak tag (`W/"7"`) never matches, and neither
//! does a tag that is no config version (`"abc"`): both are a failed precondition (412), not
//! a bad request. Only text that is not entity-tag syntax at all is a 400.

use http::HeaderValue;

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`: any current config matches (there always is one).
    Any,
    /// The config versions named by strong tags; empty when no tag can match a version, so
    /// the precondition fails whatever is running.
    Versions(Vec<u64>),
}

impl IfMatch {
    /// The version to hand the applier, which checks it under its lock: the running one
    /// when it is in the list, else any listed one (it is stale, and the applier refuses
    /// it with 412). `Err(())` when nothing in the list can match: 412 straight away.
    pub fn expect_version(&self, current: u64) -> Result<Option<u64>, ()> {
        match self {
            IfMatch::Any => Ok(None),
            IfMatch::Versions(v) if v.contains(&current) => Ok(Some(current)),
            IfMatch::Versions(v) => v.first().copied().map(Some).ok_or(()),
        }
    }
}

/// Why an `If-Match` header is not entity-tag syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// Parse every `If-Match` header line of a request.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Result<IfMatch, Malformed> {
    let mut seen = false;
    let mut any = false;
    let mut elements = 0usize;
    let mut versions = Vec::new();
    for value in values {
        seen = true;
        let mut rest = value.as_bytes();
        loop {
            rest = rest.trim_ascii_start();
            // RFC 9110 §5.6.1: empty list elements are tolerated.
            if let Some(r) = rest.strip_prefix(b",") {
                rest = r;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            elements += 1;
            if let Some(r) = rest.strip_prefix(b"*") {
                any = true;
                rest = r;
            } else {
                let (tag, r) = entity_tag(rest).ok_or(Malformed)?;
                if let Some(v) = tag {
                    versions.push(v);
                }
                rest = r;
            }
            rest = rest.trim_ascii_start();
            match rest.split_first() {
                None => break,
                Some((b',', r)) => rest = r,
                Some(_) => return Err(Malformed),
            }
        }
    }
    match (seen, any) {
        (false, _) => Ok(IfMatch::Any),
        // `*` is the whole field value, never one element of a list.
        (true, true) if elements == 1 => Ok(IfMatch::Any),
        (true, true) => Err(Malformed),
        // A header with no element at all (`If-Match: ,`) is not a valid list either.
        (true, false) if elements == 0 => Err(Malformed),
        (true, false) => Ok(IfMatch::Versions(versions)),
    }
}

/// One entity tag at the start of `s`: `Some(version)` for a strong tag whose opaque text is
/// a config version, `None` for any other (weak, or not a version). `None` overall when `s`
/// does not start with an entity tag.
fn entity_tag(s: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let s = s.strip_prefix(b"\"")?;
    let end = s.iter().position(|&b| b == b'"')?;
    let opaque = &s[..end];
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    let version = if weak { None } else { version(opaque) };
    Some((version, &s[end + 1..]))
}

/// A config version as we print it in an ETag: decimal digits, no sign, no leading zero.
fn version(opaque: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(opaque).ok()?;
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &[u8]) -> Result<IfMatch, Malformed> {
        let v = HeaderValue::from_bytes(v).map_err(|_| Malformed)?;
        parse([&v])
    }

    #[test]
    fn strong_version_tags_are_versions() {
        assert_eq!(one(b"\"7\""), Ok(IfMatch::Versions(vec![7])));
        assert_eq!(one(b" \"3\" , \"4\" "), Ok(IfMatch::Versions(vec![3, 4])));
        let (a, b) = (
            HeaderValue::from_static("\"1\""),
            HeaderValue::from_static("\"2\""),
        );
        assert_eq!(parse([&a, &b]), Ok(IfMatch::Versions(vec![1, 2])));
        assert_eq!(parse([]), Ok(IfMatch::Any));
        assert_eq!(one(b"*"), Ok(IfMatch::Any));
    }

    /// Issue 15: `"abc"` and `W/"3"` are valid tags that match no version (RFC 9110: the
    /// strong comparison, so a weak tag never matches): 412, not 400.
    #[test]
    fn weak_and_foreign_tags_match_nothing() {
        for v in [
            &b"\"abc\""[..],
            b"W/\"3\"",
            b"\"\"",
            b"\"07\"",
            b"\"-1\"",
            b"\"\xff1\"",
        ] {
            let parsed = one(v);
            assert_eq!(parsed, Ok(IfMatch::Versions(vec![])), "{v:?}");
            assert_eq!(parsed.map(|p| p.expect_version(3)), Ok(Err(())), "{v:?}");
        }
        assert_eq!(one(b"W/\"3\", \"5\""), Ok(IfMatch::Versions(vec![5])));
    }

    #[test]
    fn the_running_version_is_picked_from_a_list() {
        let list = IfMatch::Versions(vec![2, 3]);
        assert_eq!(list.expect_version(3), Ok(Some(3)));
        assert_eq!(list.expect_version(9), Ok(Some(2)));
        assert_eq!(IfMatch::Any.expect_version(9), Ok(None));
    }

    #[test]
    fn bad_syntax_is_malformed() {
        for v in [
            &b"7"[..],
            b"abc",
            b"\"7",
            b"\"7\" \"8\"",
            b"\"7\"x",
            b"w/\"7\"",
            b"*, \"7\"",
            b"**",
            b",",
            b"",
            b"\"a b\"",
        ] {
            assert_eq!(one(v), Err(Malformed), "{:?}", String::from_utf8_lossy(v));
        }
    }
}
