//! Role changes: what a failover, a promotion, a switchover or a rejoin changes in a
//! cluster's config ([`RoleChange`], [`change_roles`]), and where the change is recorded (the
//! [`FailoverSink`]: the control plane's single writer). How a change takes effect in the
//! router at once is [`super::apply`].

use std::future::Future;
use std::pin::Pin;

use switchyard_config::NodeRole;

/// A change of node roles for the config: made by a failover or an operator's promote,
/// switchover or rejoin, and applied by the control plane as a new config version.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleChange {
    pub cluster: String,
    /// The node to make the primary (`None`: leave the primary as it is).
    pub primary: Option<String>,
    /// Nodes to mark `role = "replica"` and `fenced = reason`.
    pub fence: Vec<(String, String)>,
    /// Nodes to mark `role = "replica"` without fencing (a switchover's old primary).
    pub demote: Vec<String>,
    /// Nodes whose `fenced` mark is removed (rejoined as replicas).
    pub unfence: Vec<String>,
    /// Audit action (`postgres.failover`, `postgres.switchover`, …).
    pub action: &'static str,
    /// Who asked (`failover` for the router itself, or a token name).
    pub actor: String,
    /// What the audit line says about it.
    pub detail: serde_json::Value,
}

/// Apply `change` to the nodes of `cluster` (the config model; the config text is edited
/// by the control plane the same way).
pub fn change_roles(cluster: &mut switchyard_config::Cluster, change: &RoleChange) {
    let is = |list: &[String], addr: &str| list.iter().any(|a| a == addr);
    for n in &mut cluster.nodes {
        let addr = n.addr.to_string();
        if change.primary.as_deref() == Some(addr.as_str()) {
            n.role = NodeRole::Primary;
            n.fenced = None;
        } else if let Some((_, why)) = change.fence.iter().find(|(a, _)| *a == addr) {
            n.role = NodeRole::Replica;
            n.fenced = Some(why.clone());
        } else if is(&change.demote, &addr)
            || (change.primary.is_some() && n.role == NodeRole::Primary)
        {
            n.role = NodeRole::Replica;
        }
        if is(&change.unfence, &addr) {
            n.fenced = None;
        }
    }
}

/// Where role changes go: the control plane's writer. Returns the new config version.
pub trait FailoverSink: Send + Sync + 'static {
    fn apply(
        &self,
        change: RoleChange,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + 'static>>;

    /// Whether the config is one document shared by the fleet (`[store] kind = "etcd"`):
    /// the deciding Switchyard's change reaches every other one through the store, so a
    /// Switchyard that follows a decision records nothing itself (one change, audited once).
    fn shared(&self) -> bool {
        false
    }

    /// Apply the shared document's newest version again, even one refused before (a fence
    /// lifted by another Switchyard's rejoin made it acceptable here). No-op without a
    /// shared store.
    fn resync(&self) {}
}
