//! The failover, manual promotion and planned switchover procedures, step by step.
//!
//! Each claims the cluster first ([`ClusterFailover::begin`], synchronously in [`start`], so
//! two can never run at once), then: ask the replicas ([`probe::report`]); for an automatic
//! failover, stop if one still streams from the primary (the second opinion); choose the
//! most advanced eligible replica; promote it; re-point the others; fence the old primary;
//! route writes to the new one at once ([`super::apply_roles`]) and record the
//! change in the config through the [`super::FailoverSink`].

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use switchyard_config::{Address, NodeRole};
use tokio::task::JoinSet;

use super::apply::apply_roles;
use super::lease::{Arbiter, Lease};
use super::probe::{self, NodeLogin, ReplicaReport};
use super::roles::RoleChange;
use super::state::{Attempt, ClusterFailover, Phase};
use crate::ha::handles::Ha;
use crate::runtime::ClusterRuntime;

/// How long one probe of a node may take during a failover, at least.
const PROBE_FLOOR: Duration = Duration::from_millis(500);

/// Longest a promotion may take.
const PROMOTE_LIMIT: Duration = Duration::from_secs(10);

/// What to do.
#[derive(Debug, Clone)]
pub enum Request {
    /// The primary failed (the monitor's verdict): `reason` says how.
    Failover {
        reason: String,
        failing_since: Option<SystemTime>,
    },
    /// The operator promotes `node`; the old primary is fenced.
    Promote { node: String, actor: String },
    /// A planned switchover to `to`: drain, catch up, promote, fence the old primary.
    Switchover { to: String, actor: String },
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::Failover { .. } => "failover",
            Request::Promote { .. } => "promote",
            Request::Switchover { .. } => "switchover",
        }
    }

    fn actor(&self) -> String {
        match self {
            Request::Failover { .. } => "failover".into(),
            Request::Promote { actor, .. } | Request::Switchover { actor, .. } => actor.clone(),
        }
    }
}

/// How an attempt ended: the record kept in the history.
pub type Outcome = Result<Attempt, Attempt>;

