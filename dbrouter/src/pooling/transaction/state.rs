//! What the router keeps of one transaction-pooled client between its turns.

use std::collections::BTreeMap;

use super::params::Params;
use super::prepared::ClientStatements;

/// One client's session state, carried from one server connection to the next.
#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// The parameter values it wants.
    pub params: Params,
    /// Its replayable startup parameters (what `RESET` goes back to).
    pub startup: Params,
    /// The `ParameterStatus` values it was told, by name.
    pub reported: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Its named prepared statements.
    pub statements: ClientStatements,
}
