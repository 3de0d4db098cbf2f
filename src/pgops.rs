//! Wiring for Postgres high availability: the router's role changes go to the control
//! plane's single writer ([`ConfigWriter`]), and the control API's cluster operations go to
//! the router ([`ClusterOpsAdapter`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use switchyard_config::edit::postgres::{set_node_roles, NodeRoles};
use switchyard_control::{
    Actor, Applier, ApplyError, ApplyOutcome, ClusterOp, ClusterOps, EditRequest, OpError, Origin,
};
use switchyard_dbrouter::failover::{self, FailoverSink, Request, RoleChange};
use switchyard_dbrouter::DbPlane;

/// Records role changes as new config versions (persisted, in the history, audited).
pub struct ConfigWriter(pub Arc<Applier>);

impl FailoverSink for ConfigWriter {
    fn apply(
        &self,
        change: RoleChange,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + 'static>> {
        let applier = self.0.clone();
        Box::pin(async move {
            let origin = if change.actor == "failover" {
                Origin::Failover
            } else {
                Origin::Api
            };
            let req = EditRequest {
                action: change.action,
                actor: Actor::system(&change.actor),
                origin,
                expect_version: None,
                detail: Some(change.detail.clone()),
            };
            let roles = NodeRoles {
                primary: change.primary.as_deref(),
                fence: &change.fence,
                demote: &change.demote,
                unfence: &change.unfence,
            };
            let outcome = applier
                .apply_edit(req, |s| set_node_roles(&s.source, &change.cluster, &roles))
                .await;
            match outcome {
                Ok(ApplyOutcome::Applied { after, .. }) => Ok(after.snapshot.version),
                Ok(ApplyOutcome::Unchanged { current }) => Ok(current.snapshot.version),
                Ok(ApplyOutcome::DryRun { current, .. }) => Ok(current),
                Err(e) => Err(describe(&e)),
            }
        })
    }

    fn shared(&self) -> bool {
        self.0.store().etcd().is_some()
    }

    fn resync(&self) {
        let applier = self.0.clone();
        tokio::spawn(async move { applier.resync_store().await });
    }
}

fn describe(e: &ApplyError) -> String {
    e.to_string()
}

/// The control API's promote, switchover and rejoin, run by the router.
pub struct ClusterOpsAdapter(pub Arc<DbPlane>);

impl ClusterOps for ClusterOpsAdapter {
    fn run(
        &self,
        cluster: &str,
        op: ClusterOp,
        actor: &str,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, OpError>> + Send + 'static>> {
        let plane = self.0.clone();
        let (cluster, actor) = (cluster.to_string(), actor.to_string());
        Box::pin(async move {
            let err = |status: u16, message: String| OpError {
                status,
                message,
                detail: None,
            };
            let req = match op {
                ClusterOp::Rejoin { node } => {
                    return match failover::rejoin(&plane, &cluster, &node, &actor).await {
                        Ok(version) => Ok(serde_json::json!({
                            "result": "rejoined", "node": node, "version": version,
                        })),
                        Err(r) => Err(err(r.status, r.message)),
                    };
                }
                ClusterOp::Promote { node } => Request::Promote { node, actor },
                ClusterOp::Switchover { to } => Request::Switchover { to, actor },
            };
            let known = plane
                .runtime()
                .is_some_and(|rt| rt.clusters.contains_key(&cluster));
            if !known {
                return Err(err(404, format!("no cluster named {cluster:?}")));
            }
            let run = failover::start(plane.clone(), &cluster, req).map_err(|e| err(409, e))?;
            match run.await {
                Ok(attempt) => Ok(serde_json::json!({ "result": "ok", "attempt": attempt })),
                Err(attempt) => Err(OpError {
                    // The fleet's failover lease could not be taken: etcd is down.
                    status: if attempt.outcome.starts_with("etcd cannot be reached") {
                        503
                    } else {
                        409
                    },
                    message: attempt.outcome.clone(),
                    detail: serde_json::to_value(&attempt).ok(),
                }),
            }
        })
    }
}
