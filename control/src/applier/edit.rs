//! The runtime operations' way into the single writer: edit the running config's text under
//! the writer lock, then apply the result like any other change (validated, built, written
//! to the file, versioned, kept in the history, audited).
//!
//! Taking the text under the lock matters: an operation computed from a text read before
//! the lock could silently undo a change that landed in between.

use std::sync::Arc;

use switchyard_config::edit::EditError;
use switchyard_config::Snapshot;

use super::{Applier, ApplyError, ApplyOutcome, ApplyRequest, EditRequest};

impl Applier {
    /// Under the writer lock, run `edit` on the running snapshot (its `source` text and
    /// validated `config`) and apply the text it returns. An edit error is audited and
    /// returned as [`ApplyError::Edit`]; an edit that changes nothing that matters is
    /// [`ApplyOutcome::Unchanged`].
    pub async fn apply_edit<F>(&self, req: EditRequest, edit: F) -> Result<ApplyOutcome, ApplyError>
    where
        F: Fn(&Snapshot) -> Result<String, EditError>,
    {
        let _writer = self.writer.lock().await;
        // A lost compare-and-swap (etcd) reruns the edit on the newer document.
        let mut result = self.edit_locked(&req, &edit).await;
        for _ in 0..8 {
            if !matches!(result, Err(ApplyError::Conflict)) {
                break;
            }
            result = self.edit_locked(&req, &edit).await;
        }
        result
    }

    async fn edit_locked<F>(&self, req: &EditRequest, edit: &F) -> Result<ApplyOutcome, ApplyError>
    where
        F: Fn(&Snapshot) -> Result<String, EditError>,
    {
        let refuse = |err: ApplyError| {
            let version = self.current().snapshot.version;
            tracing::warn!(action = req.action, actor = %req.actor.name, "change refused: {err}");
            self.audit_with(
                &req.actor,
                req.action,
                version,
                None,
                Err(&err),
                req.detail.clone(),
            );
            Err(err)
        };
        let head = match self.sync_locked().await {
            Ok(h) => h,
            Err(e) => return refuse(e),
        };
        if let Some(e) = self.behind(head.as_ref()) {
            return refuse(e);
        }
        let before = self.current();
        let version = before.snapshot.version;
        if let Some(expected) = req.expect_version.filter(|e| *e != version) {
            return refuse(ApplyError::Stale {
                current: version,
                expected,
            });
        }
        let text = match edit(&before.snapshot) {
            Ok(text) => text,
            Err(e) => return refuse(ApplyError::Edit(e)),
        };
        let apply = ApplyRequest {
            text: Arc::from(text),
            origin: req.origin,
            actor: req.actor.clone(),
            action: req.action,
            expect_version: None,
            dry_run: false,
        };
        self.apply_synced(apply, req.detail.clone(), head.as_ref())
            .await
    }
}

#[cfg(test)]
mod tests {
    use switchyard_config::edit::{set_pool_weights, EditErrorKind};

    use super::*;
    use crate::applier::testing::{audit_lines, start, BLUE_GREEN};
    use crate::history::{Actor, Origin};

    fn request(action: &'static str) -> EditRequest {
        EditRequest {
            action,
            actor: Actor::system("ops"),
            origin: Origin::Api,
            expect_version: None,
            detail: Some(serde_json::json!({ "note": "test" })),
        }
    }

    fn weights(blue: u32, green: u32) -> Vec<(String, u32)> {
        vec![("blue".into(), blue), ("green".into(), green)]
    }

    #[tokio::test]
    async fn an_edit_is_applied_persisted_versioned_and_audited() {
        let (dir, applier) = start(BLUE_GREEN);
        let outcome = applier
            .apply_edit(request("upstream.weights"), |s| {
                set_pool_weights(&s.source, "api", &weights(90, 10))
            })
            .await;
        let Ok(ApplyOutcome::Applied { before, after, .. }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!((before, after.snapshot.version), (1, 2));
        assert_eq!(after.origin, Origin::Api);
        let pools = &after.snapshot.config.http.upstreams["api"].pools;
        assert_eq!((pools["blue"].weight, pools["green"].weight), (90, 10));
        let on_disk = std::fs::read_to_string(applier.config_path()).unwrap_or_default();
        assert_eq!(on_disk, *after.snapshot.source);
        assert!(on_disk.contains("weight = 90 # live"), "{on_disk}");
        let line = audit_lines(&dir).pop().unwrap_or_default();
        assert_eq!(line["action"], "upstream.weights");
        assert_eq!(line["result"], "applied");
        assert_eq!(line["version_after"], 2);
        assert_eq!(line["detail"]["note"], "test");
    }

    #[tokio::test]
    async fn edit_errors_and_stale_versions_are_refused_and_audited() {
        let (dir, applier) = start(BLUE_GREEN);
        let outcome = applier
            .apply_edit(request("upstream.weights"), |s| {
                set_pool_weights(&s.source, "nope", &weights(1, 1))
            })
            .await;
        match &outcome {
            Err(ApplyError::Edit(e)) => assert_eq!(e.kind(), EditErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        let line = audit_lines(&dir).pop().unwrap_or_default();
        assert_eq!(line["result"], "rejected");
        assert_eq!(line["error"], "no upstream named \"nope\"");

        let mut stale = request("upstream.weights");
        stale.expect_version = Some(7);
        let outcome = applier
            .apply_edit(stale, |s| {
                set_pool_weights(&s.source, "api", &weights(1, 1))
            })
            .await;
        assert!(matches!(
            outcome,
            Err(ApplyError::Stale {
                current: 1,
                expected: 7
            })
        ));

        // An edit the validator refuses (weights summing to 0) changes nothing either.
        let outcome = applier
            .apply_edit(request("upstream.weights"), |s| {
                set_pool_weights(&s.source, "api", &weights(0, 0))
            })
            .await;
        assert!(
            matches!(outcome, Err(ApplyError::Invalid(_))),
            "{outcome:?}"
        );
        assert_eq!(applier.current().snapshot.version, 1);
        assert_eq!(audit_lines(&dir).len(), 4, "start + three refusals");
    }
}
