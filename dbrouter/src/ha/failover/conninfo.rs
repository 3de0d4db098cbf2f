//! libpq connection strings (`keyword=value …`), as far as re-pointing a replica needs: read
//! its `primary_conninfo`, change host and port, keep everything else (user, password,
//! `application_name`, SSL settings), and quote the result for `ALTER SYSTEM`.
//!
//! Values are bare words or single-quoted with `\'` and `\\` escapes, as libpq's
//! `conninfo_parse` reads them. URIs (`postgresql://…`) are not accepted here: `pg_basebackup
//! -R` and Patroni both write the keyword form.

/// `conninfo` with `host` and `port` replaced (and any `hostaddr` dropped, since it would
/// win over `host`).
pub fn with_host_port(conninfo: &str, host: &str, port: u16) -> Result<String, String> {
    let mut pairs: Vec<(String, String)> = parse(conninfo)?
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "hostaddr" | "port"))
        .collect();
    pairs.push(("host".into(), host.to_string()));
    pairs.push(("port".into(), port.to_string()));
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", quote_value(v)))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Parse a keyword/value connection string.
pub fn parse(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("missing \"=\" after {key:?} in primary_conninfo"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted value in primary_conninfo".into()),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("trailing backslash in primary_conninfo".into()),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// A value quoted for a connection string.
fn quote_value(v: &str) -> String {
    let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// A SQL string literal (standard_conforming_strings: only `'` doubles).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pg_basebackup_writes() {
        let s = "user=postgres password='p w\\'x' channel_binding=prefer host=127.0.0.1 port=5433 sslmode=prefer";
        let pairs = parse(s).unwrap();
        assert_eq!(pairs[0], ("user".into(), "postgres".into()));
        assert_eq!(pairs[1], ("password".into(), "p w'x".into()));
        assert_eq!(pairs[4], ("port".into(), "5433".into()));
    }

    #[test]
    fn replaces_host_and_port_and_keeps_the_rest() {
        let s = "user=rep password='a\\\\b' hostaddr=10.0.0.1 host=old port=1 application_name=r1";
        let out = with_host_port(s, "new.host", 6543).unwrap();
        let pairs = parse(&out).unwrap();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("host"), Some("new.host"));
        assert_eq!(get("port"), Some("6543"));
        assert_eq!(get("hostaddr"), None);
        assert_eq!(get("password"), Some("a\\b"));
        assert_eq!(get("application_name"), Some("r1"));
        assert_eq!(get("user"), Some("rep"));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse("host").is_err());
        assert!(parse("password='open").is_err());
        assert_eq!(parse("  ").unwrap(), vec![]);
        assert_eq!(parse("a = b").unwrap(), vec![("a".into(), "b".into())]);
    }

    #[test]
    fn quotes_sql_literals() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
