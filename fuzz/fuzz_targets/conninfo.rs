//! The libpq connection string rewrite a failover uses to re-point a replica
//! (`primary_conninfo` with a new host and port, then quoted for `ALTER SYSTEM`).
//!
//! Properties: the rewrite parses back to the same pairs minus `host`/`hostaddr`/`port`,
//! plus the new host and port; and the SQL literal it is sent in, parsed by PostgreSQL's own
//! grammar (`pg_query`), is the rewritten text exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_query::protobuf::a_const;
use pg_query::NodeEnum;
use switchyard_dbrouter::ha::failover::conninfo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (conn, host) = text.split_once('\u{1}').unwrap_or((text, "new.host"));
    let port = (data.len() as u16).wrapping_mul(257);
    let Ok(pairs) = conninfo::parse(conn) else {
        assert!(conninfo::with_host_port(conn, host, port).is_err());
        return;
    };
    let rewritten = conninfo::with_host_port(conn, host, port)
        .unwrap_or_else(|e| panic!("parses but does not rewrite: {e}"));
    let mut want: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "hostaddr" | "port"))
        .collect();
    want.push(("host".into(), host.to_string()));
    want.push(("port".into(), port.to_string()));
    let got = conninfo::parse(&rewritten)
        .unwrap_or_else(|e| panic!("the rewrite {rewritten:?} does not parse: {e}"));
    assert_eq!(got, want, "the rewrite of {conn:?} is {rewritten:?}");

    if rewritten.contains('\0') {
        return;
    }
    let sql = format!(
        "ALTER SYSTEM SET primary_conninfo = {}",
        conninfo::quote_literal(&rewritten)
    );
    let parsed = pg_query::parse(&sql, 0).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    let stmt = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref()?.node.as_ref());
    let Some(NodeEnum::AlterSystemStmt(alter)) = stmt else {
        panic!("{sql:?} is not one ALTER SYSTEM");
    };
    let value = alter
        .setstmt
        .as_ref()
        .and_then(|s| s.args.first())
        .and_then(|a| match a.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(a_const::Val::Sval(s)) => Some(s.sval.clone()),
                _ => None,
            },
            _ => None,
        });
    assert_eq!(value.as_deref(), Some(rewritten.as_str()), "{sql:?}");
});
