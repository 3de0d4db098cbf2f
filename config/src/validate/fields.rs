//! Field checks shared by every section: addresses, durations, bounded integers and
//! named choices. Each check records its own error and returns `None` on failure, so a
//! section validates every field before giving up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigError, KeyPath};
use crate::model::{Address, TlsFiles};
use crate::raw::RawTls;
use crate::source::Source;

/// Validation context: the source (for lines) and the errors found so far.
pub(crate) struct Ctx<'s, 't> {
    pub src: &'s Source<'t>,
    pub errors: Vec<ConfigError>,
    /// Every listen address that parsed (defaults included), in validation order, so that
    /// conflicts are found even when the sections holding them have other errors.
    pub listens: Vec<(SocketAddr, KeyPath)>,
}

impl<'s, 't> Ctx<'s, 't> {
    pub fn new(src: &'s Source<'t>) -> Self {
        Ctx {
            src,
            errors: Vec::new(),
            listens: Vec::new(),
        }
    }

    pub fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        let e = self.src.error(path, message);
        self.errors.push(e);
    }

    /// A required string that must not be empty.
    pub fn required(&mut self, v: Option<String>, path: &KeyPath) -> Option<String> {
        match v {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.err(path, "must not be empty");
                None
            }
            None => {
                self.err(path, "missing required key");
                None
            }
        }
    }

    /// A socket address to listen on: `ip:port`.
    pub fn listen_addr(
        &mut self,
        v: Option<String>,
        path: &KeyPath,
        default: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        let Some(s) = v else {
            match default {
                Some(a) => self.listens.push((a, path.clone())),
                None => self.err(path, "missing required key"),
            }
            return default;
        };
        match s.parse::<SocketAddr>() {
            Ok(a) => {
                self.listens.push((a, path.clone()));
                Some(a)
            }
            Err(_) => {
                self.err(
                    path,
                    format!(
                        "invalid listen address {s:?}: expected ip:port, e.g. \"127.0.0.1:8080\""
                    ),
                );
                None
            }
        }
    }

    /// A peer address: `host:port` where host is an IP literal or a DNS name.
    pub fn address(&mut self, v: Option<String>, path: &KeyPath) -> Option<Address> {
        let s = self.required(v, path)?;
        match parse_address(&s) {
            Ok(a) => Some(a),
            Err(why) => {
                self.err(path, format!("invalid address {s:?}: {why}"));
                None
            }
        }
    }

    /// A duration such as `"30s"`, `"500ms"` or `"1m 30s"`, strictly positive unless `allow_zero`.
    pub fn duration(
        &mut self,
        v: Option<String>,
        path: &KeyPath,
        default: Duration,
        allow_zero: bool,
    ) -> Option<Duration> {
        let Some(s) = v else { return Some(default) };
        self.some_duration(&s, path, allow_zero)
    }

    /// An optional duration: absent stays `None`.
    pub fn opt_duration(
        &mut self,
        v: Option<String>,
        path: &KeyPath,
    ) -> Result<Option<Duration>, ()> {
        match v {
            None => Ok(None),
            Some(s) => self.some_duration(&s, path, false).map(Some).ok_or(()),
        }
    }

    fn some_duration(&mut self, s: &str, path: &KeyPath, allow_zero: bool) -> Option<Duration> {
        match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(path, "must be longer than zero");
                None
            }
            Ok(d) if d > Duration::from_secs(7 * 24 * 3600) => {
                self.err(path, format!("duration {s:?} is longer than a week"));
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.err(
                    path,
                    format!("invalid duration {s:?}: expected a number and a unit, e.g. \"500ms\", \"30s\", \"2m\""),
                );
                None
            }
        }
    }

    /// An integer within `min..=max`, `default` when absent.
    pub fn int<T: TryFrom<i64>>(
        &mut self,
        v: Option<i64>,
        path: &KeyPath,
        default: i64,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let n = v.unwrap_or(default);
        if n < min || n > max {
            self.err(
                path,
                format!("{n} is out of range: expected {min} to {max}"),
            );
            return None;
        }
        T::try_from(n).ok()
    }

    /// One of a fixed set of names.
    pub fn choice<T: Copy>(
        &mut self,
        v: Option<String>,
        path: &KeyPath,
        default: Option<T>,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let Some(s) = v else {
            if default.is_none() {
                self.err(path, "missing required key");
            }
            return default;
        };
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s) {
            return Some(*t);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        self.err(
            path,
            format!("unknown value {s:?}: expected one of {}", names.join(", ")),
        );
        None
    }

    /// A name used as an identifier (upstream, pool, cluster, token names).
    pub fn name(&mut self, v: Option<String>, path: &KeyPath) -> Option<String> {
        let s = self.required(v, path)?;
        if s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            self.err(
                path,
                format!("invalid name {s:?}: use up to 64 letters, digits, '-', '_' or '.'"),
            );
            return None;
        }
        Some(s)
    }

    /// An environment variable name.
    pub fn env_name(&mut self, s: String, path: &KeyPath) -> Option<String> {
        let ok = !s.is_empty()
            && !s.as_bytes()[0].is_ascii_digit()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            self.err(path, format!("invalid environment variable name {s:?}"));
            return None;
        }
        Some(s)
    }
}

/// Parse `host:port` (IPv6 in brackets), as the config does.
pub fn parse_address(s: &str) -> Result<Address, &'static str> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err("port must be 1 to 65535");
        }
        return Ok(Address {
            host: sa.ip().to_string(),
            port: sa.port(),
        });
    }
    let (host, port) = s.rsplit_once(':').ok_or("expected host:port")?;
    let port: u16 = port.parse().map_err(|_| "port must be 1 to 65535")?;
    if port == 0 {
        return Err("port must be 1 to 65535");
    }
    if host.parse::<IpAddr>().is_ok() {
        return Err("IPv6 addresses need brackets, e.g. \"[::1]:5432\"");
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err("host must be an IP address or a DNS name");
    }
    Ok(Address {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Most backends across all upstreams.
pub const MAX_BACKENDS: usize = 10_000;

/// A `{ cert = "...", key = "..." }` pair.
pub(crate) fn tls_files(
    cx: &mut Ctx<'_, '_>,
    t: RawTls,
    path: &KeyPath,
) -> Option<Option<TlsFiles>> {
    let cert = cx.required(t.cert, &path.key("cert"));
    let key = cx.required(t.key, &path.key("key"));
    Some(Some(TlsFiles {
        cert: PathBuf::from(cert?),
        key: PathBuf::from(key?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:9001").map(|a| a.to_string()),
            Ok("127.0.0.1:9001".into())
        );
        assert_eq!(
            parse_address("[::1]:5432").map(|a| a.to_string()),
            Ok("[::1]:5432".into())
        );
        assert_eq!(
            parse_address("Api.Internal:80").map(|a| a.to_string()),
            Ok("api.internal:80".into())
        );
        assert!(parse_address("127.0.0.1").is_err());
        assert!(parse_address("127.0.0.1:0").is_err());
        assert!(parse_address("127.0.0.1:70000").is_err());
        assert!(parse_address("bad host:80").is_err());
        assert!(parse_address(":80").is_err());
    }
}
