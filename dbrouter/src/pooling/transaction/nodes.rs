//! What transaction pooling keeps per node beside the node's pool, by cluster and node
//! address and across reloads like the pools: the global names of its clients' prepared
//! statements ([`StatementRegistry`]) and its counters ([`TxCounters`]); and [`Shared`], what a
//! session gets of the plane besides its [`crate::server::upstream::Upstream`]; and
//! [`DdlTurn`], a turn's hold on its node's registry while it runs DDL.

use std::sync::Arc;

use super::prepared::StatementRegistry;
use super::report::TxCounters;
use super::state::LastReported;
use crate::closing::Closing;
use crate::ha::Verdicts;
use crate::registry::ByNode;

/// Transaction pooling's state of one node.
#[derive(Debug, Default)]
pub struct TxNode {
    /// Global names of the prepared statements of transaction-pooled clients.
    pub statements: StatementRegistry,
    /// Transaction pooling counters.
    pub counters: TxCounters,
    /// The `ParameterStatus` values of its latest client login, shared by the next clients
    /// told the same.
    pub(super) reported: LastReported,
}

/// A turn running DDL, on `node`'s registry ([`StatementRegistry::ddl_started`]); dropped
/// when the turn ends, however it ends (its transaction over, its connection lost).
#[derive(Debug)]
pub struct DdlTurn(Arc<TxNode>);

impl DdlTurn {
    pub fn start(node: Arc<TxNode>) -> DdlTurn {
        node.statements.ddl_started();
        DdlTurn(node)
    }
}

impl Drop for DdlTurn {
    fn drop(&mut self) {
        self.0.statements.ddl_ended();
    }
}

/// Every node's [`TxNode`], by cluster and node address (created on first use).
pub type TxNodes = ByNode<TxNode>;

/// What a transaction-pooled session uses of the plane besides its upstream: the health
/// verdicts (a write turn waits for a failover; a lost server's message says whether it is
/// down; replicas are chosen by them), every node's [`TxNode`], and whether sessions close
/// at their next transaction boundary.
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    pub verdicts: &'a Verdicts,
    pub nodes: &'a TxNodes,
    pub closing: &'a Closing,
}
