//! Server messages under transaction pooling: each is the client's (passed on), the answer
//! to something the router sent itself (swallowed, and read when it is a parameter
//! verification), or news the router must keep: a statement now prepared, a parameter's new
//! value (`ParameterStatus`), the transaction status (`ReadyForQuery`), statements gone
//! (`DISCARD ALL`, `DEALLOCATE ALL`).
//!
//! A failed parameter replay ends the session (its queries would run with the wrong
//! settings); a failed verification only keeps the connection from being reused.

use std::sync::Arc;

use bytes::BytesMut;

use super::expect::{Desync, Entry, Internal, Seen};
use super::held::Check;
use super::nodes::DdlTurn;
use super::params;
use super::prepared::{self, StatementDef};
use super::relay::{TxEnd, TxRelay};
use super::sql::ParamOp;
use crate::server::conn::ClientErrorOrFrame;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::backend::{
    data_row, error_code, error_is_fatal, error_message, first_column, parameter_status_fields,
};
use switchyard_pgwire::error::ClientError;
use switchyard_pgwire::frame::{self, put, Frame, HEADER_LEN};

/// The server's message when a statement's result type changed since it was prepared.
const STALE_RESULT: &str = "cached plan must not change result type";

fn desync(e: Desync) -> TxEnd {
    TxEnd::ServerViolation(e.to_string())
}

