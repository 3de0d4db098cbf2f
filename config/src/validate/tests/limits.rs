//! Tests of what stops validation early or at a section's edge: syntax errors, the size
//! limits, and sections of the wrong shape.

use super::*;

/// A config with one upstream per entry of `sizes`, each with one pool of that many backends
/// (all distinct addresses).
fn with_backends(sizes: &[usize]) -> String {
    let mut text = String::new();
    let mut port = 1;
    for (i, n) in sizes.iter().enumerate() {
        let addrs: Vec<String> = (port..port + n)
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        port += n;
        text.push_str(&format!(
            "[http.upstreams.u{i}.pools.blue]\nbackends = [{}]\n\n",
            addrs.join(", ")
        ));
    }
    text
}

#[test]
fn syntax_error_reports_its_line() {
    let errors = parse_err("[control]\nlisten = \"127.0.0.1:9901\"\n\n[http\nx = 1\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].path.as_str(), errors[0].line),
        ("(syntax)", Some(4))
    );
    assert!(
        errors[0].message.starts_with("TOML syntax error: "),
        "{}",
        errors[0]
    );

    let errors = parse_err("[control]\nhistory_limit = 5\nhistory_limit = 6\n");
    assert_eq!(
        (errors[0].path.as_str(), errors[0].line),
        ("(syntax)", Some(3))
    );
    assert!(errors[0].message.contains("duplicate key"), "{}", errors[0]);
}

#[test]
fn text_over_the_size_limit_is_refused_before_parsing() {
    let at_limit = format!("#{}", "x".repeat(MAX_CONFIG_BYTES - 1));
    parse_ok(&at_limit);
    let over = format!("{at_limit}\n");
    let expected = format!(
        "config is {} bytes; the limit is {MAX_CONFIG_BYTES}",
        MAX_CONFIG_BYTES + 1
    );
    assert_eq!(
        parse_err(&over),
        vec![ConfigError {
            path: "(file)".into(),
            line: None,
            message: expected
        }]
    );
    // Not even the syntax is looked at.
    let garbage = "[".repeat(MAX_CONFIG_BYTES + 1);
    assert_eq!(parse_err(&garbage)[0].path, "(file)");
}

#[test]
fn backends_are_limited_across_all_upstreams() {
    let config = parse_ok(&with_backends(&[MAX_BACKENDS / 2, MAX_BACKENDS / 2]));
    assert!(config
        .summary()
        .contains(&format!("2 upstream(s) with {MAX_BACKENDS} backend(s)")));

    let expected = format!(
        "{} backends in all; the limit is {MAX_BACKENDS}",
        MAX_BACKENDS + 1
    );
    assert_errors(
        &parse_err(&with_backends(&[MAX_BACKENDS / 2, MAX_BACKENDS / 2 + 1])),
        &[(1, "http.upstreams", &expected)],
    );
    assert_errors(
        &parse_err(&with_backends(&[MAX_BACKENDS + 1])),
        &[(1, "http.upstreams", &expected)],
    );
}

#[test]
fn sections_of_the_wrong_shape() {
    assert_errors(
        &parse_err("control = 3\nhttp = \"x\"\npostgres = { clusters = 4 }\n"),
        &[
            (1, "control", "invalid type: integer `3`"),
            (2, "http", "expected a table, found string"),
            (
                3,
                "postgres.clusters",
                "expected an array of tables, found integer",
            ),
        ],
    );
    assert_errors(
        &parse_err("[http]\nlisteners = 5\nupstreams = []\nextra = 1\n\n[postgres]\nother = 2\n"),
        &[
            (
                2,
                "http.listeners",
                "expected an array of tables, found integer",
            ),
            (
                3,
                "http.upstreams",
                "expected a table of upstreams, found array",
            ),
            (
                4,
                "http.extra",
                "unknown key: expected listeners, routes or upstreams",
            ),
            (7, "postgres.other", "unknown key: expected clusters"),
        ],
    );
    assert_errors(
        &parse_err("[http.upstreams]\napi = 5\n"),
        &[(2, "http.upstreams.api", "invalid type: integer `5`")],
    );
}

#[test]
fn names_are_checked() {
    let long = "x".repeat(65);
    let t = format!(
        "[[control.tokens]]\nname = \"has space\"\nrole = \"root\"\nenv = \"T\"\n\n\
         [http.upstreams.{long}.pools.blue]\nbackends = [\"127.0.0.1:1\"]\n"
    );
    assert_errors(
        &parse_err(&t),
        &[
            (
                2,
                "control.tokens[0].name",
                "invalid name \"has space\": use up to 64 letters",
            ),
            (
                3,
                "control.tokens[0].role",
                "unknown value \"root\": expected one of viewer, operator, admin",
            ),
            (6, &format!("http.upstreams.{long}"), "invalid name"),
        ],
    );
}
