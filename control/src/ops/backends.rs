//! `POST /v1/upstreams/{name}/backends/{addr}/drain` and `…/enable`: take a backend out of
//! rotation (in-flight requests finish) or put it back, as one new config version.

use switchyard_config::edit;
use switchyard_config::BackendState;

use crate::applier::{Applier, ApplyError, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};

/// Set the state of the backend `addr` of `upstream`, whichever pool lists it. Audited as
/// `upstream.backend.drain` or `upstream.backend.enable`.
pub async fn set_backend_state(
    applier: &Applier,
    actor: Actor,
    upstream: &str,
    addr: &str,
    state: BackendState,
) -> Result<ApplyOutcome, ApplyError> {
    let action = match state {
        BackendState::Drain => "upstream.backend.drain",
        BackendState::Enabled => "upstream.backend.enable",
    };
    let req = EditRequest {
        action,
        actor,
        origin: Origin::Api,
        expect_version: None,
        detail: Some(serde_json::json!({ "upstream": upstream, "backend": addr })),
    };
    applier
        .apply_edit(req, |s| {
            edit::set_backend_state(&s.source, upstream, addr, state)
        })
        .await
}

#[cfg(test)]
mod tests {
    use switchyard_config::edit::EditErrorKind;

    use super::*;
    use crate::applier::testing::{audit_lines, start, BLUE_GREEN};

    fn state_of(applier: &Applier, addr: &str) -> Option<BackendState> {
        let current = applier.current();
        let found = current.snapshot.config.http.upstreams["api"]
            .pools
            .values()
            .flat_map(|p| p.backends.iter())
            .find(|b| b.addr.to_string() == addr)
            .map(|b| b.state);
        found
    }

    #[tokio::test]
    async fn drain_then_enable_round_trips_the_file() {
        let (dir, applier) = start(BLUE_GREEN);
        let addr = "127.0.0.1:9102";
        let drained = set_backend_state(
            &applier,
            Actor::system("ops"),
            "api",
            addr,
            BackendState::Drain,
        )
        .await;
        assert!(
            matches!(drained, Ok(ApplyOutcome::Applied { .. })),
            "{drained:?}"
        );
        assert_eq!(state_of(&applier, addr), Some(BackendState::Drain));
        let line = audit_lines(&dir).pop().unwrap_or_default();
        assert_eq!(line["action"], "upstream.backend.drain");
        assert_eq!(line["detail"]["backend"], addr);

        let enabled = set_backend_state(
            &applier,
            Actor::system("ops"),
            "api",
            addr,
            BackendState::Enabled,
        )
        .await;
        assert!(
            matches!(enabled, Ok(ApplyOutcome::Applied { .. })),
            "{enabled:?}"
        );
        assert_eq!(state_of(&applier, addr), Some(BackendState::Enabled));
        let on_disk = std::fs::read_to_string(applier.config_path()).unwrap_or_default();
        assert_eq!(on_disk, BLUE_GREEN);
        assert_eq!(applier.current().snapshot.version, 3);
    }

    #[tokio::test]
    async fn unknown_backends_are_bad_requests() {
        let (_dir, applier) = start(BLUE_GREEN);
        for (upstream, addr, kind) in [
            ("api", "127.0.0.1:1", EditErrorKind::BadRequest),
            ("api", "nonsense", EditErrorKind::BadRequest),
            ("web", "127.0.0.1:9001", EditErrorKind::NotFound),
        ] {
            let out = set_backend_state(
                &applier,
                Actor::system("ops"),
                upstream,
                addr,
                BackendState::Drain,
            )
            .await;
            assert!(
                matches!(&out, Err(ApplyError::Edit(e)) if e.kind() == kind),
                "{upstream} {addr}: {out:?}"
            );
        }
        assert_eq!(applier.current().snapshot.version, 1);
    }
}
