//! `[rollout]`: replace commands and webhooks by name, and what is refused.

use super::*;

#[test]
fn commands_and_webhooks_are_named_and_checked() {
    let ok = parse(
        r#"
[rollout.commands.restart]
argv = ["/usr/bin/systemctl", "restart", "api"]
timeout = "2m"
[rollout.webhooks.deploy]
url = "http://127.0.0.1:8080/deploy"
"#,
    );
    let config = match ok {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let restart = &config.rollout.commands["restart"];
    assert_eq!(restart.argv[0], "/usr/bin/systemctl");
    assert_eq!(restart.timeout.as_secs(), 120);
    assert_eq!(config.rollout.webhooks["deploy"].timeout.as_secs(), 300);

    let bad = parse(
        r#"
[rollout.commands.empty]
argv = []
[rollout.commands.slow]
argv = ["x"]
timeout = "2h"
[rollout.commands.typo]
argv = ["x"]
timout = "1s"
[rollout.webhooks.deploy]
url = "ftp://x"
"#,
    );
    let text = bad.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
    for key in [
        "rollout.commands.empty.argv",
        "rollout.commands.slow.timeout",
        "rollout.commands.typo.timout",
        "rollout.webhooks.deploy.url",
    ] {
        assert!(text.contains(key), "{key} missing in: {text}");
    }
}
