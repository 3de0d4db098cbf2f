//! Client messages under transaction pooling: what each one needs (a server connection, or
//! an answer from the router alone), how it is rewritten (statement names), and what it
//! will be answered with ([`super::expect`]).
//!
//! - `Query`, `FunctionCall` and the extended-protocol messages start a turn if the client
//!   has none. Their SQL is inspected ([`super::sql`]) for parameter changes and for what
//!   pins the client.
//! - `Parse` of a named statement is sent under its global name, or answered by the router
//!   when the server already has it; `Bind` and `Describe` of one the server lacks are
//!   preceded by the router's own `Parse`; `Close` of one is answered by the router (the
//!   statement stays prepared for others).
//! - `Sync` with no turn in progress is answered `ReadyForQuery` idle without a server;
//!   `Flush` and copy messages with none are ignored, as the server itself ignores stray ones.

use std::sync::Arc;

use super::expect::Entry;
use super::held::Check;
use super::nodes::DdlTurn;
use super::prepared::StatementDef;
use super::relay::{Held, TxEnd, TxRelay, HIGH};
use super::sql::{self, Effects};
use crate::route::turn::route_setting;
use switchyard_pgwire::backend::{self as message, SqlState};
use switchyard_pgwire::frame::{self, put, HEADER_LEN};
use switchyard_pgwire::frontend::{self, Bind, Malformed, Parse};

fn malformed(e: Malformed) -> TxEnd {
    TxEnd::ClientViolation(e.to_string())
}

