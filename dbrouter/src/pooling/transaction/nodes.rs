//! What transaction pooling keeps per node beside the node's pool, by cluster and node
//! address and across reloads like the pools: the global names of its clients' prepared
//! statements ([`StatementRegistry`]) and its counters ([`TxCounters`]); and [`Shared`], what a
//! session gets of the plane besides its [`crate::server::upstream::Upstream`].

use super::prepared::StatementRegistry;
use super::report::TxCounters;
use crate::ha::Verdicts;
use crate::registry::ByNode;

/// Transaction pooling's state of one node.
#[derive(Debug, Default)]
pub struct TxNode {
    /// Global names of the prepared statements of transaction-pooled clients.
    pub statements: StatementRegistry,
    /// Transaction pooling counters.
    pub counters: TxCounters,
}

/// Every node's [`TxNode`], by cluster and node address (created on first use).
pub type TxNodes = ByNode<TxNode>;

/// What a transaction-pooled session uses of the plane besides its upstream: the health
/// verdicts (a write turn waits for a failover; a lost server's message says whether it is
/// down; replicas are chosen by them) and every node's [`TxNode`].
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    pub verdicts: &'a Verdicts,
    pub nodes: &'a TxNodes,
}
