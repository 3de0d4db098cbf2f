//! Where a read goes: [`replicas`] chooses a replica from the monitor's verdicts (health,
//! lag, read-your-writes) and the pools' load. The statement classifier it relies on is
//! [`crate::classify`].

pub mod replicas;
