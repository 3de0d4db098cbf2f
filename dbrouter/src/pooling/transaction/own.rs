//! The router's own queries on a server connection outside a client's turn: the login's
//! replay of a client's parameters ([`set_params`]) and the `ROLLBACK` of a client that left
//! in a transaction, each one query read to its `ReadyForQuery` ([`own_query`]).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::params::{replay_sql, Params};
use crate::net::read::read_frame;
use crate::server::conn::ServerConn;
use switchyard_pgwire::backend::error_message;
use switchyard_pgwire::frame;
use switchyard_pgwire::frontend::put_query;

/// Longest the router's own queries at login and logout may take.
pub(super) const OWN_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Make `conn`'s parameters `want` (the login replay); the server's notices come back, as
/// messages. `Err(Some(message))`: the server refused a value; `Err(None)`: the connection
/// failed.
pub(super) async fn set_params(
    conn: &mut ServerConn,
    want: &Params,
) -> Result<BytesMut, Option<String>> {
    let Some(sql) = replay_sql(want, &conn.state.params) else {
        return Ok(BytesMut::new());
    };
    let notices = own_query(conn, &sql).await?;
    conn.state.params = want.clone();
    Ok(notices)
}

/// Run `sql` on an idle `conn` and read to its `ReadyForQuery`, keeping `ParameterStatus`
/// news. Returns the `NoticeResponse`s it got, as messages (the caller decides whether they
/// are the client's). `Err(Some(message))` if it failed.
pub(super) async fn own_query(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<BytesMut, Option<String>> {
    let mut out = BytesMut::new();
    put_query(&mut out, sql);
    conn.stream.write_all(&out).await.map_err(|_| None)?;
    let mut buf = BytesMut::new();
    let mut error = None;
    let mut notices = BytesMut::new();
    loop {
        let f = read_frame(&mut conn.stream, &mut buf, frame::backend_limit)
            .await
            .map_err(|_| None)?;
        match f.tag {
            b'E' => error = Some(error_message(&f.body)),
            b'N' => notices.extend_from_slice(&f.to_wire()),
            b'S' => conn.set_parameter_status(f),
            b'G' | b'H' | b'W' => return Err(None),
            b'Z' => {
                conn.status = f.body.first().copied().unwrap_or(0);
                if !buf.is_empty() {
                    return Err(None);
                }
                return error.map_or(Ok(notices), |e| Err(Some(e)));
            }
            _ => {}
        }
    }
}
