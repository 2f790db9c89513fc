//! `seam bgpd`: the runtime around the sans-IO `bgp` crate — sockets, timers, GoBGP-format
//! configuration and the GoBGP-compatible management API.

pub mod config;
pub mod runtime;

pub use runtime::{CoreControl, Daemon, NeighborSync, RunOptions};
