//! Seam's node agent (`seam agent`): registers the node, runs the embedded BGP speaker with
//! peers taken from the resources, announces the node's IPAM blocks, installs what it learns
//! into the kernel, applies pool options (outgoing NAT) and serves the CNI plugin.
//!
//! The decisions are pure functions (`peering`, `origin::plan`, `routes::RouteSync`,
//! `pools::nat_ruleset`, `status`), tested without a kernel; `daemon` wires them to the
//! store, bgpd and the kernel.

pub mod daemon;
pub mod encap;
pub mod origin;
pub mod peering;
pub mod policy;
pub mod pools;
pub mod registration;
pub mod routes;
pub mod status;
pub mod workload;

pub use daemon::{run, AgentConfig};
