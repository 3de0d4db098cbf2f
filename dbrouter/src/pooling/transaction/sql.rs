//! A cheap reading of SQL text for what transaction pooling must know about a statement
//! before it runs: which session parameters it may change (`SET`, `RESET`, `RESET ALL`,
//! `DISCARD ALL`, `set_config('name', …)`), and whether it creates session state that only
//! the same server connection can honour, so that its client must be pinned (`LISTEN`,
//! session advisory locks, temporary tables, `DECLARE … WITH HOLD`, SQL-level `PREPARE`,
//! `SET SESSION AUTHORIZATION`).
//!
//! This is a lexer, not a parser: it skips comments, string literals, quoted identifiers and
//! dollar-quoted bodies, splits statements at `;`, and looks at keywords. It errs on the side
//! of pinning. What it cannot see (a `SET` or an advisory lock inside a function body) is
//! covered for reported parameters by the server's `ParameterStatus`, and not at all for the
//! rest. TODO: switch to the statement classifier in `crate::classify` once it lands, which
//! parses with Postgres's own grammar.

/// A change a statement may make to its session's parameters. Names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamOp {
    Set(String),
    Reset(String),
    /// `RESET ALL` or `DISCARD ALL`.
    ResetAll,
}

/// What [`inspect`] found in one query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub ops: Vec<ParamOp>,
    /// Why the client must keep its server connection, if it must.
    pub pin: Option<&'static str>,
    /// A statement of it is DDL (`CREATE`, `ALTER`, `DROP`): statements prepared before it
    /// may mean something else once it ran (see [`super::prepared`]).
    pub ddl: bool,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.pin.is_none() && !self.ddl
    }
}

/// Session advisory lock functions (the `_xact_` ones end with the transaction).
const ADVISORY: &[&[u8]] = &[
    b"pg_advisory_lock",
    b"pg_advisory_lock_shared",
    b"pg_try_advisory_lock",
    b"pg_try_advisory_lock_shared",
];

/// Read `sql` (one `Query` or `Parse` text, possibly several statements).
pub fn inspect(sql: &[u8]) -> Effects {
    let mut effects = Effects {
        ddl: ddl_start(sql),
        ..Effects::default()
    };
    if !might_matter(sql) {
        return effects;
    }
    let mut statement: Vec<Tok<'_>> = Vec::new();
    for tok in (Lexer { s: sql, i: 0 }) {
        if tok == Tok::Punct(b';') {
            statement_effects(&statement, &mut effects);
            statement.clear();
        } else {
            statement.push(tok);
        }
    }
    statement_effects(&statement, &mut effects);
    effects
}

/// Whether a statement of `sql` starts with `CREATE`, `ALTER` or `DROP` (after blanks and
/// comments). Cheap: it looks at the start and after each `;` only (a `;` in a literal can
/// only make it say yes, which costs a retirement of the shared statements, nothing more).
fn ddl_start(sql: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let mut i = at;
        loop {
            match sql.get(i..) {
                Some([b, ..]) if b.is_ascii_whitespace() => i += 1,
                Some([b'-', b'-', ..]) => {
                    i += sql[i..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .unwrap_or(sql.len() - i)
                }
                Some([b'/', b'*', ..]) => {
                    i += sql[i..]
                        .windows(2)
                        .position(|w| w == b"*/")
                        .map_or(sql.len() - i, |p| p + 2)
                }
                _ => break,
            }
        }
        let word = |kw: &[u8]| {
            sql.get(i..i + kw.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(kw))
                && !sql
                    .get(i + kw.len())
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        };
        if word(b"create") || word(b"alter") || word(b"drop") {
            return true;
        }
        match sql[at..].iter().position(|&b| b == b';') {
            Some(p) => at += p + 1,
            None => return false,
        }
    }
}

/// Whether `sql` contains any word [`inspect`] looks for (most queries do not).
fn might_matter(sql: &[u8]) -> bool {
    const NEEDLES: &[&[u8]] = &[
        b"set",
        b"discard",
        b"listen",
        b"advisory",
        b"temp",
        b"hold",
        b"prepare",
    ];
    sql.windows(3).enumerate().any(|(i, w)| {
        let first = w[0].to_ascii_lowercase();
        NEEDLES.iter().any(|n| {
            n[0] == first
                && sql
                    .get(i..i + n.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(n))
        })
    })
}

