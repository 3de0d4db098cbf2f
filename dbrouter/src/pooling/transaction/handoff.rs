//! [`Handoff`]: a transaction-pooled client's session as it moves to another process at a
//! binary upgrade, between two transactions.
//!
//! Everything the router keeps for the client between turns goes with it: the user, the
//! startup parameters that key its pool (user, database, …) and those it replays
//! (`application_name`, …), every tracked `SET` (its current values), the `ParameterStatus`
//! values it was told, each named prepared statement with its text and its `Parse`
//! parameter type section (count and OIDs: what it is prepared with on the new process's
//! server connections, on first use), its cancel key, and any bytes read from it and not yet
//! handled. The socket itself goes beside it, by `SCM_RIGHTS`. A state of another
//! [`VERSION`] is refused (the client is then closed, not guessed at).

use serde::{Deserialize, Serialize};

use super::nodes::TxNode;
use super::params::Params;
use super::state::ClientState;

/// The format of [`Handoff`].
pub const VERSION: u32 = 1;

/// One named prepared statement of the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    pub name: Vec<u8>,
    pub query: Vec<u8>,
    /// `Parse`'s parameter type section.
    pub types: Vec<u8>,
}

/// A session between transactions, as it moves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handoff {
    pub version: u32,
    pub cluster: String,
    pub user: String,
    /// The startup parameters its server connections are opened with (the pool key).
    pub server_params: Vec<(String, String)>,
    pub params: Params,
    pub startup: Params,
    pub reported: Vec<(Vec<u8>, Vec<u8>)>,
    pub statements: Vec<Statement>,
    pub cancel_pid: u32,
    pub cancel_secret: u32,
    /// Read from the client, not yet handled.
    pub pending: Vec<u8>,
}

impl Handoff {
    /// The state of `me` (see the module docs).
    pub(super) fn of(
        cluster: &str,
        user: &str,
        server_params: &[(&str, &str)],
        me: &ClientState,
        cancel: (u32, u32),
        pending: &[u8],
    ) -> Handoff {
        Handoff {
            version: VERSION,
            cluster: cluster.to_string(),
            user: user.to_string(),
            server_params: server_params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            params: me.params.clone(),
            startup: me.startup.clone(),
            reported: me
                .reported
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
            statements: me
                .statements
                .iter()
                .map(|(name, def)| Statement {
                    name: name.to_vec(),
                    query: def.query.to_vec(),
                    types: def.types.to_vec(),
                })
                .collect(),
            cancel_pid: cancel.0,
            cancel_secret: cancel.1,
            pending: pending.to_vec(),
        }
    }

    /// The client's state in this process; its statements take this node's global names.
    pub(super) fn client_state(&self, node: &TxNode) -> ClientState {
        let mut me = ClientState {
            params: self.params.clone(),
            startup: self.startup.clone(),
            reported: self
                .reported
                .iter()
                .map(|(k, v)| (&k[..], &v[..]))
                .collect(),
            ..ClientState::default()
        };
        for s in &self.statements {
            let def = node.statements.get(&s.query, &s.types);
            me.statements.insert(&s.name, def);
        }
        me
    }
}
