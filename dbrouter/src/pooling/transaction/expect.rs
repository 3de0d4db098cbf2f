//! What the router expects back from a server connection, message by message, in the order
//! it sent them ([`Expect`]).
//!
//! The server answers every request in order, so a queue of what each one will produce tells
//! which of its answers are the client's and which are the router's own: the `ParseComplete`
//! of a `Parse` the router injected, the answers to a parameter replay, a `ReadyForQuery`
//! the client never asked for. It also tells the router when a client's turn is over: the
//! queue is empty, the last `ReadyForQuery` said idle, and the client is not mid-batch.
//!
//! The server's own rules are mirrored here:
//! - After an error in an extended-protocol message the server discards everything up to the
//!   next `Sync`; so does the queue ([`Expect::on_error`]), and requests sent while it does
//!   so expect nothing.
//! - In copy-in mode the server ignores `Sync` and `Flush` (tokio-postgres sends a `Sync`
//!   right after the `Execute` of a `COPY … FROM STDIN`); so does the queue, up to the
//!   client's `CopyDone` or `CopyFail` (`on_copy_in`).
//! - Answers the router makes up (a `CloseComplete` for a statement that stays prepared, a
//!   `ParseComplete` for one the server already has) wait their turn in the queue
//!   ([`Entry::Synthetic`]), so they reach the client where the server's would have.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::params::Verify;
use super::prepared::StatementDef;

/// One request's expected answer.
#[derive(Debug)]
pub enum Entry {
    /// `ParseComplete`. `stmt`: the global statement being prepared; `client`: the client's
    /// name for it (forgotten if the `Parse` fails or is skipped); `swallow`: injected.
    Parse {
        swallow: bool,
        stmt: Option<Arc<StatementDef>>,
        client: Option<Box<[u8]>>,
    },
    /// `BindComplete`. `stmt`: the global statement bound, when the client named one.
    Bind(Option<Arc<StatementDef>>),
    /// (`ParameterDescription`), then `RowDescription` or `NoData`. `stmt`: the global
    /// statement described, when the client named one.
    Describe(Option<Arc<StatementDef>>),
    /// Rows or copy data, then `CommandComplete`, `EmptyQueryResponse` or `PortalSuspended`.
    Execute,
    /// `CloseComplete`; `swallow`: injected.
    Close { swallow: bool },
    /// A message the router answers itself, when its turn comes.
    Synthetic(u8),
    /// `ReadyForQuery`.
    Sync,
    /// A simple `Query` or `FunctionCall`: anything, up to `ReadyForQuery`.
    Simple,
    /// Where the client's `CopyDone`/`CopyFail` went: no answer.
    CopyEnd,
    /// The router's own query: everything up to `ReadyForQuery` is swallowed.
    Internal(Internal),
    /// The router's `Describe` of a statement it just prepared again after DDL, to compare
    /// with what its clients were told: `ParameterDescription`, then `RowDescription` or
    /// `NoData`, all swallowed.
    Check(Arc<StatementDef>),
    /// The router's `Describe` (and `Flush`) of the server's copy of `stmt` before the
    /// first use of the client's `Parse` of it, under the name `client`, that the router
    /// answered alone: `ParameterDescription`, then `RowDescription` or `NoData`, all
    /// swallowed.
    Probe {
        stmt: Arc<StatementDef>,
        client: Box<[u8]>,
    },
    /// A `Parse` the router sent to fail on purpose (the server then skips to `Sync`, and a
    /// transaction fails, as for the client's own failed request): its error is replaced
    /// by the one the client is owed.
    Fail,
}

/// The router's own queries.
#[derive(Debug)]
pub enum Internal {
    /// Parameter replay before a client's turn.
    Replay,
    /// Asking for parameter values after a client's turn.
    Verify(Verify),
    /// Asking the primary for its WAL position after a client's write (read-your-writes).
    WalPosition,
    /// The `Sync` after closing statements nobody can use any more
    /// ([`super::prepared::closable`]).
    Sweep,
    /// The `Sync` that ends a failed probe ([`Entry::Probe`]); `stale`: the server said the
    /// copy went stale.
    Probed {
        stmt: Arc<StatementDef>,
        client: Box<[u8]>,
        stale: bool,
    },
}

/// Where a server message belongs.
#[derive(Debug)]
pub enum Seen {
    /// The client's: pass it on.
    Forward,
    /// An answer to the router's injected request.
    Swallow,
    /// Part of the answer to the router's own query at the front.
    Internal,
    /// A `ParseComplete`: `stmt` is now prepared on the server.
    Prepared {
        stmt: Option<Arc<StatementDef>>,
        swallow: bool,
    },
}