/// Claim `cluster` and return the procedure to run. `Err` when the cluster is unknown or
/// an attempt already runs.
pub fn start(
    ha: Ha,
    cluster: &str,
    req: Request,
) -> Result<impl Future<Output = Outcome> + Send + 'static, String> {
    let rt = ha
        .live
        .cluster(cluster)
        .ok_or_else(|| format!("no cluster named {cluster:?}"))?;
    let state = ha.failovers.cluster(cluster);
    let first = match req {
        Request::Switchover { .. } => Phase::Draining,
        _ => Phase::Confirming,
    };
    if !state.begin(first, &rt.primary.to_string()) {
        return Err(format!(
            "a failover or switchover of cluster {cluster:?} is already under way"
        ));
    }
    state.clear_hold_back();
    Ok(async move {
        let mut attempt = Attempt {
            kind: req.kind(),
            actor: req.actor(),
            started: SystemTime::now(),
            primary_failing_since: match &req {
                Request::Failover { failing_since, .. } => *failing_since,
                _ => None,
            },
            old_primary: rt.primary.to_string(),
            new_primary: None,
            reason: match &req {
                Request::Failover { reason, .. } => reason.clone(),
                Request::Promote { node, .. } => format!("operator promoted {node}"),
                Request::Switchover { to, .. } => format!("planned switchover to {to}"),
            },
            detection_ms: None,
            promotion_ms: None,
            duration_ms: 0,
            outcome: String::new(),
            lsns: Vec::new(),
            repointed: Vec::new(),
            not_repointed: Vec::new(),
            config_version: None,
        };
        attempt.detection_ms = attempt.primary_failing_since.and_then(|since| {
            attempt
                .started
                .duration_since(since)
                .ok()
                .map(|d| d.as_millis() as u64)
        });
        let began = Instant::now();
        let mut procedure = Procedure {
            lease: None,
            ha: &ha,
            rt: &rt,
            state: &state,
            req: &req,
            attempt: &mut attempt,
        };
        let result = procedure.run().await;
        // A lease still held means the attempt stopped half way: give it back at once.
        procedure.release().await;
        attempt.duration_ms = began.elapsed().as_millis() as u64;
        let outcome = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => e,
        };
        attempt.outcome = outcome.clone();
        let ok = outcome == "ok";
        // An automatic failover that stopped before choosing a node is a decision not to
        // fail over (shown as `held_back`), not an attempt for the history.
        let decided = ok || attempt.new_primary.is_some() || attempt.kind != "failover";
        state.note_result(ok);
        let (cluster, kind) = (rt.name.clone(), attempt.kind);
        let result = match (ok, decided) {
            (true, _) => "ok",
            (false, true) => "failed",
            (false, false) => "held_back",
        };
        metrics::counter!("switchyard_postgres_failovers_total", "cluster" => cluster.clone(), "kind" => kind, "outcome" => result).increment(1);
        if ok {
            metrics::histogram!("switchyard_postgres_failover_duration_seconds", "cluster" => cluster, "kind" => kind)
                .record(began.elapsed().as_secs_f64());
            tracing::warn!(cluster = %rt.name, kind = attempt.kind, old = %attempt.old_primary,
                new = attempt.new_primary.as_deref().unwrap_or(""), duration_ms = attempt.duration_ms,
                "postgres primary changed");
        } else if decided {
            tracing::error!(cluster = %rt.name, kind = attempt.kind, reason = %outcome, "postgres failover did not complete");
        } else {
            tracing::debug!(cluster = %rt.name, reason = %outcome, "postgres failover not started");
            state.hold_back(outcome.clone());
        }
        state.end(decided.then(|| attempt.clone()));
        if ok {
            Ok(attempt)
        } else {
            Err(attempt)
        }
    })
}

pub(super) struct Procedure<'a> {
    /// The etcd failover lease, while held.
    pub(super) lease: Option<(Arbiter, Lease)>,
    pub(super) ha: &'a Ha,
    pub(super) rt: &'a ClusterRuntime,
    pub(super) state: &'a ClusterFailover,
    pub(super) req: &'a Request,
    pub(super) attempt: &'a mut Attempt,
}