impl TxRelay<'_> {
    /// Handle the whole messages the server sent.
    pub fn server_messages(&mut self) -> Result<(), TxEnd> {
        loop {
            let Some(h) = self.held.as_mut() else {
                return Ok(());
            };
            let Some((tag, len)) = frame::peek(&mut h.sbuf, frame::backend_limit)
                .map_err(|e| TxEnd::ServerViolation(e.to_string()))?
            else {
                return Ok(());
            };
            let msg = h.sbuf.split_to(HEADER_LEN + len);
            self.on_server(tag, msg)?;
            self.drain_synthetic();
        }
    }

    fn on_server(&mut self, tag: u8, msg: BytesMut) -> Result<(), TxEnd> {
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        let body = &msg[HEADER_LEN..];
        let internal = h.expect.internal_front();
        let mut forward = !internal;
        match tag {
            // Notifications are always the client's (a pinned LISTEN).
            b'A' => forward = true,
            b'N' => {}
            b'S' => {
                if let Some((name, value)) = parameter_status_fields(body) {
                    if !internal {
                        self.me.reported.insert(name, value);
                        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                        if params::tracked_report(&name) {
                            h.ops.push(ParamOp::Set(name));
                        }
                    }
                }
                h.conn.conn.set_parameter_status(Frame {
                    tag,
                    body: body.into(),
                });
            }
            b'E' if error_is_fatal(body) => {
                // The server ends the connection (shutdown, postmaster gone, terminated): the
                // close follows, and the client is told in its own terms when it comes
                // (`server_lost`: 08006, the session goes on) rather than with a FATAL that
                // would say its session is over.
                let message = error_message(body);
                tracing::debug!(cluster = %self.up.cluster, error = %message, "server connection ending");
                h.dirty = Some("the server ended the connection");
                h.fatal = Some(message);
                forward = false;
            }
            b'E' if h.expect.is_empty() => {
                // Nothing is owed: a server that is shutting down or whose postmaster died
                // says so (FATAL 57P01) to an idle session. Not the client's: it asked for
                // nothing, and a client gets no unsolicited errors; the close follows.
                tracing::debug!(cluster = %self.up.cluster, error = %error_message(body), "server error outside a request");
                h.dirty = Some("the server sent an error outside a request");
                forward = false;
            }
            b'E' => {
                if h.expect.fail_at_front() {
                    // The router's failing `Parse`: the client is owed the error its own
                    // server would have given (see `TxRelay::check_copy`).
                    forward = false;
                    message::error_response(
                        &mut self.to_client,
                        "ERROR",
                        SqlState::FEATURE_NOT_SUPPORTED,
                        STALE_RESULT,
                    );
                }
                if let Some(def) = h.expect.statement_at_front() {
                    let (code, text) = (error_code(body), error_message(body));
                    if prepared::is_stale(&code, &text) {
                        // The schema changed where the router did not see it: the next
                        // `Parse` of any text is prepared afresh (asyncpg's retry after 0A000
                        // then succeeds, as on a server of its own).
                        tracing::debug!(cluster = %self.up.cluster, node = %h.node, server_pid = h.conn.conn.key.pid, statement = %String::from_utf8_lossy(&def.name), code, "shared prepared statement went stale; retiring every statement");
                        self.node.statements.retire_all();
                    }
                }
                if let Some((stmt, client)) = h.expect.probe_at_front() {
                    // The router's probe failed (see `TxRelay::probe`): not the client's
                    // error. The server skips to a `Sync`; the router sends its own.
                    let probed = Internal::Probed {
                        stale: prepared::is_stale(&error_code(body), &error_message(body)),
                        stmt: stmt.clone(),
                        client: client.into(),
                    };
                    h.expect.on_error();
                    h.expect.push(Entry::Internal(probed));
                    put(&mut h.to_server, b'S', &[]);
                    return Ok(());
                }
                let (forget, internal) = h.expect.on_error();
                for name in forget {
                    self.me.statements.remove(&name);
                }
                if internal {
                    h.internal_error = Some(error_message(body));
                }
                if h.check == Some(Check::Pending) && !h.expect.checking() {
                    h.check = Some(Check::Failed);
                }
            }
            b'Z' => {
                let &[status] = body else {
                    return Err(TxEnd::ServerViolation("malformed ReadyForQuery".into()));
                };
                h.conn.conn.status = status;
                match h.expect.on_ready().map_err(desync)? {
                    None => forward = true,
                    Some(Internal::Replay) => {
                        if let Some(e) = h.internal_error.take() {
                            return Err(TxEnd::Refused(ClientErrorOrFrame::Error(
                                ClientError::fatal(
                                    SqlState::CONNECTION_FAILURE,
                                    format!("could not restore this session's parameters on a server connection: {e}"),
                                ),
                            )));
                        }
                        self.tell_parameters();
                    }
                    Some(Internal::Sweep) => {}
                    Some(Internal::Probed {
                        stmt,
                        client,
                        stale,
                    }) => self.on_probed(&stmt, &client, stale),
                    Some(Internal::WalPosition) => {
                        if let Some(e) = h.internal_error.take() {
                            tracing::debug!(cluster = %self.up.cluster, error = %e, "reading the primary's WAL position failed");
                        } else if let Some(lsn) = h.wal_position.take() {
                            self.min_lsn = self.min_lsn.max(Some(lsn));
                        }
                    }
                    Some(Internal::Verify(v)) => {
                        if let Some(e) = h.internal_error.take() {
                            tracing::warn!(cluster = %self.up.cluster, error = %e, "reading session parameters back failed");
                            h.dirty = Some("reading its parameters back failed");
                        } else {
                            let state = &mut h.conn.conn.state.params;
                            v.apply(&h.rows, &mut self.me.params, &self.me.startup, state);
                        }
                        h.rows.clear();
                    }
                }
            }
            _ => {
                let verifying = h.expect.verify_front();
                if tag == b'D' && h.expect.wal_position_front() {
                    h.wal_position = first_column(body).and_then(|v| {
                        std::str::from_utf8(v)
                            .ok()?
                            .parse::<crate::ha::monitor::Lsn>()
                            .ok()
                    });
                }
                if tag == b't' {
                    if let Some(def) = h.expect.statement_at_front() {
                        def.resolve(body);
                    }
                } else if matches!(tag, b'T' | b'n') {
                    if h.expect.probe_at_front().is_some() {
                        h.check = Some(Check::Same);
                    } else if let Some(def) = h.expect.check_at_front() {
                        h.check = Some(if def.same_result(tag, body) {
                            Check::Same
                        } else {
                            Check::Differs
                        });
                    } else if let Some(def) = h.expect.statement_at_front() {
                        def.describe(tag, body);
                    }
                }
                match h.expect.on_message(tag).map_err(desync)? {
                    Seen::Forward => {
                        if tag == b'C' && matches!(body, b"DISCARD ALL\0" | b"DEALLOCATE ALL\0") {
                            h.conn.conn.state.prepared.clear();
                            self.me.statements.clear();
                        } else if tag == b'C' && prepared::is_ddl(body) {
                            // Statements prepared before may mean something else now: the
                            // next `Parse` of any text is planned afresh (and again when the
                            // turn ends, for DDL that commits or rolls back later).
                            tracing::debug!(cluster = %self.up.cluster, node = %h.node, server_pid = h.conn.conn.key.pid, tag = %String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(body)), "DDL: retiring every shared prepared statement");
                            match &h.ddl {
                                Some(_) => self.node.statements.retire_all(),
                                None => h.ddl = Some(DdlTurn::start(self.node.clone())),
                            }
                        }
                    }
                    Seen::Swallow => forward = false,
                    Seen::Internal => {
                        if tag == b'D' && verifying {
                            if let Some(row) = verify_row(body) {
                                h.rows.push(row);
                            }
                        }
                    }
                    Seen::Prepared { stmt, swallow } => {
                        if let Some(def) = stmt {
                            def.accept();
                            h.conn.conn.state.prepared.insert(def.id);
                        }
                        forward = !swallow;
                    }
                }
            }
        }
        if forward {
            self.to_client.extend_from_slice(&msg);
        }
        Ok(())
    }

    /// The router's `Sync` after a failed probe before the first use of the client's
    /// `client` (see `TxRelay::probe`) is answered: when the server's copy of `stmt` went
    /// stale, every statement is retired and `client` now stands for one planned afresh.
    /// Either way the client's request that waited goes on (and meets any other error
    /// itself).
    fn on_probed(&mut self, stmt: &Arc<StatementDef>, client: &[u8], stale: bool) {
        let Some(h) = self.held.as_mut() else { return };
        if stale {
            tracing::debug!(cluster = %self.up.cluster, node = %h.node, server_pid = h.conn.conn.key.pid, statement = %String::from_utf8_lossy(&stmt.name), "a shared copy went stale before its first use by this client; planning the client's statement afresh");
            self.node.statements.retire_all();
            let current = self.node.statements.get(&stmt.query, &stmt.types);
            self.me.statements.insert(client, current);
        }
        h.check = Some(Check::Same);
    }

    /// After a replay: tell the client every reported parameter whose value it does not
    /// know yet (its own values were set; the server may report others differently).
    fn tell_parameters(&mut self) {
        let Some(h) = self.held.as_ref() else { return };
        for f in &h.conn.conn.parameter_status {
            let Some((name, value)) = parameter_status_fields(&f.body) else {
                continue;
            };
            if self.me.reported.get(name) != Some(value) {
                self.me.reported.insert(name, value);
                self.to_client.extend_from_slice(&f.to_wire());
            }
        }
    }
}

/// A row of [`params::Verify::sql`]: name, current value, reset value.
fn verify_row(body: &[u8]) -> Option<(String, Option<String>, Option<String>)> {
    let cols = data_row(body)?;
    let text = |c: &Option<&[u8]>| c.map(|v| String::from_utf8_lossy(v).into_owned());
    match cols.as_slice() {
        [Some(name), current, reset] => Some((
            String::from_utf8_lossy(name).into_owned(),
            text(current),
            text(reset),
        )),
        _ => None,
    }
}
