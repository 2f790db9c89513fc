//! Installing what BGP learned into the kernel, tagged with Seam's route protocol number.
//!
//! Two parts:
//! - [`RouteSync`], pure: what the kernel should hold (from best-path changes) versus what it
//!   holds, turned into replace/delete actions. Before BGP has converged after a start it never
//!   deletes, so an agent restarted after a crash keeps forwarding with the routes its previous
//!   run installed; once converged, stale Seam routes go and valid ones stay.
//! - [`Kernel`], the I/O: the `dataplane` crate's netlink routes, restricted to Seam's
//!   protocol number and to routes with a gateway (the CNI side's host routes to workloads
//!   carry the same protocol but no gateway), so routes of any other origin are never changed
//!   or removed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use dataplane::{Netlink, RemoteVtep, Route, VxlanSpec, MAIN_TABLE};
use ipnet::IpNet;

use crate::encap::{vtep_mac, VXLAN_DEVICE, VXLAN_OVERHEAD, VXLAN_PORT, VXLAN_VNI};

pub use dataplane::SEAM_ROUTE_PROTOCOL;

/// Where a learned prefix goes: its BGP next hop, directly or through the VXLAN device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub via: IpAddr,
    /// Through `vxlan.seam` (`via NH dev vxlan.seam onlink`).
    pub encap: bool,
}

impl Target {
    /// Plain routed next hop.
    pub fn direct(via: IpAddr) -> Target {
        Target { via, encap: false }
    }
}

/// One change to make in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteAction {
    /// Install or update `prefix` towards `target`.
    Replace { prefix: IpNet, target: Target },
    /// Remove our route for `prefix`.
    Delete { prefix: IpNet },
}

/// Desired versus installed routes, pure.
#[derive(Clone, Debug, Default)]
pub struct RouteSync {
    /// What BGP says: prefix -> next hop (only routes via other nodes).
    desired: BTreeMap<IpNet, Target>,
    /// Seam-protocol routes the kernel holds (as last read or written).
    installed: BTreeMap<IpNet, Target>,
    /// True once BGP has converged after start: only then are unknown routes deleted.
    converged: bool,
}

impl RouteSync {
    /// Start from the Seam routes found in the kernel (a previous run's).
    pub fn new(existing: BTreeMap<IpNet, Target>) -> RouteSync {
        RouteSync { desired: BTreeMap::new(), installed: existing, converged: false }
    }

    pub fn is_converged(&self) -> bool {
        self.converged
    }

    pub fn desired(&self) -> &BTreeMap<IpNet, Target> {
        &self.desired
    }

