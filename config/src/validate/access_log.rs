//! Validation of a listener's `access_log` table: the format, where the lines go and how
//! many the writer may fall behind by.

use std::path::PathBuf;

use super::fields::Ctx;
use crate::error::KeyPath;
use crate::model::{AccessLog, AccessLogFormat, LogDestination};
use crate::raw::RawAccessLog;

/// Lines buffered for the writer by default: a few MB of lines at most, seconds of traffic
/// at tens of thousands of requests a second.
const DEFAULT_BUFFER_LINES: i64 = 16_384;

/// The `path` that means standard error.
const STDERR: &str = "stderr";

/// `Some(None)`: off (no table, or `format = "off"`); `None`: invalid (errors recorded).
///
/// A table without `format` is `combined`, as nginx's `access_log path;` is.
pub(super) fn access_log(
    cx: &mut Ctx<'_, '_>,
    raw: Option<RawAccessLog>,
    path: &KeyPath,
) -> Option<Option<AccessLog>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let format = cx.choice(
        raw.format,
        &path.key("format"),
        Some(Some(AccessLogFormat::Combined)),
        &[
            ("off", None),
            ("combined", Some(AccessLogFormat::Combined)),
            ("json", Some(AccessLogFormat::Json)),
        ],
    );
    let destination = match raw.path {
        None => Some(LogDestination::Stderr),
        Some(p) if p == STDERR => Some(LogDestination::Stderr),
        Some(p) if p.trim().is_empty() => {
            cx.err(
                &path.key("path"),
                "must not be empty: a file, or \"stderr\"",
            );
            None
        }
        Some(p) if p.ends_with('/') || p.contains('\0') => {
            cx.err(&path.key("path"), format!("{p:?} is not a file name"));
            None
        }
        Some(p) => Some(LogDestination::File(PathBuf::from(p))),
    };
    let buffer_lines = cx.int(
        raw.buffer_lines,
        &path.key("buffer_lines"),
        DEFAULT_BUFFER_LINES,
        1,
        1 << 20,
    );
    let (format, destination, buffer_lines) = (format?, destination?, buffer_lines?);
    Some(format.map(|format| AccessLog {
        format,
        destination,
        buffer_lines,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::model::{AccessLogFormat, LogDestination};

    fn listener(access_log: &str) -> String {
        format!("[[http.listeners]]\nname = \"public\"\naddr = \"127.0.0.1:8080\"\n{access_log}\n")
    }

    #[test]
    fn off_by_default_combined_when_only_a_path_is_given() {
        let config = crate::parse(&listener("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.http.listeners[0].access_log, None);

        let text = listener("access_log = { path = \"/var/log/sy/access.log\" }");
        let config = crate::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let log = config.http.listeners[0].access_log.clone();
        let log = log.unwrap_or_else(|| panic!("access log off"));
        assert_eq!(log.format, AccessLogFormat::Combined);
        assert_eq!(
            log.destination,
            LogDestination::File(PathBuf::from("/var/log/sy/access.log"))
        );
        assert_eq!(log.buffer_lines, 16_384);

        let text = listener("access_log = { format = \"json\", buffer_lines = 8 }");
        let config = crate::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let log = config.http.listeners[0].access_log.clone();
        let log = log.unwrap_or_else(|| panic!("access log off"));
        assert_eq!(
            (log.format, log.destination, log.buffer_lines),
            (AccessLogFormat::Json, LogDestination::Stderr, 8)
        );

        let text = listener("access_log = { format = \"off\", path = \"a.log\" }");
        let config = crate::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.http.listeners[0].access_log, None);
    }

    #[test]
    fn every_bad_key_is_reported_at_its_path() {
        let text = listener(
            "[http.listeners.access_log]\nformat = \"apache\"\npath = \"\"\nbuffer_lines = 0\ncolour = 1",
        );
        let errors = match crate::parse(&text) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        for (key, line) in [
            ("format", 5),
            ("path", 6),
            ("buffer_lines", 7),
            ("colour", 8),
        ] {
            let want = format!("line {line}: http.listeners[0].access_log.{key}:");
            assert!(errors.contains(&want), "{want} not in:\n{errors}");
        }
    }
}