impl Procedure<'_> {
    pub(super) fn limit(&self) -> Duration {
        self.rt.config.failover.check_timeout.max(PROBE_FLOOR)
    }

    pub(super) fn login(&self, addr: &Address) -> Result<NodeLogin, String> {
        NodeLogin::new(self.rt, addr)
            .ok_or_else(|| "the cluster has no user to log in to its nodes with".to_string())
    }

    async fn run(&mut self) -> Result<(), String> {
        let old = self.rt.primary.clone();
        // An operator's request takes the fleet's failover lease once the target is known
        // to be valid, before a switchover drains anything.
        let target = match self.req {
            Request::Promote { node, .. } => {
                let node = self.node(node)?;
                self.claim_for_operator().await?;
                Some(node)
            }
            Request::Switchover { to, .. } => {
                let to = self.node(to)?;
                self.claim_for_operator().await?;
                self.drain(&old, &to).await?;
                self.state.set_phase(Phase::Confirming);
                Some(to)
            }
            Request::Failover { .. } => None,
        };
        let reports = self.reports().await;
        if let Request::Failover { .. } = self.req {
            self.second_opinion(&old, &reports)?;
        }
        let adopted = match self.adopt(&reports)? {
            Some(promoted) => Some(promoted),
            None => self.claim().await?,
        };
        let chosen = match adopted {
            Some(promoted) => {
                // Another Switchyard (a sidecar beside another application instance) has
                // promoted it already: follow, do not promote a second one.
                self.attempt.reason.push_str(&format!(
                    "; {promoted} was already promoted (by another Switchyard or an operator): adopted"
                ));
                promoted
            }
            None => {
                let chosen = self.choose(&reports, target.as_ref())?;
                self.attempt.new_primary = Some(chosen.to_string());
                self.state.set_phase(Phase::Promoting);
                self.still_holder()?;
                let t = Instant::now();
                probe::promote(&self.login(&chosen)?, PROMOTE_LIMIT)
                    .await
                    .map_err(|e| format!("promoting {chosen} failed: {e}"))?;
                self.attempt.promotion_ms = Some(t.elapsed().as_millis() as u64);
                chosen
            }
        };
        self.attempt.new_primary = Some(chosen.to_string());
        self.state.set_phase(Phase::Reconfiguring);
        let reason = format!(
            "{} at {}: {}",
            self.attempt.kind,
            humantime::format_rfc3339_seconds(SystemTime::now()),
            self.attempt.reason
        );
        self.ha.failovers.fence(&old.to_string(), &reason);
        let change = RoleChange {
            cluster: self.rt.name.clone(),
            primary: Some(chosen.to_string()),
            fence: vec![(old.to_string(), reason)],
            demote: Vec::new(),
            unfence: Vec::new(),
            action: match self.req {
                Request::Failover { .. } => "postgres.failover",
                Request::Promote { .. } => "postgres.promote",
                Request::Switchover { .. } => "postgres.switchover",
            },
            actor: self.attempt.actor.clone(),
            detail: serde_json::json!({
                "cluster": self.rt.name,
                "old_primary": old.to_string(),
                "new_primary": chosen.to_string(),
                "reason": self.attempt.reason,
                "lsns": self.attempt.lsns,
            }),
        };
        // Writes go to the new primary now, whatever the config's writer takes to record it.
        apply_roles(&self.ha.live, &self.ha.failovers, &change)?;
        self.ha.pools.get(&self.rt.name, &old.to_string()).clear();
        // Then every other sidecar of the cluster: they watch the decision.
        self.record(&old, &chosen).await;
        self.release().await;
        self.repoint(&chosen, &reports).await;
        if let Some(sink) = self.ha.failovers.sink() {
            match sink.apply(change).await {
                Ok(v) => self.attempt.config_version = Some(v),
                Err(e) => {
                    tracing::error!(cluster = %self.rt.name, error = %e, "the failover could not be recorded in the config; the router keeps routing to the new primary");
                    return Err(format!(
                        "promoted {chosen}, but recording it in the config failed: {e}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configured replica `node` (as written, compared after normalization).
    fn node(&self, node: &str) -> Result<Address, String> {
        let wanted = switchyard_config::parse_address(node)
            .map_err(|why| format!("invalid node address {node:?}: {why}"))?;
        let found = self
            .rt
            .config
            .nodes
            .iter()
            .find(|n| n.addr == wanted)
            .ok_or_else(|| format!("cluster {:?} has no node {wanted}", self.rt.name))?;
        if found.role != NodeRole::Replica {
            return Err(format!("{wanted} is already the primary"));
        }
        if let Some(why) = &found.fenced {
            return Err(format!("{wanted} is fenced ({why}): rejoin it first"));
        }
        Ok(wanted)
    }

    /// Every unfenced replica's report, asked concurrently.
    async fn reports(&self) -> Vec<(Address, Result<ReplicaReport, String>)> {
        let mut set = JoinSet::new();
        let limit = self.limit();
        for n in &self.rt.config.nodes {
            if n.role != NodeRole::Replica || n.fenced.is_some() {
                continue;
            }
            if let Some(login) = NodeLogin::new(self.rt, &n.addr) {
                let addr = n.addr.clone();
                set.spawn(async move { (addr, probe::report(&login, limit).await) });
            }
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out
    }

    /// Refuse when the primary came back or a replica still streams from it.
    fn second_opinion(
        &self,
        old: &Address,
        reports: &[(Address, Result<ReplicaReport, String>)],
    ) -> Result<(), String> {
        if self
            .ha
            .monitor
            .view(&old.to_string())
            .is_some_and(|v| !v.down)
        {
            return Err(format!("the primary {old} answers again: no failover"));
        }
        // A replica streaming from another node of the cluster (the new primary another
        // Switchyard promoted, or a cascading replica) says nothing about the old primary.
        let from_other_node = |r: &ReplicaReport| {
            r.sender
                .as_deref()
                .and_then(|s| switchyard_config::parse_address(s).ok())
                .is_some_and(|s| {
                    self.rt
                        .config
                        .nodes
                        .iter()
                        .any(|n| n.addr == s && n.addr != *old)
                })
        };
        if let Some((addr, _)) = reports
            .iter()
            .find(|(_, r)| r.as_ref().is_ok_and(|r| r.streaming && !from_other_node(r)))
        {
            let why = format!(
                "the primary {old} is unreachable from Switchyard, but replica {addr} still streams from it: not promoting"
            );
            self.state.hold_back(why.clone());
            return Err(why);
        }
        Ok(())
    }

    /// The replica to promote: `target` if given (it must be able to), else the most
    /// advanced eligible one, ties by priority.
    fn choose(
        &mut self,
        reports: &[(Address, Result<ReplicaReport, String>)],
        target: Option<&Address>,
    ) -> Result<Address, String> {
        let sync = self.state.sync();
        let mut best: Option<(&Address, &ReplicaReport, u32)> = None;
        let mut refused = Vec::new();
        for (addr, report) in reports {
            let r = match report {
                Ok(r) => r,
                Err(e) => {
                    refused.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            self.attempt
                .lsns
                .push((addr.to_string(), r.position().to_string()));
            if !r.in_recovery {
                refused.push(format!("{addr}: not in recovery"));
                continue;
            }
            if target.is_some_and(|t| t != addr) {
                continue;
            }
            if let Some(s) = sync.as_ref().filter(|s| s.synchronous) {
                if !s.standbys.contains(&r.standby_name) {
                    refused.push(format!(
                        "{addr}: was not a synchronous standby ({})",
                        r.standby_name
                    ));
                    continue;
                }
            }
            let priority = self
                .rt
                .config
                .nodes
                .iter()
                .find(|n| n.addr == *addr)
                .map_or(0, |n| n.priority);
            // Equal WAL and priority: the lowest address, so that every Switchyard watching
            // this cluster (one beside each application instance) picks the same node.
            let key = (r.position(), priority, std::cmp::Reverse(addr.to_string()));
            let better = best
                .is_none_or(|(a, b, p)| key > (b.position(), p, std::cmp::Reverse(a.to_string())));
            if better {
                best = Some((addr, r, priority));
            }
        }
        best.map(|(a, _, _)| a.clone()).ok_or_else(|| {
            let why = format!("no replica can be promoted ({})", refused.join("; "));
            self.state.hold_back(why.clone());
            why
        })
    }

    /// Point every other reachable replica at the new primary.
    async fn repoint(
        &mut self,
        primary: &Address,
        reports: &[(Address, Result<ReplicaReport, String>)],
    ) {
        let mut set = JoinSet::new();
        for (addr, _) in reports.iter().filter(|(a, _)| a != primary) {
            let Ok(login) = self.login(addr) else {
                continue;
            };
            let (addr, primary, limit) = (addr.clone(), primary.clone(), self.limit());
            set.spawn(async move { (addr, probe::repoint(&login, &primary, limit).await) });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok((addr, Ok(()))) => self.attempt.repointed.push(addr.to_string()),
                Ok((addr, Err(e))) => {
                    tracing::warn!(node = %addr, error = %e, "could not re-point a replica at the new primary");
                    self.attempt.not_repointed.push((addr.to_string(), e));
                }
                Err(_) => {}
            }
        }
    }
}