/// The server sent something the queue says it cannot have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unexpected message '{}' from the server (expected the answer to {expected})", *.tag as char)]
pub struct Desync {
    pub tag: u8,
    pub expected: &'static str,
}

/// The answers a server connection owes, in order.
#[derive(Debug, Default)]
pub struct Expect {
    q: VecDeque<Entry>,
    /// An extended-protocol error was seen and its `Sync` is not queued yet.
    skipping: bool,
    /// The server is in copy-in mode and the client's `CopyDone`/`CopyFail` is not queued.
    copy_in: bool,
    /// Global statements with a `Parse` in the queue, and how many.
    pending: HashMap<u64, u32>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether the server is skipping messages until a `Sync`.
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// Whether the server waits for the client's copy data.
    pub fn copy_in(&self) -> bool {
        self.copy_in
    }

    /// Whether the server is answering the router's own query.
    pub fn internal_front(&self) -> bool {
        matches!(self.q.front(), Some(Entry::Internal(_)))
    }

    /// Whether only the router's own queries are in flight (each ends with its
    /// `ReadyForQuery`: no client request is).
    pub fn only_internal(&self) -> bool {
        self.q.iter().all(|e| matches!(e, Entry::Internal(_)))
    }

    /// The router's probe of a statement's copy, if that answer is next: the statement
    /// and the client's name for it.
    pub fn probe_at_front(&self) -> Option<(&Arc<StatementDef>, &[u8])> {
        match self.q.front() {
            Some(Entry::Probe { stmt, client }) => Some((stmt, client)),
            _ => None,
        }
    }

    /// Whether the server is answering a parameter verification.
    pub fn verify_front(&self) -> bool {
        matches!(self.q.front(), Some(Entry::Internal(Internal::Verify(_))))
    }

    /// Whether the router's WAL position query is being answered.
    pub fn wal_position_front(&self) -> bool {
        matches!(self.q.front(), Some(Entry::Internal(Internal::WalPosition)))
    }

    /// Whether a `Parse` of `stmt` is on its way to the server.
    pub fn preparing(&self, stmt: u64) -> bool {
        self.pending.contains_key(&stmt)
    }

    /// Queue the answer to a request just sent. `false`: the server will ignore the request
    /// (it is skipping to a `Sync`, or it is in copy-in mode and this is a `Sync`).
    pub fn push(&mut self, e: Entry) -> bool {
        match e {
            Entry::Sync if self.copy_in => return false,
            Entry::Sync | Entry::Internal(Internal::Probed { .. }) => self.skipping = false,
            Entry::CopyEnd if self.copy_in => {
                self.copy_in = false;
                return false;
            }
            _ if self.skipping => return false,
            Entry::Parse {
                stmt: Some(ref def),
                ..
            } => *self.pending.entry(def.id).or_default() += 1,
            _ => {}
        }
        self.q.push_back(e);
        true
    }

