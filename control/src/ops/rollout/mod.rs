//! Rolling releases of an HTTP upstream, gated on the traffic each batch serves:
//! `POST /v1/upstreams/{name}/rollout` cuts the upstream's backends (or one pool's) into
//! batches, and for each one drains it, has it replaced (a command or webhook named in the
//! config's `[rollout]` section, or an external tool), waits until its active health checks
//! pass (with the new version, when asked), puts it back in rotation and watches its own
//! error ratio for a window, as a flip's verification does. A failing batch stops the
//! rollout and stays out of rotation; `abort` puts every drain and weight back.
//!
//! Every drain and enable is a config change through the applier (versioned, audited).
//! With a file store the rollout's state lives in this process ([`Rollouts`]) and in the
//! state file, so a restart shows it and drives it on from the step in progress ([`kept`]).
//! With a shared store (etcd) a rollout is one operation for the fleet,
//! as a flip's verification is: its driver holds the upstream's lease and keeps the state in
//! etcd at every change ([`shared`]), every node shows it, and another node drives it on
//! from the step in progress when the driver dies ([`takeover`]).

mod driver;
mod edits;
mod gate;
mod kept;
mod replace;
mod request;
mod restart;
mod shared;
mod start;
mod status;
mod steps;
mod takeover;
mod tally;

pub use edits::ROLLOUT;
pub use request::{BatchSize, Replace, RolloutRequest};
pub use restart::resume_kept;
pub(crate) use shared::running_in;
pub use start::RolloutError;
pub use status::{
    BatchStatus, Before, LatencyCheck, RolloutState, RolloutStatus, Rollouts, Step, StepRecord,
};
pub use takeover::takeover;
