//! Session parameters under transaction pooling: each client's wanted values, each server
//! connection's known values, and the SQL that moves a server from one to the other.
//!
//! - A client's [`Params`] start as its replayable startup parameters ([`REPLAYED_STARTUP`];
//!   the others become part of the pool key, so its server connections are opened with
//!   them). A server's [`Params`] hold the values the router knows it has that may differ
//!   from its own defaults.
//! - When a client gets a server connection, [`replay_sql`] sets what differs
//!   (`set_config`) and resets what the client never set; the router swallows the answers.
//! - The values are learned, not guessed: when a client's turn on a server changed a
//!   parameter (a `SET`, `RESET`, `RESET ALL` or `DISCARD ALL` seen in its SQL, or a
//!   `ParameterStatus` from the server), the router asks the server at the end of the turn
//!   ([`Verify`]) for the current and the reset values. A `SET` rolled back with its
//!   transaction is thus not replayed, and list values (`search_path`) come back in a form
//!   `set_config` reads the same way. A reset parameter goes back to the client's startup
//!   value, as `RESET` does in PostgreSQL.

use std::collections::BTreeMap;

use super::sql::ParamOp;

/// Parameter values by lowercase name.
pub type Params = crate::server::param_map::ParamMap;

/// Startup parameters replayed with `set_config` on shared server connections, so that
/// clients that differ only in these share them. The others go into the pool key.
pub const REPLAYED_STARTUP: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
    "xmloption",
];

/// Reported parameters that no session can set: a `ParameterStatus` of one is passed on
/// but not replayed.
const NOT_SETTABLE: &[&str] = &[
    "integer_datetimes",
    "in_hot_standby",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
];

/// Whether a `ParameterStatus` for `name` (lowercase) is a value to carry with the client.
pub fn tracked_report(name: &str) -> bool {
    !NOT_SETTABLE.contains(&name) && super::sql::guc_name(name.as_bytes(), None).is_some()
}

/// SQL that turns a server with `server`'s values into one with `client`'s, or `None` when
/// they agree.
pub fn replay_sql(client: &Params, server: &Params) -> Option<String> {
    let mut resets = String::new();
    for name in server.keys().filter(|n| !client.contains_key(n)) {
        resets.push_str("RESET ");
        resets.push_str(name);
        resets.push_str("; ");
    }
    let sets: Vec<String> = client
        .iter()
        .filter(|(n, v)| server.get(n) != Some(v))
        .map(|(n, v)| format!("pg_catalog.set_config('{n}', {}, false)", literal(v)))
        .collect();
    if resets.is_empty() && sets.is_empty() {
        return None;
    }
    if !sets.is_empty() {
        resets.push_str("SELECT ");
        resets.push_str(&sets.join(", "));
    }
    Some(resets)
}

/// `value` as a dollar-quoted literal whose tag it does not contain (dollar quoting reads the
/// same whatever `standard_conforming_strings` is).
fn literal(value: &str) -> String {
    let mut tag = String::from("$sy$");
    let mut n = 0u32;
    // The first occurrence of the tag after the opening one must be the closing one.
    while format!("{value}{tag}").find(&tag) != Some(value.len()) {
        n += 1;
        tag = format!("$sy{n}$");
    }
    format!("{tag}{value}{tag}")
}

/// The parameters a client's turn on a server touched, to ask the server about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// Name, and whether the last thing done to it was a reset.
    names: BTreeMap<String, bool>,
}

impl Verify {
    /// What to verify after `ops`, given the client's and server's values before them.
    pub fn plan(ops: &[ParamOp], client: &Params, server: &Params) -> Option<Verify> {
        let mut names = BTreeMap::new();
        for op in ops {
            match op {
                ParamOp::Set(n) => {
                    names.insert(n.clone(), false);
                }
                ParamOp::Reset(n) => {
                    names.insert(n.clone(), true);
                }
                ParamOp::ResetAll => {
                    for n in client.keys().chain(server.keys()) {
                        names.insert(n.clone(), true);
                    }
                    for reset in names.values_mut() {
                        *reset = true;
                    }
                }
            }
        }
        (!names.is_empty()).then_some(Verify { names })
    }

    /// One row per name: the name, its current value (NULL if there is no such parameter)
    /// and the value `RESET` gives it (NULL when `pg_settings` does not show it).
    pub fn sql(&self) -> String {
        let list: Vec<String> = self.names.keys().map(|n| format!("'{n}'")).collect();
        format!(
            "SELECT u.n, pg_catalog.current_setting(u.n, true), \
             (SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE pg_catalog.lower(s.name) = u.n) \
             FROM pg_catalog.unnest(ARRAY[{}]::text[]) AS u(n)",
            list.join(", ")
        )
    }

