//! Seam's Linux dataplane: everything that touches the kernel (network namespaces, netlink
//! links/addresses/routes/neighbours, VXLAN, sysctls, nftables loading). The only Seam crate
//! that needs root, and the only one with `unsafe` (in [`sys`], a handful of syscalls; the
//! crate-level `deny` keeps it there).
//!
//! rtnetlink is pinned to one exact version and wrapped: no rtnetlink type appears in this
//! crate's public API, so its frequent API breaks stay inside this crate.
#![deny(unsafe_code)]

pub mod error;
pub mod links;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod probe;
pub mod routes;
pub mod sysctl;
#[allow(unsafe_code)]
mod sys;

/// Make the process allocator keep freed memory for reuse (see `sys::keep_freed_heap_memory`).
/// Called once at start by the `seam` binary; returns whether the allocator took the settings.
pub fn keep_freed_heap_memory() -> bool {
    sys::keep_freed_heap_memory()
}

pub use error::{Error, Result};
pub use links::{Link, RemoteVtep, VethSpec, VxlanSpec};
pub use netlink::{MacAddr, Netlink};
pub use netns::NetNs;
pub use probe::{ipip_supported, probe_ipip};
pub use routes::{
    plan as plan_routes, ReconcilePlan, ReconcileReport, Route, RouteKey, Scope, MAIN_TABLE,
    SEAM_ROUTE_PROTOCOL,
};
