//! Routing overrides written as SQL comments: `/* switchyard: primary */`,
//! `-- switchyard: replica`.
//!
//! Only real comments count: the text is tokenised by Postgres's own scanner, so a marker
//! inside a string literal (`SELECT '/* switchyard: replica */'`) or a quoted identifier is
//! ignored. Case and whitespace around the `:` do not matter, and the marker may share its
//! comment with other text (`/* app=billing switchyard: replica */`). When both appear,
//! `primary` wins. The scan runs only when the text contains `switchyard` at all, which a
//! byte search answers for nearly every statement.

use pg_query::protobuf::Token;

use super::Target;

const MARKER: &[u8] = b"switchyard";

/// The target a comment in `sql` asks for, if any.
pub(super) fn override_in(sql: &str) -> Option<Target> {
    if !contains_marker(sql) {
        return None;
    }
    // Text the scanner refuses does not parse either, and goes to the primary regardless.
    let tokens = pg_query::scan_tokens(sql).ok()?;
    let mut wanted = None;
    for token in tokens {
        if token.token != Token::CComment as i32 && token.token != Token::SqlComment as i32 {
            continue;
        }
        let (Ok(start), Ok(end)) = (usize::try_from(token.start), usize::try_from(token.end))
        else {
            continue;
        };
        match sql.get(start..end).and_then(marker_target) {
            Some(Target::Primary) => return Some(Target::Primary),
            Some(Target::Replica) => wanted = Some(Target::Replica),
            None => {}
        }
    }
    wanted
}

/// Does `text` contain `switchyard`, in any case? Cheap enough to run on every miss.
pub(super) fn contains_marker(text: &str) -> bool {
    marker_positions(text.as_bytes()).next().is_some()
}

fn marker_positions(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| b.eq_ignore_ascii_case(&b's'))
        .map(|(i, _)| i)
        .filter(move |&i| {
            bytes
                .get(i..i + MARKER.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(MARKER))
        })
}

/// The target named in one comment's text: `switchyard`, optional spaces, `:`, optional
/// spaces, then `primary` or `replica` as a whole word.
fn marker_target(comment: &str) -> Option<Target> {
    let bytes = comment.as_bytes();
    let mut found = None;
    for at in marker_positions(bytes) {
        let rest = comment[at + MARKER.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let rest = rest.trim_start();
        let word_end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        match rest[..word_end].to_ascii_lowercase().as_str() {
            "primary" => return Some(Target::Primary),
            "replica" => found = Some(Target::Replica),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_in_comments_only() {
        let cases = [
            ("SELECT 1 /* switchyard: primary */", Some(Target::Primary)),
            ("/*switchyard:replica*/ SELECT 1", Some(Target::Replica)),
            ("SELECT 1 -- SwitchYard :  REPLICA", Some(Target::Replica)),
            (
                "SELECT 1 /* app=x, switchyard: replica */",
                Some(Target::Replica),
            ),
            (
                "SELECT 1 /* switchyard: replica */ /* switchyard: primary */",
                Some(Target::Primary),
            ),
            ("SELECT '/* switchyard: replica */'", None),
            ("SELECT 1 AS \"-- switchyard: primary\"", None),
            ("SELECT 1 /* switchyard: replicas */", None),
            ("SELECT 1 /* switchyard replica */", None),
            ("SELECT switchyard FROM t", None),
            ("SELECT 1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(override_in(sql), want, "{sql}");
        }
    }
}
