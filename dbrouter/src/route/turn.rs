//! Where one transaction-pooling turn goes: the primary, a replica, or nowhere (an error for
//! the client), from its first statement's classification ([`crate::classify`]), the
//! session's `SET switchyard.route` override, and the replica choice ([`super::replicas`])
//! with the session's read-your-writes position.

use switchyard_config::{Address, Cluster, NodeRole, ReplicaFallback};

use super::replicas::{choose, Choice, Reason::NoReplicas};
use crate::classify::{Decision, Reason, Target, TxEffect};
use crate::ha::monitor::{Lsn, NodeMonitor};
use crate::runtime::ClusterRuntime;
use crate::server::pool::Pools;

/// A session's `SET switchyard.route`: where its turns go whatever their statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOverride {
    Primary,
    Replica,
}

/// What of the session routing follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Session {
    /// Its `SET switchyard.route`.
    pub forced: Option<RouteOverride>,
    /// Its `default_transaction_read_only` is on (and its default isolation is not
    /// serializable): a plain `BEGIN` opens a read-only transaction.
    pub read_only_default: bool,
}

/// Where a turn goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// `Ok(None)`: the primary; `Ok(Some(replica))`; `Err(message)`: it is a read and no
    /// replica may serve it (`routing.fallback = "error"`).
    pub to: Result<Option<Address>, String>,
    /// It goes to the primary as a write (not a read that fell back there).
    pub writes: bool,
}

/// Where a turn starting with `sql` (`None`: not known, such as a `FunctionCall`) goes in
/// `cluster` as it is now. `min_lsn`: the session's last write (read-your-writes, when the
/// cluster has it on). `count(target, reason)` is told where it went and why, for
/// `switchyard_postgres_queries_routed_total`; nothing is counted without read/write split.
pub fn route(
    cluster: &ClusterRuntime,
    session: Session,
    sql: Option<&[u8]>,
    min_lsn: Option<Lsn>,
    monitor: &NodeMonitor,
    pools: &Pools,
    mut count: impl FnMut(&'static str, &'static str),
) -> Turn {
    let Some(classifier) = cluster.classifier.as_ref() else {
        return Turn {
            to: Ok(None),
            writes: false,
        };
    };
    if session.forced.is_none() && !reads_may_leave_the_primary(&cluster.config) {
        // No replica could take a read, and a read that finds none goes to the primary:
        // everything does, so nothing is classified (and, with no replica to read from,
        // nothing is a write to wait for).
        count("primary", NoReplicas.as_str());
        return Turn {
            to: Ok(None),
            writes: false,
        };
    }
    let text = sql.and_then(|s| std::str::from_utf8(s).ok());
    let (target, reason) = match (session.forced, text) {
        (Some(RouteOverride::Primary), _) => (Target::Primary, "session_override"),
        (Some(RouteOverride::Replica), _) => (Target::Replica, "session_override"),
        (None, None) => (Target::Primary, "unknown_statement"),
        (None, Some(text)) => {
            let d = classifier.classify(text);
            if session.read_only_default && read_only_by_default(&d, text) {
                // The session's default makes this plain BEGIN a read-only transaction.
                (Target::Replica, Reason::ReadOnlyTransaction.label())
            } else {
                (d.target, d.reason.label())
            }
        }
    };
    if target == Target::Primary {
        count("primary", reason);
        return Turn {
            to: Ok(None),
            writes: true,
        };
    }
    let min_lsn = min_lsn.filter(|_| cluster.config.routing.read_your_writes);
    let to = match choose(&cluster.config, min_lsn, monitor, pools) {
        Choice::Replica(addr) => {
            count("replica", reason);
            Ok(Some(addr))
        }
        Choice::Primary(_) => {
            count("primary", reason);
            Ok(None)
        }
        Choice::Error(why) => {
            count("error", reason);
            Err(format!(
                "no replica of cluster \"{}\" can serve this read: {why}",
                cluster.name
            ))
        }
    };
    Turn { to, writes: false }
}

/// Whether a read may go anywhere but the primary in `cluster` as configured: it has a
/// replica that is not fenced, or a read that finds no replica fails
/// (`routing.fallback = "error"`).
fn reads_may_leave_the_primary(cluster: &Cluster) -> bool {
    cluster.routing.fallback == ReplicaFallback::Error
        || cluster
            .nodes
            .iter()
            .any(|n| n.role == NodeRole::Replica && n.fenced.is_none())
}

/// Whether `d`, the classification of `text`, opens a transaction that the session's
/// `default_transaction_read_only = on` makes read-only: a `BEGIN` or `START TRANSACTION`
/// that says neither `READ WRITE` nor `SERIALIZABLE` (a hot standby refuses serializable
/// transactions) and that no override comment sent to the primary.
fn read_only_by_default(d: &Decision, text: &str) -> bool {
    if d.tx != (TxEffect::Begin { read_only: false }) || d.reason != Reason::TransactionControl {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    matches!(words.first(), Some(&"begin") | Some(&"start"))
        && !words.windows(2).any(|w| w == ["read", "write"])
        && !words.contains(&"serializable")
}

/// `SET switchyard.route = primary | replica | auto` (or `TO`, quoted or not, with an
/// optional `;`): `Some(override)` (`Some(None)` for `auto`), `None` for any other text.
pub fn route_setting(text: &[u8]) -> Option<Option<RouteOverride>> {
    let text = std::str::from_utf8(text).ok()?.trim().trim_end_matches(';');
    let lower = text.trim_end().to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    if words.next()? != "set" {
        return None;
    }
    let rest: String = words.collect::<Vec<_>>().join(" ");
    let rest = rest
        .strip_prefix("session ")
        .unwrap_or(&rest)
        .strip_prefix("switchyard.route")?
        .trim_start();
    let value = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix("to "))?
        .trim()
        .trim_matches(|c| c == '\'' || c == '"');
    match value {
        "primary" => Some(Some(RouteOverride::Primary)),
        "replica" => Some(Some(RouteOverride::Replica)),
        "auto" | "default" => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_begin_is_read_only_by_default_unless_it_says_otherwise() {
        let begin = Decision::primary(Reason::TransactionControl)
            .with_tx(TxEffect::Begin { read_only: false });
        for text in [
            "BEGIN",
            "start transaction",
            "begin isolation level repeatable read",
        ] {
            assert!(read_only_by_default(&begin, text), "{text}");
        }
        for text in [
            "BEGIN READ WRITE",
            "begin isolation level serializable",
            "START TRANSACTION READ\nWRITE",
        ] {
            assert!(!read_only_by_default(&begin, text), "{text}");
        }
        let write = Decision::primary(Reason::Write);
        assert!(!read_only_by_default(&write, "insert into t values (1)"));
    }

    #[test]
    fn route_setting_is_recognised_in_its_spellings() {
        let p = Some(Some(RouteOverride::Primary));
        assert_eq!(route_setting(b"SET switchyard.route = primary"), p);
        assert_eq!(route_setting(b"set switchyard.route to 'primary';"), p);
        assert_eq!(route_setting(b"  SET SESSION switchyard.route=primary "), p);
        assert_eq!(
            route_setting(b"set switchyard.route = replica"),
            Some(Some(RouteOverride::Replica))
        );
        assert_eq!(route_setting(b"set switchyard.route = auto"), Some(None));
        assert_eq!(route_setting(b"set switchyard.route = elsewhere"), None);
        assert_eq!(route_setting(b"set search_path = primary"), None);
        assert_eq!(route_setting(b"select 1"), None);
    }
}
