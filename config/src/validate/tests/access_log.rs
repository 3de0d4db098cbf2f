//! Tests of a listener's `access_log` table: defaults, the three formats, every bad key at
//! its path and line.

use std::path::PathBuf;

use super::*;
use crate::model::{AccessLogFormat, LogDestination};

fn listener(access_log: &str) -> String {
    format!("[[http.listeners]]\nname = \"public\"\naddr = \"127.0.0.1:8080\"\n{access_log}\n")
}

#[test]
fn off_by_default_combined_when_only_a_path_is_given() {
    let config = parse(&listener("")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.http.listeners[0].access_log, None);

    let text = listener("access_log = { path = \"/var/log/sy/access.log\" }");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let log = config.http.listeners[0].access_log.clone();
    let log = log.unwrap_or_else(|| panic!("access log off"));
    assert_eq!(log.format, AccessLogFormat::Combined);
    assert_eq!(
        log.destination,
        LogDestination::File(PathBuf::from("/var/log/sy/access.log"))
    );
    assert_eq!(log.buffer_lines, 16_384);

    let text = listener("access_log = { format = \"json\", buffer_lines = 8 }");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let log = config.http.listeners[0].access_log.clone();
    let log = log.unwrap_or_else(|| panic!("access log off"));
    assert_eq!(
        (log.format, log.destination, log.buffer_lines),
        (AccessLogFormat::Json, LogDestination::Stderr, 8)
    );

    let text = listener("access_log = { format = \"off\", path = \"a.log\" }");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.http.listeners[0].access_log, None);
}

#[test]
fn every_bad_key_is_reported_at_its_path() {
    let text = listener(
        "[http.listeners.access_log]\nformat = \"apache\"\npath = \"\"\nbuffer_lines = 0\ncolour = 1",
    );
    let errors = match parse(&text) {
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