fn statement_effects(toks: &[Tok<'_>], fx: &mut Effects) {
    let word = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) => Some(*w),
        _ => None,
    };
    let is = |i: usize, kw: &str| word(i).is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()));
    let mut pin: Option<&'static str> = None;
    if is(0, "listen") {
        pin = Some("LISTEN");
    } else if is(0, "prepare") {
        pin = Some("PREPARE");
    } else if is(0, "create") {
        // `CREATE [GLOBAL | LOCAL] {TEMP | TEMPORARY} …`, `CREATE OR REPLACE TEMP VIEW`: the
        // word comes before the object's kind (`CREATE TABLE temp` is a table named temp).
        for i in 1..6 {
            if is(i, "temp") || is(i, "temporary") {
                pin = Some("a temporary table");
            }
            if !(is(i, "or") || is(i, "replace") || is(i, "global") || is(i, "local")) {
                break;
            }
        }
    }
    if (is(0, "create")
        || toks
            .iter()
            .any(|t| matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(b"into"))))
        && qualifies_pg_temp(toks)
    {
        // `CREATE TABLE pg_temp.t`, `CREATE DOMAIN pg_temp.d`, `SELECT … INTO pg_temp.t`:
        // an object in the session's temporary schema, without the word TEMP.
        pin = pin.or(Some("a temporary table"));
    }
    for (i, t) in toks.iter().enumerate() {
        let Tok::Word(w) = t else { continue };
        if ADVISORY.iter().any(|a| w.eq_ignore_ascii_case(a)) {
            pin = pin.or(Some("a session advisory lock"));
        } else if w.eq_ignore_ascii_case(b"into") && (is(i + 1, "temp") || is(i + 1, "temporary")) {
            pin = pin.or(Some("a temporary table"));
        } else if w.eq_ignore_ascii_case(b"with") && is(i + 1, "hold") {
            pin = pin.or(Some("a cursor WITH HOLD"));
        } else if w.eq_ignore_ascii_case(b"set_config")
            && toks.get(i + 1) == Some(&Tok::Punct(b'('))
        {
            if let Some(Tok::Str(name)) = toks.get(i + 2) {
                if let Some(name) = guc_name(name, None) {
                    fx.ops.push(ParamOp::Set(name));
                }
            }
        }
    }
    if fx.pin.is_none() {
        fx.pin = pin;
    }
    if is(0, "set") {
        let mut at = 1;
        if is(1, "local") || is(1, "transaction") || is(1, "constraints") {
            return;
        }
        if is(1, "session") && !is(2, "authorization") {
            if is(2, "characteristics") {
                for name in [
                    "default_transaction_isolation",
                    "default_transaction_read_only",
                    "default_transaction_deferrable",
                ] {
                    fx.ops.push(ParamOp::Set(name.into()));
                }
                return;
            }
            at = 2;
        }
        if is(at, "session") && is(at + 1, "authorization") {
            // `SET [SESSION] SESSION AUTHORIZATION`: the role itself changes.
            fx.pin.get_or_insert("SET SESSION AUTHORIZATION");
        } else if let Some(name) = special_name(&is, at).or_else(|| plain_name(toks, at)) {
            fx.ops.push(ParamOp::Set(name));
        }
    } else if is(0, "reset") {
        if is(1, "all") {
            fx.ops.push(ParamOp::ResetAll);
        } else if is(1, "session") && is(2, "authorization") {
            fx.ops.push(ParamOp::Reset("session_authorization".into()));
        } else if let Some(name) = special_name(&is, 1).or_else(|| plain_name(toks, 1)) {
            fx.ops.push(ParamOp::Reset(name));
        }
    } else if is(0, "discard") && is(1, "all") {
        fx.ops.push(ParamOp::ResetAll);
    }
}

