//! `POST /v1/upstreams/{name}/weights`: set the traffic split between an upstream's pools,
//! as one new config version.

use std::collections::BTreeMap;

use switchyard_config::edit::set_pool_weights;

use crate::applier::{Applier, ApplyError, ApplyOutcome, EditRequest};
use crate::history::{Actor, Origin};

/// Set the weights of the named pools of `upstream` (pools not named keep theirs). Audited
/// as `upstream.weights`. The validator refuses weights above 10,000 or that leave every
/// pool at 0.
pub async fn set_weights(
    applier: &Applier,
    actor: Actor,
    upstream: &str,
    weights: &BTreeMap<String, u32>,
) -> Result<ApplyOutcome, ApplyError> {
    let list: Vec<(String, u32)> = weights.iter().map(|(p, w)| (p.clone(), *w)).collect();
    let req = EditRequest {
        action: "upstream.weights",
        actor,
        origin: Origin::Api,
        expect_version: None,
        detail: Some(serde_json::json!({ "upstream": upstream, "weights": weights })),
    };
    applier
        .apply_edit(req, |s| set_pool_weights(&s.source, upstream, &list))
        .await
}

#[cfg(test)]
mod tests {
    use switchyard_config::edit::EditErrorKind;

    use super::*;
    use crate::applier::testing::{audit_lines, start, BLUE_GREEN};

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(p, w)| (p.to_string(), *w)).collect()
    }

    fn pool_weights(applier: &Applier) -> BTreeMap<String, u32> {
        let current = applier.current();
        current.snapshot.config.http.upstreams["api"]
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), p.weight))
            .collect()
    }

    #[tokio::test]
    async fn weights_apply_as_one_version() {
        let (dir, applier) = start(BLUE_GREEN);
        let w = weights(&[("blue", 90), ("green", 10)]);
        let outcome = set_weights(&applier, Actor::system("ops"), "api", &w).await;
        assert!(
            matches!(outcome, Ok(ApplyOutcome::Applied { .. })),
            "{outcome:?}"
        );
        assert_eq!(pool_weights(&applier), w);
        assert_eq!(applier.current().snapshot.version, 2);
        let line = audit_lines(&dir).pop().unwrap_or_default();
        assert_eq!(line["action"], "upstream.weights");
        assert_eq!(line["detail"]["weights"]["green"], 10);
        // The same weights again: nothing to do.
        let again = set_weights(&applier, Actor::system("ops"), "api", &w).await;
        assert!(
            matches!(again, Ok(ApplyOutcome::Unchanged { .. })),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn unknown_names_and_invalid_weights_change_nothing() {
        let (_dir, applier) = start(BLUE_GREEN);
        let actor = || Actor::system("ops");
        let missing = set_weights(&applier, actor(), "web", &weights(&[("blue", 1)])).await;
        assert!(
            matches!(&missing, Err(ApplyError::Edit(e)) if e.kind() == EditErrorKind::NotFound),
            "{missing:?}"
        );
        let pool = set_weights(&applier, actor(), "api", &weights(&[("red", 1)])).await;
        assert!(
            matches!(&pool, Err(ApplyError::Edit(e)) if e.kind() == EditErrorKind::BadRequest),
            "{pool:?}"
        );
        let zero = set_weights(&applier, actor(), "api", &weights(&[("blue", 0)])).await;
        assert!(matches!(zero, Err(ApplyError::Invalid(_))), "{zero:?}");
        let big = set_weights(&applier, actor(), "api", &weights(&[("blue", 10_001)])).await;
        assert!(matches!(big, Err(ApplyError::Invalid(_))), "{big:?}");
        assert_eq!(applier.current().snapshot.version, 1);
    }
}
