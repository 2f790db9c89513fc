//! `seam bgpd`: the runtime around the sans-IO `bgp` crate.

pub mod config;
