//! Who may promote: the etcd failover lease (`failover.etcd`: taken, checked before the
//! promotion, the decision recorded under it, given back), and adopting a replica that
//! another Switchyard (or an operator) has promoted already, so that several Switchyards
//! watching one cluster never promote two nodes.

use switchyard_config::Address;

use super::lease::{self, Arbiter, Claim, Decision};
use super::probe::ReplicaReport;
use super::procedure::{Procedure, Request};

impl Procedure<'_> {
    /// With `failover.etcd`, take the cluster's failover lease before promoting (an
    /// automatic failover; an operator's promote or switchover takes it before anything
    /// else: [`Procedure::claim_for_operator`]). Without the lease, nothing is promoted. `Ok(Some(node))`: the lease was free, but the
    /// failure of this primary was decided already (by a Switchyard that has given the lease
    /// back since): `node` is the primary to adopt.
    pub(super) async fn claim(&mut self) -> Result<Option<Address>, String> {
        let Some(etcd) = &self.rt.config.failover.etcd else {
            return Ok(None);
        };
        if !matches!(self.req, Request::Failover { .. }) || self.lease.is_some() {
            return Ok(None);
        }
        let unreachable = |e: String| {
            let why = format!("etcd cannot be reached for the failover lease ({e}): not promoting");
            self.state.hold_back(why.clone());
            why
        };
        let arbiter = Arbiter::connect(etcd).await.map_err(unreachable)?;
        match arbiter.claim(&self.rt.name, &lease::identity()).await {
            Ok(Claim::Won(lease, Some(d))) if d.old_primary == self.rt.primary.to_string() => {
                let _ = arbiter.revoke(lease.id).await;
                switchyard_config::parse_address(&d.primary)
                    .map(Some)
                    .map_err(|why| format!("etcd's decision names {:?}: {why}", d.primary))
            }
            Ok(Claim::Won(lease, _)) => {
                self.lease = Some((arbiter, lease));
                Ok(None)
            }
            Ok(Claim::Lost { holder }) => Err(format!(
                "{holder} holds the failover lease of cluster {:?}: it promotes, this Switchyard follows",
                self.rt.name
            )),
            Err(e) => Err(unreachable(e)),
        }
    }

    /// An operator's promote or switchover, with `failover.etcd`: take the cluster's
    /// failover lease first, before a switchover drains anything, so that it runs once for
    /// the fleet and never beside a failover or another operation (the error names the
    /// holder); its decision is then recorded like a failover's, and every sidecar follows.
    pub(super) async fn claim_for_operator(&mut self) -> Result<(), String> {
        let Some(etcd) = &self.rt.config.failover.etcd else {
            return Ok(());
        };
        let (arbiter, lease) = lease::claim_for_operator(etcd, &self.rt.name)
            .await
            .map_err(|(_, why)| why)?;
        self.lease = Some((arbiter, lease));
        Ok(())
    }

    /// Before promoting: the lease, if one was taken, must still run on this process's
    /// clock (a holder that stalled past its TTL may have been replaced).
    pub(super) fn still_holder(&self) -> Result<(), String> {
        match &self.lease {
            Some((_, lease)) if !lease.valid() => Err(format!(
                "the failover lease of cluster {:?} ran out before the promotion: not promoting",
                self.rt.name
            )),
            _ => Ok(()),
        }
    }

    /// Record the decision in etcd (fenced by the lease: every sidecar watching the cluster
    /// follows it at once), if a lease was taken.
    pub(super) async fn record(&mut self, old: &Address, primary: &Address) {
        let Some((arbiter, lease)) = &self.lease else {
            return;
        };
        let decision = Decision {
            primary: primary.to_string(),
            old_primary: old.to_string(),
            by: lease::identity(),
            at_ms: lease::now_ms(),
            reason: self.attempt.reason.clone(),
            rejoined: None,
        };
        if let Err(e) = arbiter.record(&self.rt.name, lease, &decision).await {
            tracing::error!(cluster = %self.rt.name, error = %e, "recording the failover in etcd failed: the other sidecars follow on their own checks");
        }
    }

    /// Give the lease back, if one was taken.
    pub(super) async fn release(&mut self) {
        let Some((arbiter, lease)) = self.lease.take() else {
            return;
        };
        if let Err(e) = arbiter.revoke(lease.id).await {
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
        // A replica already streaming from another replica of the config was re-pointed by
        // the Switchyard promoting that one: follow it, even before its promotion is done
        // (its WAL may then look behind the follower's, and choosing by WAL would promote a
        // second node).
        let old = &self.rt.primary;
        let followed = reports.iter().find_map(|(_, r)| {
            let sender = r.as_ref().ok()?.sender.as_deref()?;
            let sender = switchyard_config::parse_address(sender).ok()?;
            let is_replica = self.rt.config.nodes.iter().any(|n| n.addr == sender);
            (is_replica && sender != *old).then_some(sender)
        });
        if let Some(leader) = followed {
            if promoted.iter().any(|p| **p == leader) {
                return Ok(Some(leader));
            }
            return Err(format!(
                "a replica already follows {leader}: another Switchyard is promoting it; waiting for it"
            ));
        }
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
