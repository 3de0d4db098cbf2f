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
