//! The decision cache's key for a statement: its text with the values of its literals taken
//! out ([`cache_key`]), by one scan of the bytes rather than a parse.
//!
//! psql, pgbench `-M simple` and every driver that interpolates on the client side put
//! values in the text (`… WHERE aid = 4711`), so a cache keyed by the exact text misses on
//! every statement and the grammar runs every time. Whether a statement may run on a
//! replica does not depend on the value of a literal, only on the statement's shape: with
//! every numeric constant written `0` (`.0` when it starts with a point) and every string
//! constant `''`, all the texts that share a key have the same tokens but for those values,
//! and so the same decision.
//!
//! That holds only where this scan cuts the text into tokens as PostgreSQL's lexer does
//! (`scan.l`; `pg_query` is that lexer). It follows the lexer for what can hide or look
//! like a literal: `--` and nested `/* */` comments and `"quoted identifiers"` are copied
//! as they are (so override comments stay in the key); `$1` parameters and dollar-quoted
//! strings are copied; `'…'` with `''` escapes, `E'…'` with backslash escapes, and the
//! `B`/`X`/`N`/`U&` prefixes are told apart by the word just before the quote, as the lexer
//! does (the prefix stays in the key); numbers are decimal, `.5`, exponents and
//! `0x`/`0o`/`0b` integers. Whatever it is not sure of gives the text back unchanged, and
//! the exact text is the key, as before: a number followed at once by a letter, a `.`,
//! a `$` or an underscore, digit separators, unterminated quotes or comments, a NUL. So do
//! the few places where a literal's value does decide: `COPY` (`TO ''` is `TO STDOUT` in
//! the parse tree), and `E'…'` strings with backslash escapes and `U&'…'` strings (the lexer
//! refuses some escapes, and a text that does not parse goes to the primary). The
//! `classify` fuzz target checks that texts which differ only in their literals get the
//! same decision from the full parse.

use std::borrow::Cow;

/// The key the decision for `sql` is cached under (see the module docs): `sql` with its
/// literal values taken out, or `sql` itself when it has none or the scan is unsure.
pub fn cache_key(sql: &str) -> Cow<'_, str> {
    match normalize(sql.as_bytes(), Literals::Blank) {
        Some(Some(key)) => match String::from_utf8(key) {
            Ok(key) => Cow::Owned(key),
            Err(_) => Cow::Borrowed(sql),
        },
        _ => Cow::Borrowed(sql),
    }
}

/// `sql` with every literal the scan is sure of given another value (numbers `7`, strings
/// `'x'`): the fuzz target's check that a decision does not depend on them. `None` where
/// [`cache_key`] would keep the text as it is.
pub fn with_other_literals(sql: &str) -> Option<String> {
    let out = normalize(sql.as_bytes(), Literals::Other)??;
    String::from_utf8(out).ok()
}

/// What a literal becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Literals {
    Blank,
    Other,
}