    fn forget(&mut self, e: &Entry) {
        if let Entry::Parse {
            stmt: Some(def), ..
        } = e
        {
            if let Some(n) = self.pending.get_mut(&def.id) {
                *n -= 1;
                if *n == 0 {
                    self.pending.remove(&def.id);
                }
            }
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let e = self.q.pop_front()?;
        self.forget(&e);
        Some(e)
    }

    /// The router's own answer due now, if one is at the front (markers with no answer are
    /// dropped on the way).
    #[inline]
    pub fn take_synthetic(&mut self) -> Option<u8> {
        loop {
            match self.q.front() {
                Some(Entry::CopyEnd) => {
                    self.q.pop_front();
                }
                Some(Entry::Synthetic(tag)) => {
                    let tag = *tag;
                    self.q.pop_front();
                    return Some(tag);
                }
                _ => return None,
            }
        }
    }

    /// A message other than `ReadyForQuery`, `ErrorResponse` and the asynchronous ones.
    pub fn on_message(&mut self, tag: u8) -> Result<Seen, Desync> {
        let desync = |expected| Err(Desync { tag, expected });
        let seen = match self.q.front() {
            None | Some(Entry::Simple) | Some(Entry::Sync) => Seen::Forward,
            Some(Entry::Internal(_)) => Seen::Internal,
            Some(Entry::Parse { .. }) if tag == b'1' => match self.pop() {
                Some(Entry::Parse { stmt, swallow, .. }) => Seen::Prepared { stmt, swallow },
                _ => Seen::Forward,
            },
            Some(Entry::Parse { .. }) => return desync("Parse"),
            Some(Entry::Bind(_)) if tag == b'2' => {
                self.pop();
                Seen::Forward
            }
            Some(Entry::Bind(_)) => return desync("Bind"),
            Some(Entry::Describe(_)) => match tag {
                b't' => Seen::Forward,
                b'T' | b'n' => {
                    self.pop();
                    Seen::Forward
                }
                _ => return desync("Describe"),
            },
            Some(Entry::Execute) => {
                if matches!(tag, b'C' | b'I' | b's') {
                    self.pop();
                }
                Seen::Forward
            }
            Some(Entry::Close { swallow }) if tag == b'3' => {
                let swallow = *swallow;
                self.pop();
                if swallow {
                    Seen::Swallow
                } else {
                    Seen::Forward
                }
            }
            Some(Entry::Close { .. }) => return desync("Close"),
            Some(Entry::Check(_) | Entry::Probe { .. }) => match tag {
                b't' => Seen::Swallow,
                b'T' | b'n' => {
                    self.pop();
                    Seen::Swallow
                }
                _ => return desync("Describe"),
            },
            Some(Entry::Synthetic(_)) | Some(Entry::CopyEnd) | Some(Entry::Fail) => {
                return desync("nothing")
            }
        };
        if matches!(tag, b'G' | b'W') {
            self.on_copy_in();
        }
        Ok(seen)
    }

    /// The server entered copy-in mode: it will ignore the `Sync`s sent before the client's
    /// `CopyDone`/`CopyFail`.
    fn on_copy_in(&mut self) {
        let mut i = 1;
        while i < self.q.len() {
            match self.q.get(i) {
                Some(Entry::Sync) => {
                    self.q.remove(i);
                }
                Some(Entry::CopyEnd) => {
                    self.q.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// The global statement whose `Bind` or `Describe` the server is answering, if any: an
    /// error now may mean the server's copy of it went stale (see [`super::prepared`]).
    pub fn statement_at_front(&self) -> Option<&Arc<StatementDef>> {
        match self.q.front() {
            Some(Entry::Bind(stmt) | Entry::Describe(stmt)) => stmt.as_ref(),
            _ => None,
        }
    }

    /// The statement whose copy the router is checking ([`Entry::Check`]), if that answer is
    /// next.
    pub fn check_at_front(&self) -> Option<&Arc<StatementDef>> {
        match self.q.front() {
            Some(Entry::Check(def)) => Some(def),
            _ => None,
        }
    }

    /// Whether a check is still owed.
    pub fn checking(&self) -> bool {
        self.q.iter().any(|e| matches!(e, Entry::Check(_)))
    }

    /// Whether the error now due is the answer to the router's [`Entry::Fail`].
    pub fn fail_at_front(&self) -> bool {
        matches!(self.q.front(), Some(Entry::Fail))
    }

    /// An `ErrorResponse`. After an extended-protocol message the server skips to the next
    /// `Sync`: the answers it will not send are dropped, and the client names of `Parse`s
    /// that will not happen are returned, to forget; the flag says the error belongs to the
    /// router's own query.
    pub fn on_error(&mut self) -> (Vec<Box<[u8]>>, bool) {
        self.copy_in = false;
        let extended = match self.q.front() {
            None | Some(Entry::Simple) | Some(Entry::Sync) => false,
            Some(Entry::Internal(_)) => return (Vec::new(), true),
            Some(_) => true,
        };
        let mut forget = Vec::new();
        if extended {
            while let Some(e) = self.q.front() {
                if matches!(e, Entry::Sync) {
                    return (forget, false);
                }
                if let Some(Entry::Parse {
                    client: Some(name), ..
                }) = self.pop()
                {
                    forget.push(name);
                }
            }
            self.skipping = true;
        }
        (forget, false)
    }

    /// The server connection is gone: empty the queue. Returns the client names of `Parse`s
    /// that will never complete (to forget) and how many `ReadyForQuery` the client is still
    /// owed (one per `Query` or `Sync` of its own in flight).
    pub fn abandon(&mut self) -> (Vec<Box<[u8]>>, usize) {
        let mut forget = Vec::new();
        let mut owed = 0;
        while let Some(e) = self.pop() {
            match e {
                Entry::Parse {
                    client: Some(name), ..
                } => forget.push(name),
                Entry::Sync | Entry::Simple => owed += 1,
                _ => {}
            }
        }
        self.skipping = false;
        self.copy_in = false;
        (forget, owed)
    }

    /// A `ReadyForQuery`: the request it ends leaves the queue. `Some` if it was the router's
    /// own query.
    pub fn on_ready(&mut self) -> Result<Option<Internal>, Desync> {
        while let Some(e) = self.pop() {
            match e {
                Entry::Sync | Entry::Simple => return Ok(None),
                Entry::Internal(i) => return Ok(Some(i)),
                Entry::CopyEnd => {}
                _ => {
                    return Err(Desync {
                        tag: b'Z',
                        expected: "an extended-protocol message",
                    })
                }
            }
        }
        Err(Desync {
            tag: b'Z',
            expected: "nothing",
        })
    }
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
