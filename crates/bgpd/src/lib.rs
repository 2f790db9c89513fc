//! `seam bgpd`: the runtime around the sans-IO `bgp` crate — sockets, timers, GoBGP-format
//! configuration and the GoBGP-compatible management API.

pub mod config;
// The runtime is wired in once the FSM, RIB and API crates it drives have landed.
// pub mod runtime;
// pub use runtime::{Daemon, RunOptions};
