//! Who may promote: the etcd failover lease (`failover.etcd`), and adopting a replica that
//! another Switchyard (or an operator) has promoted already, so that several Switchyards
//! watching one cluster never promote two nodes.

use switchyard_config::Address;

use super::lease::{self, Arbiter, Claim};
use super::probe::ReplicaReport;
use super::procedure::{Procedure, Request};

impl Procedure<'_> {
    /// With `failover.etcd`, take the cluster's failover lease before promoting (automatic
    /// failovers only: an operator's promote or switchover is the operator's decision).
    /// Without the lease, nothing is promoted.
    pub(super) async fn claim(&mut self) -> Result<(), String> {
        let Some(etcd) = &self.rt.config.failover.etcd else {
            return Ok(());
        };
        if !matches!(self.req, Request::Failover { .. }) {
            return Ok(());
        }
        let arbiter = Arbiter::new(etcd);
        match arbiter.claim(&self.rt.name, &lease::identity()).await {
            Ok(Claim::Won { lease }) => {
                self.lease = Some((arbiter, lease));
                Ok(())
            }
            Ok(Claim::Lost { holder }) => Err(format!(
                "{holder} holds the failover lease of cluster {:?}: it promotes, this Switchyard follows",
                self.rt.name
            )),
            Err(e) => {
                let why = format!("etcd cannot be reached for the failover lease ({e}): not promoting");
                self.state.hold_back(why.clone());
                Err(why)
            }
        }
    }

    /// Record the decision in etcd and give the lease back, if one was taken.
    pub(super) async fn release(&mut self, primary: &Address) {
        let Some((arbiter, lease)) = self.lease.take() else {
            return;
        };
        if let Err(e) = arbiter.record(&self.rt.name, &primary.to_string()).await {
            tracing::warn!(cluster = %self.rt.name, error = %e, "recording the failover in etcd failed");
        }
        if let Err(e) = arbiter.revoke(&lease).await {
            tracing::warn!(cluster = %self.rt.name, error = %e, "giving the failover lease back failed (it expires by itself)");
        }
    }

    /// For an automatic failover: a configured replica that has left recovery already (one
    /// is adopted as the new primary; two mean two promotions happened, and nothing is done
    /// before an operator decides).
    pub(super) fn adopt(
        &self,
        reports: &[(Address, Result<ReplicaReport, String>)],
    ) -> Result<Option<Address>, String> {
        if !matches!(self.req, Request::Failover { .. }) {
            return Ok(None);
        }
        let promoted: Vec<&Address> = reports
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|r| !r.in_recovery))
            .map(|(a, _)| a)
            .collect();
        match promoted.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => {
                let list: Vec<String> = many.iter().map(|a| a.to_string()).collect();
                let why = format!(
                    "several replicas left recovery ({}): two primaries exist; promote one explicitly with POST /v1/clusters/{}/promote after fencing the other",
                    list.join(", "),
                    self.rt.name
                );
                self.state.hold_back(why.clone());
                Err(why)
            }
        }
    }
}
