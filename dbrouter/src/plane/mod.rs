//! The top of the router: [`DbPlane`] ([`db_plane`]), which keeps every part's long-lived
//! state and hands each part the handles it uses; starting the listeners and the background
//! tasks ([`mod@start`]); and the entry points the control plane calls ([`ops`]). Only this folder
//! and `lib.rs` name `DbPlane`.
//!
//! Holds no logic of its own beyond wiring: a behaviour belongs in the part that owns it.

pub mod db_plane;
pub mod ops;
pub mod start;

pub use db_plane::DbPlane;
pub use start::{start, start_on, Adopter, PgListeners, StartError};
