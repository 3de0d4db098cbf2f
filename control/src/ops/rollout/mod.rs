//! Rolling releases of an HTTP upstream, gated on the traffic each batch serves:
//! `POST /v1/upstreams/{name}/rollout` cuts the upstream's backends (or one pool's) into
//! batches, and for each one drains it, has it replaced (a command or webhook named in the
//! config's `[rollout]` section, or an external tool), waits until its active health checks
//! pass (with the new version, when asked), puts it back in rotation and watches its own
//! error ratio for a window, as a flip's verification does. A failing batch stops the
//! rollout and stays out of rotation; `abort` puts every drain and weight back.
//!
//! Every drain and enable is a config change through the applier (versioned, audited).
//! The rollout's state lives in this process ([`Rollouts`]): unlike a flip it is not yet
//! driven under the fleet's lease nor kept in the store, so a restart forgets it.

mod driver;
mod edits;
mod gate;
mod replace;
mod request;
mod start;
mod status;

pub use edits::ROLLOUT;
pub use request::{BatchSize, Replace, RolloutRequest};
pub use start::RolloutError;
pub use status::{
    BatchStatus, Before, LatencyCheck, RolloutState, RolloutStatus, Rollouts, Step, StepRecord,
};