    /// Record one best-path change (`via` None = no route, or a route we must not install,
    /// such as our own) and return what to do now.
    pub fn update(&mut self, prefix: IpNet, target: Option<Target>) -> Vec<RouteAction> {
        match target {
            Some(target) => {
                self.desired.insert(prefix, target);
                if self.installed.get(&prefix) == Some(&target) {
                    Vec::new()
                } else {
                    vec![RouteAction::Replace { prefix, target }]
                }
            }
            None => {
                self.desired.remove(&prefix);
                // Before convergence (after a start, or while a peer is down) nothing is
                // removed: the route may be back once every peer has spoken again.
                if self.installed.contains_key(&prefix) && self.converged {
                    vec![RouteAction::Delete { prefix }]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// A peer went down: stop removing routes until BGP has converged again.
    pub fn hold(&mut self) {
        self.converged = false;
    }

    /// BGP has converged: from now on, anything installed that is not desired is stale.
    pub fn mark_converged(&mut self) -> Vec<RouteAction> {
        self.converged = true;
        self.diff()
    }

    /// Compare with a fresh read of the kernel (periodic resync) and return the repairs.
    pub fn resync(&mut self, kernel: BTreeMap<IpNet, Target>) -> Vec<RouteAction> {
        self.installed = kernel;
        self.diff()
    }

    fn diff(&self) -> Vec<RouteAction> {
        let mut actions: Vec<RouteAction> = self
            .desired
            .iter()
            .filter(|(p, target)| self.installed.get(p) != Some(target))
            .map(|(p, target)| RouteAction::Replace { prefix: *p, target: *target })
            .collect();
        if self.converged {
            actions.extend(
                self.installed.keys().filter(|p| !self.desired.contains_key(p)).map(|p| RouteAction::Delete { prefix: *p }),
            );
        }
        actions
    }

    /// Record that an action was carried out.
    pub fn applied(&mut self, action: &RouteAction) {
        match action {
            RouteAction::Replace { prefix, target } => {
                self.installed.insert(*prefix, *target);
            }
            RouteAction::Delete { prefix } => {
                self.installed.remove(prefix);
            }
        }
    }
}

/// Why a route could not be installed without touching someone else's.
#[derive(Debug, thiserror::Error)]
#[error("{prefix} is already routed in the kernel by protocol {protocol}; Seam leaves routes it did not create alone")]
pub struct ForeignRoute {
    pub prefix: IpNet,
    pub protocol: String,
}

/// The kernel's main routing table in the current network namespace, through netlink.
#[derive(Clone)]
pub struct Kernel {
    netlink: Netlink,
    /// Protocol number written on and filtered by (tests may use another one).
    pub protocol: u8,
    /// This node's underlay address (the VXLAN device's source and VTEP MAC).
    pub local: Ipv4Addr,
}

impl Kernel {
    /// Connect to this process's namespace (inside a tokio runtime).
    pub fn connect(protocol: u8, local: Ipv4Addr) -> anyhow::Result<Kernel> {
        Ok(Kernel { netlink: Netlink::connect()?, protocol, local })
    }

    async fn vxlan_index(&self) -> anyhow::Result<Option<u32>> {
        Ok(self.netlink.link(VXLAN_DEVICE).await?.map(|l| l.index))
    }

    /// The VXLAN device, created (and brought up) if missing. Every node with a VXLAN pool
    /// needs it to receive, even before it routes anything through it.
    pub async fn ensure_vxlan(&self) -> anyhow::Result<u32> {
        if let Some(index) = self.vxlan_index().await? {
            return Ok(index);
        }
        let spec = VxlanSpec {
            name: VXLAN_DEVICE.to_string(),
            vni: VXLAN_VNI,
            local: IpAddr::V4(self.local),
            port: VXLAN_PORT,
            underlay_dev: None,
            mtu: Some(1500 - VXLAN_OVERHEAD),
            mac: Some(vtep_mac(self.local)),
        };
        let index = match self.netlink.create_vxlan(&spec).await {
            Ok(index) => index,
            Err(e) if e.is_exists() => self.netlink.link_index(VXLAN_DEVICE).await?,
            Err(e) => return Err(e.into()),
        };
        self.netlink.set_up(VXLAN_DEVICE).await?;
        tracing::info!(device = VXLAN_DEVICE, vni = VXLAN_VNI, "VXLAN device ready");
        Ok(index)
    }

    async fn route(&self, prefix: IpNet, target: Target) -> anyhow::Result<Route> {
        let route = Route::via(prefix, target.via).with_protocol(self.protocol);
        if !target.encap {
            return Ok(route);
        }
        let IpAddr::V4(remote) = target.via else {
            anyhow::bail!("VXLAN towards {} is not supported: Seam's VXLAN underlay is IPv4", target.via);
        };
        let index = self.ensure_vxlan().await?;
        self.netlink
            .add_vtep(VXLAN_DEVICE, &RemoteVtep { mac: vtep_mac(remote), underlay: target.via, tunnel_addr: target.via })
            .await?;
        Ok(route.with_oif(index).with_onlink())
    }

    /// Seam's routes with a gateway in the main table, both families.
    pub async fn list(&self) -> anyhow::Result<BTreeMap<IpNet, Target>> {
        let vxlan = self.vxlan_index().await?;
        Ok(self
            .netlink
            .routes_by_protocol(self.protocol)
            .await?
            .into_iter()
            .filter(|r| r.table == MAIN_TABLE)
            .filter_map(|r| {
                let encap = vxlan.is_some() && r.oif == vxlan;
                r.gateway.map(|via| (r.dst, Target { via, encap }))
            })
            .collect())
    }

    /// Install `prefix` towards `target` with Seam's protocol, refusing to overwrite another
    /// protocol's route for the same prefix.
    pub async fn replace(&self, prefix: IpNet, target: Target) -> anyhow::Result<()> {
        let route = self.route(prefix, target).await?;
        match self.netlink.add_route(&route).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_exists() => {
                let key = route.key();
                let holder = self.netlink.routes().await?.into_iter().find(|r| r.key() == key);
                if let Some(other) = holder.filter(|r| r.protocol != self.protocol) {
                    return Err(ForeignRoute { prefix, protocol: other.protocol.to_string() }.into());
                }
                Ok(self.netlink.replace_route(&route).await?)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Remove Seam's route for `prefix` (only ours: the delete is filtered by protocol).
    /// Already gone is fine.
    pub async fn delete(&self, prefix: IpNet) -> anyhow::Result<()> {
        let unspecified = if prefix.addr().is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u8; 16]) };
        let route = Route::via(prefix, unspecified).with_protocol(self.protocol);
        self.netlink.delete_route(&route).await?;
        Ok(())
    }

    /// Carry out one action.
    pub async fn apply(&self, action: &RouteAction) -> anyhow::Result<()> {
        match action {
            RouteAction::Replace { prefix, target } => self.replace(*prefix, *target).await,
            RouteAction::Delete { prefix } => self.delete(*prefix).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn a(s: &str) -> Target {
        Target::direct(s.parse().unwrap())
    }

    #[test]
    fn restart_keeps_old_routes_until_converged_then_removes_stale_ones() {
        let existing = BTreeMap::from([(p("10.1.0.0/26"), a("10.0.0.2")), (p("10.1.0.64/26"), a("10.0.0.3"))]);
        let mut sync = RouteSync::new(existing);
        // The same route is learned again: nothing to do.
        assert!(sync.update(p("10.1.0.0/26"), Some(a("10.0.0.2"))).is_empty());
        // A withdrawal of a route this run never wanted leaves the old route alone for now.
        assert!(sync.update(p("10.1.0.64/26"), None).is_empty());
        // A new route is installed at once.
        let act = sync.update(p("10.1.0.128/26"), Some(a("10.0.0.4")));
        assert_eq!(act, vec![RouteAction::Replace { prefix: p("10.1.0.128/26"), target: a("10.0.0.4") }]);
        sync.applied(&act[0]);
        // Convergence removes what nobody announces any more.
        assert_eq!(sync.mark_converged(), vec![RouteAction::Delete { prefix: p("10.1.0.64/26") }]);
    }

    #[test]
    fn changes_after_convergence_apply_directly() {
        let mut sync = RouteSync::new(BTreeMap::new());
        assert!(sync.mark_converged().is_empty());
        let act = sync.update(p("10.1.0.0/26"), Some(a("10.0.0.2")));
        sync.applied(&act[0]);
        // New next hop: replace.
        assert_eq!(sync.update(p("10.1.0.0/26"), Some(a("10.0.0.3"))), vec![RouteAction::Replace { prefix: p("10.1.0.0/26"), target: a("10.0.0.3") }]);
        sync.applied(&RouteAction::Replace { prefix: p("10.1.0.0/26"), target: a("10.0.0.3") });
        assert_eq!(sync.update(p("10.1.0.0/26"), None), vec![RouteAction::Delete { prefix: p("10.1.0.0/26") }]);
        sync.applied(&RouteAction::Delete { prefix: p("10.1.0.0/26") });
        // Withdrawing something never installed does nothing.
        assert!(sync.update(p("10.9.0.0/26"), None).is_empty());
    }

    #[test]
    fn holding_keeps_withdrawn_routes_until_convergence() {
        let mut sync = RouteSync::new(BTreeMap::new());
        sync.mark_converged();
        for act in sync.update(p("10.1.0.0/26"), Some(a("10.0.0.2"))) {
            sync.applied(&act);
        }
        sync.hold();
        assert!(!sync.is_converged());
        assert!(sync.update(p("10.1.0.0/26"), None).is_empty(), "held: the route stays");
        // Comes back while held: nothing to do, it is still installed.
        assert!(sync.update(p("10.1.0.0/26"), Some(a("10.0.0.2"))).is_empty());
        assert!(sync.mark_converged().is_empty());
        sync.hold();
        sync.update(p("10.1.0.0/26"), None);
        assert_eq!(sync.mark_converged(), vec![RouteAction::Delete { prefix: p("10.1.0.0/26") }]);
    }

    #[test]
    fn resync_repairs_routes_removed_or_changed_behind_our_back() {
        let mut sync = RouteSync::new(BTreeMap::new());
        sync.mark_converged();
        for act in sync.update(p("10.1.0.0/26"), Some(a("10.0.0.2"))) {
            sync.applied(&act);
        }
        let kernel = BTreeMap::from([(p("10.1.0.64/26"), a("10.0.0.9"))]);
        let mut actions = sync.resync(kernel);
        actions.sort();
        assert_eq!(
            actions,
            vec![RouteAction::Replace { prefix: p("10.1.0.0/26"), target: a("10.0.0.2") }, RouteAction::Delete { prefix: p("10.1.0.64/26") }]
        );
    }
}