/// Whether a name in `toks` is qualified by the temporary schema (`pg_temp.x`,
/// `"pg_temp".x`, or a backend's own `pg_temp_3.x`).
fn qualifies_pg_temp(toks: &[Tok<'_>]) -> bool {
    toks.windows(2).any(|w| match w {
        [Tok::Word(s), Tok::Punct(b'.')] => is_pg_temp(&s.to_ascii_lowercase()),
        [Tok::Quoted(s), Tok::Punct(b'.')] => is_pg_temp(s),
        _ => false,
    })
}

fn is_pg_temp(schema: &[u8]) -> bool {
    match schema.strip_prefix(b"pg_temp") {
        Some([]) => true,
        Some([b'_', n @ ..]) => !n.is_empty() && n.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The parameter behind `SET`'s special forms (`TIME ZONE`, `SCHEMA`, `NAMES`, …).
fn special_name(is: &impl Fn(usize, &str) -> bool, at: usize) -> Option<String> {
    let name = if is(at, "time") && is(at + 1, "zone") {
        "timezone"
    } else if is(at, "schema") {
        "search_path"
    } else if is(at, "names") {
        "client_encoding"
    } else if is(at, "role") {
        "role"
    } else if is(at, "xml") && is(at + 1, "option") {
        "xmloption"
    } else {
        return None;
    };
    Some(name.into())
}

/// `name` or `prefix.name` at `at`, lowercased, if it is a name we can track.
fn plain_name(toks: &[Tok<'_>], at: usize) -> Option<String> {
    let part = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Some(*w),
        _ => None,
    };
    let first = part(at)?;
    match (toks.get(at + 1), part(at + 2)) {
        (Some(Tok::Punct(b'.')), Some(second)) => guc_name(first, Some(second)),
        _ => guc_name(first, None),
    }
}

/// A parameter name we can quote safely in our own SQL: ASCII letters, digits, `_`, `.`.
pub fn guc_name(first: &[u8], second: Option<&[u8]>) -> Option<String> {
    let mut name = String::from_utf8_lossy(first).to_ascii_lowercase();
    if let Some(s) = second {
        name.push('.');
        name.push_str(&String::from_utf8_lossy(s).to_ascii_lowercase());
    }
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    ok.then_some(name)
}

/// A token of SQL text. Keywords and identifiers are `Word`s, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a [u8]),
    /// A double-quoted identifier's text (doubled quotes left as they are).
    Quoted(&'a [u8]),
    /// A single-quoted string's text (doubled quotes left as they are).
    Str(&'a [u8]),
    Punct(u8),
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn at(&self, k: usize) -> u8 {
        self.s.get(self.i + k).copied().unwrap_or(0)
    }

    /// Skip to just past the closing `quote` (a doubled one does not close); the text between.
    fn quoted(&mut self, quote: u8, backslash: bool) -> &'a [u8] {
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if (backslash && c == b'\\') || (c == quote && self.at(1) == quote) {
                // An escaped character, or a doubled quote.
                self.i += 2;
            } else if c == quote {
                self.i += 1;
                return &self.s[start..self.i - 1];
            } else {
                self.i += 1;
            }
        }
        self.s.get(start..).unwrap_or_default()
    }
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn ident_char(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == b'$'
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        loop {
            let c = *self.s.get(self.i)?;
            match c {
                _ if c.is_ascii_whitespace() => self.i += 1,
                b'-' if self.at(1) == b'-' => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'/' if self.at(1) == b'*' => {
                    // Block comments nest in PostgreSQL.
                    let mut depth = 0usize;
                    while self.i < self.s.len() {
                        if self.at(0) == b'/' && self.at(1) == b'*' {
                            depth += 1;
                            self.i += 2;
                        } else if self.at(0) == b'*' && self.at(1) == b'/' {
                            depth -= 1;
                            self.i += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            self.i += 1;
                        }
                    }
                }
                b'\'' => {
                    self.i += 1;
                    return Some(Tok::Str(self.quoted(b'\'', false)));
                }
                b'"' => {
                    self.i += 1;
                    return Some(Tok::Quoted(self.quoted(b'"', false)));
                }
                b'$' if self.at(1) == b'$' || ident_start(self.at(1)) => {
                    // `$tag$ … $tag$` (a `$1` parameter does not start with a letter).
                    let start = self.i;
                    let mut end = self.i + 1;
                    while end < self.s.len() && ident_char(self.s[end]) && self.s[end] != b'$' {
                        end += 1;
                    }
                    if self.s.get(end) != Some(&b'$') {
                        self.i = end;
                        continue;
                    }
                    let tag = &self.s[start..=end];
                    let body = end + 1;
                    let close = self.s[body..].windows(tag.len()).position(|w| w == tag);
                    self.i = close.map_or(self.s.len(), |p| body + p + tag.len());
                    let text_end = close.map_or(self.s.len(), |p| body + p);
                    return Some(Tok::Str(&self.s[body..text_end]));
                }
                _ if ident_start(c) => {
                    let start = self.i;
                    while self.i < self.s.len() && ident_char(self.s[self.i]) {
                        self.i += 1;
                    }
                    let word = &self.s[start..self.i];
                    // E'…' takes backslash escapes; other prefixes (B, X, U&) do not matter.
                    if self.at(0) == b'\'' && word.eq_ignore_ascii_case(b"e") {
                        self.i += 1;
                        return Some(Tok::Str(self.quoted(b'\'', true)));
                    }
                    return Some(Tok::Word(word));
                }
                _ => {
                    self.i += 1;
                    return Some(Tok::Punct(c));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