impl TxRelay<'_> {
    /// Handle the whole messages the client sent, as long as the server keeps up.
    pub async fn client_messages(&mut self) -> Result<(), TxEnd> {
        loop {
            if let Some(msg) = self.gate.take() {
                if self
                    .held
                    .as_ref()
                    .is_some_and(|h| h.check == Some(Check::Pending))
                {
                    // The check it waits for is not answered yet.
                    self.gate = Some(msg);
                    return Ok(());
                }
                self.on_client(msg[0], &msg).await?;
                self.drain_synthetic();
                continue;
            }
            if self.held.as_ref().is_some_and(|h| h.closing) {
                // The next turn waits for this one to end (see `Held::closing`): it may
                // belong on another node.
                return Ok(());
            }
            if self
                .held
                .as_ref()
                .is_some_and(|h| h.to_server.len() >= HIGH)
            {
                return Ok(());
            }
            let Some((tag, len)) = frame::peek(&mut self.cbuf, frame::frontend_limit)
                .map_err(|e| TxEnd::ClientViolation(e.to_string()))?
            else {
                return Ok(());
            };
            let msg = self.cbuf.split_to(HEADER_LEN + len);
            self.on_client(tag, &msg).await?;
            self.drain_synthetic();
        }
    }

    async fn on_client(&mut self, tag: u8, msg: &[u8]) -> Result<(), TxEnd> {
        let body = &msg[HEADER_LEN..];
        if self.skip_to_sync && self.held.is_none() {
            match tag {
                b'X' => return Err(TxEnd::Terminated),
                b'S' => {
                    self.skip_to_sync = false;
                    message::ready_for_query(&mut self.to_client, b'I');
                }
                _ => {}
            }
            return Ok(());
        }
        if self.held.is_none() && matches!(tag, b'Q' | b'F' | b'P' | b'B' | b'D' | b'E' | b'S') {
            if let Some(text) = self.lost.take() {
                tracing::debug!(tag = %(tag as char), "answering a lost transaction's next message");
                // Its transaction died with its server connection: this fails instead.
                message::error_response(
                    &mut self.to_client,
                    "ERROR",
                    SqlState::CONNECTION_FAILURE,
                    &text,
                );
                match tag {
                    b'Q' | b'F' | b'S' => message::ready_for_query(&mut self.to_client, b'I'),
                    _ => self.skip_to_sync = true,
                }
                return Ok(());
            }
        }
        match tag {
            b'X' => return Err(TxEnd::Terminated),
            b'Q' => {
                let text = frontend::query(body).map_err(malformed)?;
                if self.held.is_none() {
                    if let Some(route) = route_setting(text) {
                        self.route_override = route;
                        put(&mut self.to_client, b'C', &[b"SET\0"]);
                        message::ready_for_query(&mut self.to_client, b'I');
                        return Ok(());
                    }
                }
                let fx = sql::inspect(text);
                if !self.hold(Some(text)).await? {
                    message::ready_for_query(&mut self.to_client, b'I');
                    return Ok(());
                }
                self.note(&fx);
                self.send(msg, Entry::Simple);
            }
            b'F' => {
                if !self.hold(None).await? {
                    message::ready_for_query(&mut self.to_client, b'I');
                    return Ok(());
                }
                self.send(msg, Entry::Simple);
            }
            b'S' => match self.held.as_mut() {
                None => message::ready_for_query(&mut self.to_client, b'I'),
                Some(h) => {
                    h.mid_batch = false;
                    h.to_server.extend_from_slice(msg);
                    h.expect.push(Entry::Sync);
                }
            },
            b'H' | b'd' => {
                if let Some(h) = self.held.as_mut() {
                    h.to_server.extend_from_slice(msg);
                }
            }
            b'c' | b'f' => {
                if let Some(h) = self.held.as_mut() {
                    h.to_server.extend_from_slice(msg);
                    h.expect.push(Entry::CopyEnd);
                }
            }
            b'P' => self.on_parse(msg).await?,
            b'B' => self.on_bind(msg).await?,
            b'D' => self.on_describe(msg).await?,
            b'C' => self.on_close(msg).await?,
            b'E' => {
                if self.hold_batch(None).await? {
                    self.send(msg, Entry::Execute);
                }
            }
            _ => return Err(malformed(Malformed(tag))),
        }
        Ok(())
    }

    /// [`TxRelay::hold`] for an extended-protocol message: when routing refuses the turn,
    /// the rest of the batch is dropped up to its `Sync`.
    async fn hold_batch(&mut self, sql: Option<&[u8]>) -> Result<bool, TxEnd> {
        let held = self.hold(sql).await?;
        if !held {
            self.skip_to_sync = true;
        }
        Ok(held)
    }

    /// Pass `msg` on as it is and expect `answer` to it.
    fn send(&mut self, msg: &[u8], answer: Entry) {
        if let Some(h) = self.held.as_mut() {
            if !matches!(answer, Entry::Simple) {
                h.mid_batch = true;
            }
            h.to_server.extend_from_slice(msg);
            h.expect.push(answer);
        }
    }

    /// Record what the client's SQL does to its session (in the turn it runs in).
    fn note(&mut self, fx: &Effects) {
        if let Some(h) = self.held.as_mut() {
            h.ops.extend(fx.ops.iter().cloned());
            if fx.ddl {
                // From before it runs to the end of its turn: a `Parse` the router would
                // otherwise answer from a shared copy while this DDL holds its lock would be
                // described by the server once it committed, and fail with 0A000 where a
                // direct connection's `Parse` would have waited for the lock and planned
                // afresh.
                match &h.ddl {
                    Some(_) => self.node.statements.retire_all(),
                    None => h.ddl = Some(DdlTurn::start(self.node.clone())),
                }
            }
        }
        if let (Some(why), None) = (fx.pin, self.pinned) {
            self.pinned = Some(why);
            tracing::debug!(cluster = %self.up.cluster, reason = why, "client pinned to its server connection for the rest of its session");
            self.metrics
                .pin(&self.node.counters, self.up.cluster, &self.up.node, why);
        }
    }

    async fn on_parse(&mut self, msg: &[u8]) -> Result<(), TxEnd> {
        let Parse { name, query, types } =
            frontend::parse(&msg[HEADER_LEN..]).map_err(malformed)?;
        let def = (!name.is_empty()).then(|| self.node.statements.get(query, types));
        if let (Some(def), None) = (&def, &self.held) {
            if def.accepted() {
                // Known good and nothing in flight: no server needed (see `prepared`).
                self.me.statements.insert_provisional(name, def.clone());
                put(&mut self.to_client, b'1', &[]);
                return Ok(());
            }
        }
        if !self.hold_batch(Some(query)).await? {
            return Ok(());
        }
        match &def {
            Some(d) => self.note(&d.effects),
            None => self.note(&sql::inspect(query)),
        }
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        h.mid_batch = true;
        let Some(def) = def.filter(|_| !h.expect.skipping()) else {
            // Unnamed, or the server skips it anyway.
            h.to_server.extend_from_slice(msg);
            h.expect.push(Entry::Parse {
                swallow: false,
                stmt: None,
                client: None,
            });
            return Ok(());
        };
        self.me.statements.insert(name, def.clone());
        if has(h, &def) {
            h.expect.push(Entry::Synthetic(b'1'));
        } else {
            frontend::put_parse(&mut h.to_server, &def.name, &def.query, def.types_to_send());
            h.expect.push(Entry::Parse {
                swallow: false,
                stmt: Some(def.clone()),
                client: Some(name.into()),
            });
        }
        Ok(())
    }

    async fn on_bind(&mut self, msg: &[u8]) -> Result<(), TxEnd> {
        let Bind {
            portal,
            statement: stmt,
            rest,
        } = frontend::bind(&msg[HEADER_LEN..]).map_err(malformed)?;
        let def = self.me.statements.get(stmt).cloned();
        if !self.hold_batch(def.as_ref().map(|d| &d.query[..])).await? {
            return Ok(());
        }
        if let Some(d) = &def {
            self.note(&d.effects);
        }
        match (def, self.held.as_mut()) {
            (Some(def), Some(h)) if !h.expect.skipping() => {
                let (def, first_use) = self.current_statement(stmt, def);
                if first_use && self.probe(stmt, &def, msg) {
                    return Ok(());
                }
                if self.check_copy(&def, msg) {
                    return Ok(());
                }
                self.prepare(&def);
                if let Some(h) = self.held.as_mut() {
                    frontend::put_bind(&mut h.to_server, portal, &def.name, rest);
                    h.mid_batch = true;
                    h.expect.push(Entry::Bind(Some(def)));
                }
            }
            _ => self.send(msg, Entry::Bind(None)),
        }
        Ok(())
    }

    async fn on_describe(&mut self, msg: &[u8]) -> Result<(), TxEnd> {
        let frontend::Subject { kind, name } =
            frontend::target(b'D', &msg[HEADER_LEN..]).map_err(malformed)?;
        let def = match kind {
            b'S' => self.me.statements.get(name).cloned(),
            _ => None,
        };
        if !self.hold_batch(def.as_ref().map(|d| &d.query[..])).await? {
            return Ok(());
        }
        match (def, self.held.as_mut()) {
            (Some(def), Some(h)) if !h.expect.skipping() => {
                let (def, first_use) = self.current_statement(name, def);
                if first_use && self.probe(name, &def, msg) {
                    return Ok(());
                }
                if self.check_copy(&def, msg) {
                    return Ok(());
                }
                self.prepare(&def);
                if let Some(h) = self.held.as_mut() {
                    frontend::put_target(&mut h.to_server, b'D', b'S', &def.name);
                    h.mid_batch = true;
                    h.expect.push(Entry::Describe(Some(def)));
                }
            }
            _ => self.send(msg, Entry::Describe(None)),
        }
        Ok(())
    }

    async fn on_close(&mut self, msg: &[u8]) -> Result<(), TxEnd> {
        let frontend::Subject { kind, name } =
            frontend::target(b'C', &msg[HEADER_LEN..]).map_err(malformed)?;
        if kind == b'S' && self.me.statements.get(name).is_some() {
            // Other clients may use the statement: it stays prepared on the servers.
            match self.held.as_mut() {
                None => {
                    self.me.statements.remove(name);
                    put(&mut self.to_client, b'3', &[]);
                }
                Some(h) => {
                    h.mid_batch = true;
                    if h.expect.push(Entry::Synthetic(b'3')) {
                        self.me.statements.remove(name);
                    }
                }
            }
            return Ok(());
        }
        if self.hold_batch(None).await? {
            self.send(msg, Entry::Close { swallow: false });
        }
        Ok(())
    }

    /// The statement the client's `name` stands for now that a server will use it, and
    /// whether this is the first use of a `Parse` the router answered alone. Such a `Parse`
    /// is planned only here, so if DDL retired its shared statement since (while this turn
    /// waited for a server connection, say), the client gets the current one, as its own
    /// `Parse` reaching a server now would.
    fn current_statement(
        &mut self,
        name: &[u8],
        def: Arc<StatementDef>,
    ) -> (Arc<StatementDef>, bool) {
        if !self.me.statements.take_provisional(name) {
            return (def, false);
        }
        if !def.retired() {
            return (def, true);
        }
        let current = self.node.statements.get(&def.query, &def.types);
        self.me.statements.insert(name, current.clone());
        (current, true)
    }

    /// Before the first use (`msg`, a `Bind` or `Describe`) of a `Parse` the router
    /// answered alone, on a server connection that already has a copy of its statement:
    /// that copy was planned when some client first prepared the text, perhaps before DDL
    /// the router has not seen yet (another router's, a migration run directly, or DDL
    /// whose text reached the router just after this client's `Parse`). A direct
    /// connection's `Parse` would be planned now, so the router first has the server
    /// describe the copy (`Describe` and `Flush`, outside any transaction), and sends `msg`
    /// in the same implicit transaction once the copy is found good (the locks the server
    /// took to check it are then held until the client's `Sync`, so DDL cannot slip in
    /// between). If the server says the copy went stale (0A000, XX000), the router ends
    /// the failed request with its own `Sync`, every statement is retired and the client's
    /// name moves to a statement planned afresh: the client never sees an error its own
    /// `Parse` would not have got. `true`: `msg` waits in `gate` for the answer.
    fn probe(&mut self, name: &[u8], def: &Arc<StatementDef>, msg: &[u8]) -> bool {
        let Some(h) = self.held.as_mut() else {
            return false;
        };
        if h.mid_batch
            || h.conn.conn.status != b'I'
            || !h.expect.only_internal()
            || !h.conn.conn.state.prepared.contains(&def.id)
        {
            // In a transaction, or after other requests of the batch, a failed probe would
            // fail them too: the copy is used as it is.
            return false;
        }
        let probe = Entry::Probe {
            stmt: def.clone(),
            client: name.into(),
        };
        if !h.expect.push(probe) {
            return false;
        }
        frontend::put_target(&mut h.to_server, b'D', b'S', &def.name);
        put(&mut h.to_server, b'H', &[]);
        h.check = Some(Check::Pending);
        // The client's request follows in this batch: the turn must not end in between.
        h.mid_batch = true;
        self.gate = Some(Box::new(msg.into()));
        true
    }

    /// Before the client's `msg` (a `Bind` or `Describe` of `def`) goes to a server
    /// connection that must prepare `def` again although DDL retired it since its clients
    /// were told its result: prepare it, describe it and wait (`msg` is kept in `gate`) to
    /// compare. A direct connection would keep the client's statement and fail it with 0A000
    /// if its result type changed; a copy planned now would silently return rows of another
    /// shape. When the check says so, the request fails that way: the fresh copy is closed
    /// (the next use checks again, and fails again, as on its own server) and a `Parse` that
    /// cannot succeed makes the server skip to `Sync` and fail a transaction, with 0A000 for
    /// the client in place of its error. `true`: `msg` was handled (deferred or failed).
    fn check_copy(&mut self, def: &Arc<StatementDef>, msg: &[u8]) -> bool {
        let Some(h) = self.held.as_mut() else {
            return false;
        };
        match h.check.take() {
            Some(Check::Differs) => {
                tracing::debug!(cluster = %self.up.cluster, node = %h.node, server_pid = h.conn.conn.key.pid, statement = %String::from_utf8_lossy(&def.name), "a statement prepared again after DDL has another result type: failing it with 0A000");
                h.conn.conn.state.prepared.remove(&def.id);
                frontend::put_target(&mut h.to_server, b'C', b'S', &def.name);
                h.expect.push(Entry::Close { swallow: true });
                frontend::put_parse(&mut h.to_server, b"sy_fail", b"!", &[0, 0]);
                h.expect.push(Entry::Fail);
                h.mid_batch = true;
                return true;
            }
            Some(_) => return false,
            None => {}
        }
        if !def.retired() || !def.is_described() || has(h, def) {
            return false;
        }
        frontend::put_parse(&mut h.to_server, &def.name, &def.query, def.types_to_send());
        h.expect.push(Entry::Parse {
            swallow: true,
            stmt: Some(def.clone()),
            client: None,
        });
        frontend::put_target(&mut h.to_server, b'D', b'S', &def.name);
        h.expect.push(Entry::Check(def.clone()));
        put(&mut h.to_server, b'H', &[]);
        h.check = Some(Check::Pending);
        h.mid_batch = true;
        self.gate = Some(Box::new(msg.into()));
        true
    }

    /// Prepare `def` on the held server connection first if it lacks it.
    fn prepare(&mut self, def: &Arc<StatementDef>) {
        let Some(h) = self.held.as_mut() else { return };
        if has(h, def) {
            return;
        }
        frontend::put_parse(&mut h.to_server, &def.name, &def.query, def.types_to_send());
        h.expect.push(Entry::Parse {
            swallow: true,
            stmt: Some(def.clone()),
            client: None,
        });
        self.metrics.injection(&self.node.counters);
    }

    /// Answers the router makes up that are due now.
    #[inline]
    pub fn drain_synthetic(&mut self) {
        if let Some(h) = self.held.as_mut() {
            while let Some(tag) = h.expect.take_synthetic() {
                put(&mut self.to_client, tag, &[]);
            }
        }
    }
}

/// Whether the held server has `def` prepared, or is preparing it.
fn has(h: &Held, def: &StatementDef) -> bool {
    h.conn.conn.state.prepared.contains(&def.id) || h.expect.preparing(def.id)
}