    /// Record what the server said (`rows` of [`Verify::sql`]) in the client's and the
    /// server's values.
    pub fn apply(
        &self,
        rows: &[(String, Option<String>, Option<String>)],
        client: &mut Params,
        startup: &Params,
        server: &mut Params,
    ) {
        for (name, current, reset_val) in rows {
            let Some(&was_reset) = self.names.get(name) else {
                continue;
            };
            let Some(value) = current else {
                server.remove(name);
                client.remove(name);
                continue;
            };
            server.insert(name.clone(), value.clone());
            if was_reset && reset_val.as_ref() == Some(value) {
                match startup.get(name) {
                    Some(v) => client.insert(name.clone(), v.clone()),
                    None => client.remove(name),
                };
            } else {
                client.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> Params {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replay_sets_what_differs_and_resets_what_the_client_never_set() {
        let client = params(&[("application_name", "a"), ("search_path", "x, \"$user\"")]);
        let server = params(&[("application_name", "a"), ("timezone", "UTC")]);
        assert_eq!(
            replay_sql(&client, &server).unwrap(),
            "RESET timezone; SELECT pg_catalog.set_config('search_path', $sy$x, \"$user\"$sy$, false)"
        );
        assert_eq!(replay_sql(&client, &client), None);
        assert_eq!(replay_sql(&Params::new(), &Params::new()), None);
    }

    #[test]
    fn literals_never_contain_their_tag() {
        assert_eq!(literal("plain"), "$sy$plain$sy$");
        assert_eq!(literal("a$sy$b"), "$sy1$a$sy$b$sy1$");
        assert_eq!(literal("ends$"), "$sy$ends$$sy$");
        assert_eq!(literal("ends$sy"), "$sy1$ends$sy$sy1$");
        assert_eq!(
            literal("'; drop table x; --"),
            "$sy$'; drop table x; --$sy$"
        );
    }

    #[test]
    fn verification_follows_the_last_operation() {
        let client = params(&[("application_name", "start")]);
        let server = params(&[("application_name", "start"), ("timezone", "UTC")]);
        let ops = [
            ParamOp::Set("search_path".into()),
            ParamOp::ResetAll,
            ParamOp::Set("statement_timeout".into()),
        ];
        let plan = Verify::plan(&ops, &client, &server).unwrap();
        assert!(plan
            .sql()
            .contains("ARRAY['application_name', 'search_path', 'statement_timeout', 'timezone']"));
        let row = |n: &str, v: Option<&str>, r: Option<&str>| {
            (n.to_string(), v.map(String::from), r.map(String::from))
        };
        let (mut c, mut s) = (client.clone(), server.clone());
        plan.apply(
            &[
                row("application_name", Some(""), Some("")),
                row(
                    "search_path",
                    Some("\"$user\", public"),
                    Some("\"$user\", public"),
                ),
                row("statement_timeout", Some("5s"), Some("0")),
                row("timezone", Some("Etc/UTC"), Some("Etc/UTC")),
            ],
            &mut c,
            &client,
            &mut s,
        );
        // Reset ones go back to the startup value (or away), set ones keep what the server has.
        assert_eq!(
            c,
            params(&[("application_name", "start"), ("statement_timeout", "5s")])
        );
        assert_eq!(s.get("application_name").map(String::as_str), Some(""));
        assert_eq!(s.get("statement_timeout").map(String::as_str), Some("5s"));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn a_rolled_back_reset_keeps_the_value() {
        let client = params(&[("search_path", "app")]);
        let plan = Verify::plan(&[ParamOp::Reset("search_path".into())], &client, &client).unwrap();
        let (mut c, mut s) = (client.clone(), client.clone());
        let rows = [(
            "search_path".to_string(),
            Some("app".to_string()),
            Some("public".to_string()),
        )];
        plan.apply(&rows, &mut c, &Params::new(), &mut s);
        assert_eq!(c, client);
        let rows = [("search_path".to_string(), None, None)];
        plan.apply(&rows, &mut c, &Params::new(), &mut s);
        assert!(c.is_empty() && s.is_empty());
    }

    #[test]
    fn reports_of_read_only_parameters_are_not_tracked() {
        assert!(tracked_report("application_name"));
        assert!(tracked_report("timezone"));
        assert!(!tracked_report("is_superuser"));
        assert!(!tracked_report("server_version"));
        assert!(!tracked_report("bad name"));
    }
}
