//! [`Services`]: what the client side receives from the plane, and nothing more: the live
//! runtime (its cluster and users), the counters it reports to, admission, the cancel keys,
//! the SCRAM key cache, and what it hands on to the pooling modes (the pools, the health
//! verdicts, transaction pooling's per-node state).

use std::sync::Arc;

use super::admission::Admission;
use super::auth::ScramKeyCache;
use crate::cancel::CancelRegistry;
use crate::closing::Closing;
use crate::ha::Verdicts;
use crate::pooling::transaction::{Shared, TxNodes};
use crate::runtime::Live;
use crate::server::pool::Pools;
use crate::stats::Stats;

/// The handles a client session works with. Built once by the plane and shared by every
/// session of every listener.
#[derive(Debug, Clone)]
pub struct Services {
    pub live: Live,
    pub stats: Arc<Stats>,
    pub admission: Arc<Admission>,
    pub cancel: CancelRegistry,
    pub scram: Arc<ScramKeyCache>,
    pub pools: Arc<Pools>,
    pub verdicts: Verdicts,
    pub tx_nodes: Arc<TxNodes>,
    /// Whether sessions close at their next transaction boundary (a drain's end).
    pub closing: Closing,
}

impl Services {
    /// What transaction pooling gets of them.
    pub fn shared(&self) -> Shared<'_> {
        Shared {
            verdicts: &self.verdicts,
            nodes: &self.tx_nodes,
            closing: &self.closing,
        }
    }
}