/// Bytes that continue an identifier (PostgreSQL's `ident_cont`: letters, digits, `_`, `$`
/// and every byte of a multi-byte character).
fn ident_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Bytes that start an identifier (`ident_start`).
fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// `None`: unsure, keep the text. `Some(None)`: no literal. `Some(Some(key))`.
fn normalize(s: &[u8], lit: Literals) -> Option<Option<Vec<u8>>> {
    if s.contains(&0) {
        // The parser reads a C string: it would stop there.
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    // Bytes of `s` before `copied` are in `out` (or need not be: no literal yet).
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'-' if s.get(i + 1) == Some(&b'-') => {
                i = s[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .map_or(s.len(), |n| i + n);
            }
            b'/' if s.get(i + 1) == Some(&b'*') => i = block_comment_end(s, i)?,
            b'"' => i = quoted_end(s, i, b'"', false)?,
            b'$' => i = dollar_end(s, i)?,
            b'\'' => {
                // A string with no prefix word (one right after a word is handled there).
                let end = quoted_end(s, i, b'\'', false)?;
                replace(&mut out, &mut copied, s, i, end, string_placeholder(lit));
                i = end;
            }
            b'0'..=b'9' => {
                let end = number_end(s, i)?;
                replace(
                    &mut out,
                    &mut copied,
                    s,
                    i,
                    end,
                    number_placeholder(lit, false),
                );
                i = end;
            }
            b'.' if s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = number_end(s, i)?;
                replace(
                    &mut out,
                    &mut copied,
                    s,
                    i,
                    end,
                    number_placeholder(lit, true),
                );
                i = end;
            }
            _ if ident_start(b) => {
                let start = i;
                while i < s.len() && ident_cont(s[i]) {
                    i += 1;
                }
                let word = &s[start..i];
                let quote = s.get(i) == Some(&b'\'');
                let unicode = word.eq_ignore_ascii_case(b"u")
                    && s.get(i) == Some(&b'&')
                    && s.get(i + 1) == Some(&b'\'');
                if unicode {
                    i += 1;
                }
                if word.eq_ignore_ascii_case(b"copy") {
                    // `COPY … TO ''` reads as `TO STDOUT` in the tree: the value counts.
                    return None;
                }
                if quote || unicode {
                    let escapes = word.eq_ignore_ascii_case(b"e");
                    let end = quoted_end(s, i, b'\'', escapes)?;
                    if unicode || (escapes && s[i..end].contains(&b'\\')) {
                        // Escapes the lexer may refuse (`\u00`): the value counts.
                        return None;
                    }
                    replace(&mut out, &mut copied, s, i, end, string_placeholder(lit));
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    Some(out.map(|mut o| {
        o.extend_from_slice(&s[copied..]);
        o
    }))
}

fn string_placeholder(lit: Literals) -> &'static [u8] {
    match lit {
        Literals::Blank => b"''",
        Literals::Other => b"'x'",
    }
}

fn number_placeholder(lit: Literals, point: bool) -> &'static [u8] {
    match (lit, point) {
        (Literals::Blank, false) => b"0",
        (Literals::Blank, true) => b".0",
        (Literals::Other, false) => b"7",
        (Literals::Other, true) => b".7",
    }
}

/// Put `s[copied..start]` and then `with` (for `s[start..end]`) into `out`.
fn replace(
    out: &mut Option<Vec<u8>>,
    copied: &mut usize,
    s: &[u8],
    start: usize,
    end: usize,
    with: &[u8],
) {
    let o = out.get_or_insert_with(|| Vec::with_capacity(s.len()));
    o.extend_from_slice(&s[*copied..start]);
    o.extend_from_slice(with);
    *copied = end;
}

/// The end of the quoted token opening at `s[i]` (`q` is `'` or `"`; a doubled quote is one
/// quote; `escapes`: a backslash escapes the next byte, as in `E'…'`). `None`: unterminated.
fn quoted_end(s: &[u8], i: usize, q: u8, escapes: bool) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' if escapes => j += 2,
            c if c == q => {
                if s.get(j + 1) == Some(&q) {
                    j += 2;
                } else {
                    return Some(j + 1);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// The end of the (nested) block comment opening at `s[i]`. `None`: unterminated.
fn block_comment_end(s: &[u8], i: usize) -> Option<usize> {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < s.len() {
        match (s[j], s[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// The end of what starts with `$` at `s[i]` (not inside a word: words take their `$`s):
/// a parameter `$n` or a dollar-quoted string, copied as they are. `None`: unsure.
fn dollar_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if s.get(j).is_some_and(u8::is_ascii_digit) {
        while s.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        return match s.get(j) {
            Some(&c) if ident_cont(c) => None,
            _ => Some(j),
        };
    }
    if s.get(j).is_some_and(|&c| ident_start(c)) {
        while s.get(j).is_some_and(|&c| ident_cont(c) && c != b'$') {
            j += 1;
        }
    }
    if s.get(j) != Some(&b'$') {
        // A lone `$` (not valid SQL): keep the text as it is.
        return None;
    }
    let tag = &s[i..=j];
    let body = j + 1;
    s[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map(|n| body + n + tag.len())
}

/// The end of the number starting at `s[i]` (a digit, or a `.` before one). `None` where
/// the lexer would read it otherwise or refuse it: a letter, `_`, `$` or `.` right after
/// it (trailing junk, `1..2`), digit separators, a bare prefix or exponent.
fn number_end(s: &[u8], i: usize) -> Option<usize> {
    let digits = |from: usize, ok: fn(&u8) -> bool| {
        let mut j = from;
        while s.get(j).is_some_and(ok) {
            j += 1;
        }
        j
    };
    let radix =
        s[i] == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
    let j = if radix {
        let ok: fn(&u8) -> bool = match s[i + 1] {
            b'x' | b'X' => u8::is_ascii_hexdigit,
            b'o' | b'O' => |c| (b'0'..=b'7').contains(c),
            _ => |c| matches!(c, b'0' | b'1'),
        };
        let j = digits(i + 2, ok);
        if j == i + 2 {
            return None;
        }
        j
    } else {
        let mut j = digits(i, u8::is_ascii_digit);
        if s.get(j) == Some(&b'.') {
            j = digits(j + 1, u8::is_ascii_digit);
        }
        if matches!(s.get(j), Some(b'e' | b'E')) {
            let mut k = j + 1;
            if matches!(s.get(k), Some(b'+' | b'-')) {
                k += 1;
            }
            let end = digits(k, u8::is_ascii_digit);
            if end == k {
                return None;
            }
            j = end;
        }
        j
    };
    match s.get(j) {
        Some(&c) if ident_cont(c) || c == b'.' => None,
        _ => Some(j),
    }
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
