//! The config parser and validator (`switchyard_config::parse`), and the redaction round
//! trip the control API does on it (`GET` redacts secrets, `PUT` puts them back).
//!
//! Properties: parsing is deterministic (same hash twice); a valid config diffs empty
//! against itself; every error has a key path and, when it has a line, one that exists; the
//! redacted text restored from the original parses to the very same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_config::redact::{redact_toml, restore_redacted};
use switchyard_config::{content_hash, diff, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Err(errors) => {
            let lines = text.lines().count().max(1) + 1;
            assert!(!errors.0.is_empty(), "an Err with no error in it");
            for e in &errors.0 {
                assert!(!e.path.is_empty(), "an error without a key path: {e}");
                if let Some(line) = e.line {
                    assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
                }
            }
            let _ = errors.to_string();
        }
        Ok(config) => {
            let hash = content_hash(&config);
            let again = parse(text).unwrap_or_else(|e| panic!("second parse fails: {e}"));
            assert_eq!(content_hash(&again), hash);
            assert!(diff(&config, &again).is_empty());
            let _ = config.summary();
            let mut resolved = config.clone();
            resolved.resolve_paths(std::path::Path::new("/etc/switchyard"));
            let redacted = redact_toml(text);
            let restored = restore_redacted(&redacted, text);
            let back = parse(&restored).unwrap_or_else(|e| {
                panic!("redacted then restored text does not parse: {e}\n{restored}")
            });
            assert_eq!(
                content_hash(&back),
                hash,
                "redaction round trip changed the config"
            );
        }
    }
});
