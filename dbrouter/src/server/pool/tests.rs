//! Tests of the pool: the line of waiting checkouts, and pool keys.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_config::PoolSettings;

use super::node::{key, lock, NodePool};
use crate::cancel::ServerKey;
use crate::server::conn::{ServerConn, ServerState};
use crate::stats::ClusterStats;

/// A "server connection" to a local listener.
async fn fake_conn(listener: &tokio::net::TcpListener) -> ServerConn {
    let addr = listener.local_addr().unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    ServerConn {
        stream: crate::net::stream::PgStream::plain(stream),
        key: ServerKey {
            addr,
            pid: 1,
            secret: 2,
        },
        parameter_status: Vec::new(),
        status: b'I',
        state: ServerState::default(),
    }
}

#[tokio::test]
async fn a_connection_given_back_goes_to_the_longest_waiting_checkout() {
    // Connections wait in the listener's backlog: enough for a pool that never writes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pool = Arc::new(NodePool::default());
    let stats = Arc::new(ClusterStats::new("t"));
    let settings = PoolSettings {
        min_size: 0,
        max_size: 1,
        idle_timeout: Duration::from_secs(60),
        max_lifetime: Duration::from_secs(60),
        checkout_timeout: Duration::from_secs(5),
    };
    let conn = fake_conn(&listener).await;
    let first = pool
        .checkout(
            "k",
            &settings,
            || stats.server("n"),
            || async { Ok::<_, ()>(conn) },
        )
        .await
        .unwrap()
        .unwrap();
    let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut waiters = Vec::new();
    for who in ["second", "third"] {
        let (pool, stats, settings, order_tx) = (
            pool.clone(),
            stats.clone(),
            settings.clone(),
            order_tx.clone(),
        );
        waiters.push(tokio::spawn(async move {
            let never = || async { Err::<ServerConn, ()>(()) };
            let conn = pool
                .checkout("k", &settings, || stats.server("n"), never)
                .await
                .unwrap()
                .unwrap();
            order_tx.send(who).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            pool.put_back("k".into(), conn, &settings);
        }));
        // In line one after the other.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    pool.put_back("k".into(), first, &settings);
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(order.recv().await, Some("second"));
    assert_eq!(order.recv().await, Some("third"));
    // Nobody waiting: the connection is idle, counted once.
    assert_eq!(pool.counts(), (1, 1));
    assert!(lock(&pool.waiters).is_empty());
}

#[test]
fn keys_do_not_depend_on_parameter_order() {
    let a = key(&[("user", "app"), ("database", "jobs")]);
    let b = key(&[("database", "jobs"), ("user", "app")]);
    assert_eq!(a, b);
    assert_ne!(a, key(&[("user", "app"), ("database", "jobs2")]));
    // No ambiguity from concatenation.
    assert_ne!(key(&[("ab", "c")]), key(&[("a", "bc")]));
}
