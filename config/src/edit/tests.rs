//! Tests of the config text edits: values change, comments and layout stay, errors name
//! what is missing.

use super::*;

const TABLES: &str = r#"# Blue/green for the API.
[http.upstreams.api]
balance = "least_conn" # inside a pool

[http.upstreams.api.pools.blue]
weight = 100 # all traffic
backends = [
  "127.0.0.1:9001", # first
  { addr = "127.0.0.1:9002", weight = 2 },
]

[http.upstreams.api.pools.green]
# no weight yet
backends = ["127.0.0.1:9101"]
"#;

fn weights(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(p, w)| (p.to_string(), *w)).collect()
}

/// The validated weights of `api`'s pools in `text`.
fn parsed_weights(text: &str) -> Vec<(String, u32)> {
    let config = crate::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.http.upstreams["api"]
        .pools
        .iter()
        .map(|(n, p)| (n.clone(), p.weight))
        .collect()
}

fn states(text: &str) -> Vec<(String, BackendState)> {
    let config = crate::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.http.upstreams["api"]
        .pools
        .values()
        .flat_map(|p| p.backends.iter())
        .map(|b| (b.addr.to_string(), b.state))
        .collect()
}

#[test]
fn weights_in_tables_keep_comments_and_add_missing_keys() {
    let out = set_pool_weights(TABLES, "api", &weights(&[("blue", 90), ("green", 10)]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed_weights(&out),
        weights(&[("blue", 90), ("green", 10)])
    );
    for kept in [
        "# Blue/green for the API.",
        "# inside a pool",
        "# first",
        "# no weight yet",
    ] {
        assert!(out.contains(kept), "lost {kept:?}:\n{out}");
    }
    assert!(out.contains("weight = 90 # all traffic"), "{out}");
    // Nothing else moved.
    assert_eq!(
        out.replace("weight = 90", "weight = 100")
            .replace("weight = 10\n", ""),
        TABLES
    );
}

#[test]
fn weights_in_dotted_keys_and_inline_tables() {
    let dotted = "[http.upstreams.api]\npools.blue.weight = 100\npools.blue.backends = [\"127.0.0.1:9001\"]\npools.green.backends = [\"127.0.0.1:9002\"] # g\n";
    let out = set_pool_weights(dotted, "api", &weights(&[("blue", 0), ("green", 100)]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed_weights(&out),
        weights(&[("blue", 0), ("green", 100)])
    );
    assert!(out.contains("pools.green.weight = 100"), "{out}");
    assert!(out.contains("# g"), "{out}");

    let inline = "[http.upstreams.api]\npools = { blue = { weight = 100, backends = [\"127.0.0.1:9001\"] }, green = { backends = [\"127.0.0.1:9002\"] } } # both\n";
    let out = set_pool_weights(inline, "api", &weights(&[("blue", 0), ("green", 100)]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed_weights(&out),
        weights(&[("blue", 0), ("green", 100)])
    );
    assert_eq!(
        out,
        "[http.upstreams.api]\npools = { blue = { weight = 0, backends = [\"127.0.0.1:9001\"] }, green = { backends = [\"127.0.0.1:9002\"], weight = 100 } } # both\n"
    );
}

#[test]
fn weight_errors_say_what_is_missing() {
    let err = set_pool_weights(TABLES, "web", &weights(&[("blue", 1)]));
    assert!(
        matches!(&err, Err(e) if e.kind() == EditErrorKind::NotFound),
        "{err:?}"
    );
    let err = set_pool_weights(
        TABLES,
        "api",
        &weights(&[("red", 1), ("blue", 1), ("teal", 2)]),
    );
    match err {
        Err(e @ EditError::UnknownPool { .. }) => {
            assert_eq!(e.kind(), EditErrorKind::BadRequest);
            assert_eq!(
                e.to_string(),
                "upstream \"api\" has no pool named \"red\", \"teal\" (pools: blue, green)"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        set_pool_weights(TABLES, "api", &[]),
        Err(EditError::BadRequest(_))
    ));
    assert!(matches!(
        set_pool_weights("[http", "api", &weights(&[("blue", 1)])),
        Err(EditError::Syntax(_))
    ));
}

#[test]
fn drain_turns_a_string_into_a_table_and_enable_turns_it_back() {
    let drained = set_backend_state(TABLES, "api", "127.0.0.1:9001", BackendState::Drain)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        drained.contains("  { addr = \"127.0.0.1:9001\", state = \"drain\" }, # first"),
        "{drained}"
    );
    assert!(states(&drained).contains(&("127.0.0.1:9001".into(), BackendState::Drain)));
    let enabled = set_backend_state(&drained, "api", "127.0.0.1:9001", BackendState::Enabled)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(enabled, TABLES);
}

#[test]
fn drain_sets_state_in_a_table_and_enable_keeps_other_keys() {
    let drained = set_backend_state(TABLES, "api", "127.0.0.1:9002", BackendState::Drain)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        drained.contains("{ addr = \"127.0.0.1:9002\", weight = 2, state = \"drain\" }"),
        "{drained}"
    );
    // Draining twice changes nothing.
    let again = set_backend_state(&drained, "api", "127.0.0.1:9002", BackendState::Drain)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, drained);
    let enabled = set_backend_state(&drained, "api", "127.0.0.1:9002", BackendState::Enabled)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(enabled, TABLES);
    assert!(states(&enabled)
        .iter()
        .all(|(_, s)| *s == BackendState::Enabled));
}

#[test]
fn backends_as_array_of_tables_and_normalized_addresses() {
    let text = "[http.upstreams.api.pools.blue]\n[[http.upstreams.api.pools.blue.backends]]\naddr = \"Api.Internal:80\" # dns\n";
    let drained = set_backend_state(text, "api", "api.internal:80", BackendState::Drain)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(drained.contains("# dns\nstate = \"drain\""), "{drained}");
    assert_eq!(
        states(&drained),
        vec![("api.internal:80".into(), BackendState::Drain)]
    );
    let enabled = set_backend_state(&drained, "api", "API.internal:80", BackendState::Enabled)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(enabled, text);
}

#[test]
fn backend_errors_say_what_is_missing() {
    let err = set_backend_state(TABLES, "web", "127.0.0.1:9001", BackendState::Drain);
    assert!(
        matches!(&err, Err(e) if e.kind() == EditErrorKind::NotFound),
        "{err:?}"
    );
    let err = set_backend_state(TABLES, "api", "127.0.0.1:9999", BackendState::Drain);
    match err {
        Err(e @ EditError::UnknownBackend { .. }) => {
            assert_eq!(e.kind(), EditErrorKind::BadRequest);
            assert_eq!(
                e.to_string(),
                "upstream \"api\" has no backend 127.0.0.1:9999"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = set_backend_state(TABLES, "api", "not an address", BackendState::Drain);
    assert!(matches!(err, Err(EditError::BadAddress { .. })), "{err:?}");
}
