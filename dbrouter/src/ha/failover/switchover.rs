//! The planned switchover's own step, before the promotion it shares with a failover: drain
//! the old primary and wait for the target to catch up.

use std::time::{Duration, Instant};

use switchyard_config::Address;

use super::probe;
use super::procedure::Procedure;

impl Procedure<'_> {
    /// A switchover's first step: let the old primary's running turns finish (new ones
    /// wait), end what is left, and wait until `to` has replayed all of its WAL.
    pub(super) async fn drain(&mut self, old: &Address, to: &Address) -> Result<(), String> {
        let pause = self.rt.config.failover.write_pause_timeout;
        let deadline = Instant::now() + pause / 2;
        let pool = self.ha.pools.get(&self.rt.name, &old.to_string());
        loop {
            let (open, idle) = pool.counts();
            if open <= idle || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let old_login = self.login(old)?;
        probe::end_sessions(&old_login, self.limit())
            .await
            .map_err(|e| format!("ending sessions on the old primary {old}: {e}"))?;
        pool.clear();
        let lsn = probe::current_lsn(&old_login, self.limit())
            .await
            .map_err(|e| format!("reading the old primary's WAL position: {e}"))?;
        let to_login = self.login(to)?;
        let catch_up = Instant::now() + pause / 2;
        loop {
            let r = probe::report(&to_login, self.limit()).await?;
            if r.replay_lsn.is_some_and(|l| l >= lsn) {
                return Ok(());
            }
            if Instant::now() >= catch_up {
                return Err(format!(
                    "{to} did not replay up to {lsn} within {:?}",
                    pause / 2
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
