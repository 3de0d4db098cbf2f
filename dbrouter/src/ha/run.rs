//! The plane's high-availability tasks: the node monitor's supervisor and, beside it, the
//! failover watcher and the watches of other Switchyards' failover decisions, which stop
//! with it.

use tokio::task::JoinHandle;

use super::failover;
use super::handles::Ha;
use super::monitor;

/// Monitor every node of the running config and fail over on the monitor's verdicts, until
/// the task is dropped.
pub async fn run(ha: Ha) {
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _failover = AbortOnDrop(tokio::spawn(failover::run(ha.clone())));
    let _follow = AbortOnDrop(tokio::spawn(failover::follow(ha.clone())));
    monitor::run(ha.live, ha.monitor).await;
}
