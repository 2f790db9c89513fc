//! Routes Seam installs (remote blocks via other nodes, host routes to local workloads), tagged
//! with Seam's own route protocol number so the agent can find exactly its own routes again
//! after a restart, and reconcile them against what it wants without touching anyone else's.
//!
//! The reconcile decision ([`plan`]) is a pure function over route lists, unit-tested without a
//! kernel; [`Netlink::reconcile`] lists, plans and applies.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
    RouteScope as NlScope, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use crate::error::{Error, Result};
use crate::netlink::Netlink;

/// Seam's route protocol number (`rtm_protocol`), 94 = 0x5E ("SEam"). Unassigned in Linux's
/// `include/uapi/linux/rtnetlink.h` (RTPROT_* uses 0-4, 8-18, 42, 99, 186-189, 192) and in
/// iproute2's `rt_protos`; not one of FRR's (191, 193-197) nor Calico Felix's 80. Add
/// `94 seam` to `/etc/iproute2/rt_protos.d/seam.conf` to see `proto seam` in `ip route`.
pub const SEAM_ROUTE_PROTOCOL: u8 = 94;

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = 254;

/// Route scope, as far as Seam uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Reached through a gateway (the default).
    Universe,
    /// Directly on the link, no gateway (host route to a workload via its veth).
    Link,
    /// Local to this host.
    Host,
    /// Any other kernel value.
    Other(u8),
}

/// One unicast route. Plain data: the agent builds these from BGP/IPAM state and compares
/// them with what the kernel has.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix (host bits must be zero).
    pub dst: IpNet,
    /// Next hop, when not directly connected.
    pub gateway: Option<IpAddr>,
    /// Output interface index (see [`Netlink::link_index`]); None lets the kernel resolve the
    /// gateway.
    pub oif: Option<u32>,
    /// `onlink`: treat the gateway as on-link on `oif` even without a matching connected
    /// prefix (VXLAN next hops, Calico-style).
    pub onlink: bool,
    /// Route scope.
    pub scope: Scope,
    /// Routing table id.
    pub table: u32,
    /// Route priority / metric. None means the kernel default (0 for IPv4, 1024 for IPv6).
    pub metric: Option<u32>,
    /// `rtm_protocol`; [`SEAM_ROUTE_PROTOCOL`] for Seam's routes.
    pub protocol: u8,
}

impl Route {
    /// `dst via gateway`, Seam protocol, main table.
    pub fn via(dst: IpNet, gateway: IpAddr) -> Self {
        Route {
            dst,
            gateway: Some(gateway),
            oif: None,
            onlink: false,
            scope: Scope::Universe,
            table: MAIN_TABLE,
            metric: None,
            protocol: SEAM_ROUTE_PROTOCOL,
        }
    }

    /// `dst dev oif scope link` (e.g. the host route to a workload's /32 via its veth),
    /// Seam protocol, main table.
    pub fn dev(dst: IpNet, oif: u32) -> Self {
        Route {
            dst,
            gateway: None,
            oif: Some(oif),
            onlink: false,
            scope: Scope::Link,
            table: MAIN_TABLE,
            metric: None,
            protocol: SEAM_ROUTE_PROTOCOL,
        }
    }

    /// Sets the output interface.
    pub fn with_oif(mut self, oif: u32) -> Self {
        self.oif = Some(oif);
        self
    }

    /// Marks the gateway on-link.
    pub fn with_onlink(mut self) -> Self {
        self.onlink = true;
        self
    }

    /// Sets the table.
    pub fn with_table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    /// Sets the metric.
    pub fn with_metric(mut self, metric: u32) -> Self {
        self.metric = Some(metric);
        self
    }

    /// Sets the protocol number.
    pub fn with_protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// The metric the kernel will use.
    pub fn effective_metric(&self) -> u32 {
        self.metric
            .unwrap_or(if self.dst.addr().is_ipv4() { 0 } else { 1024 })
    }

    /// What identifies a route in the kernel FIB: replacing or deleting by this key hits at
    /// most one route (Seam does not use TOS).
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst,
            metric: self.effective_metric(),
        }
    }

    /// Checks the route is something the kernel will accept, naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.dst != self.dst.trunc() {
            return Err(Error::invalid(
                format!("route {}", self.dst),
                format!("dst has host bits set (did you mean {}?)", self.dst.trunc()),
            ));
        }
        if let Some(gw) = self.gateway {
            if gw.is_ipv4() != self.dst.addr().is_ipv4() {
                return Err(Error::invalid(
                    format!("route {} gateway {gw}", self.dst),
                    "gateway family differs from dst family",
                ));
            }
        } else if self.oif.is_none() {
            return Err(Error::invalid(
                format!("route {}", self.dst),
                "needs a gateway or an output interface",
            ));
        }
        if self.onlink && self.oif.is_none() {
            return Err(Error::invalid(
                format!("route {}", self.dst),
                "onlink needs an output interface",
            ));
        }
        if self.table == 0 {
            return Err(Error::invalid(
                format!("route {} table", self.dst),
                "table 0 (unspec) is not a table",
            ));
        }
        Ok(())
    }

    /// Whether `existing` (as listed from the kernel) already is this route. Fields this route
    /// leaves to the kernel (oif when routing via a gateway, scope for IPv6) are not compared.
    pub fn matches_installed(&self, existing: &Route) -> bool {
        self.key() == existing.key()
            && self.protocol == existing.protocol
            && self.gateway == existing.gateway
            && (self.oif.is_none() || self.oif == existing.oif)
            && self.onlink == existing.onlink
            && (self.dst.addr().is_ipv6() || self.scope == existing.scope)
    }
}

/// The identity of a route in the FIB: table, destination and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// Routing table id.
    pub table: u32,
    /// Destination prefix.
    pub dst: IpNet,
    /// Effective metric.
    pub metric: u32,
}

/// What [`plan`] decided; [`Netlink::reconcile`] applies it in this order: delete, replace, add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Desired routes not in the kernel.
    pub add: Vec<Route>,
    /// Desired routes whose key is held by a Seam route with different attributes.
    pub replace: Vec<Route>,
    /// Seam routes in the kernel that are not desired.
    pub delete: Vec<Route>,
    /// Desired routes already installed exactly.
    pub unchanged: Vec<Route>,
    /// Desired routes whose key is held by a route of another protocol: left alone (Seam
    /// never touches routes it did not create); each entry is (desired, foreign).
    pub conflicts: Vec<(Route, Route)>,
}

/// Decides how to get from `existing` (every route in the kernel, any protocol) to `desired`
/// (Seam's routes). Routes of other protocols are never in `delete` or `replace`.
pub fn plan(existing: &[Route], desired: &[Route]) -> Result<ReconcilePlan> {
    let mut want: HashMap<RouteKey, &Route> = HashMap::new();
    for r in desired {
        r.validate()?;
        if r.protocol != SEAM_ROUTE_PROTOCOL {
            return Err(Error::invalid(
                format!("desired route {}", r.dst),
                format!(
                    "has protocol {}, but reconcile manages only Seam's ({SEAM_ROUTE_PROTOCOL})",
                    r.protocol
                ),
            ));
        }
        if want.insert(r.key(), r).is_some() {
            return Err(Error::invalid(
                format!(
                    "desired route {} (table {}, metric {})",
                    r.dst,
                    r.table,
                    r.effective_metric()
                ),
                "listed twice",
            ));
        }
    }
    let mut have: HashMap<RouteKey, &Route> = HashMap::new();
    let mut out = ReconcilePlan::default();
    for r in existing {
        // Another protocol's route shares the key only if it is the one the kernel holds; a
        // Seam route at the same key would be an ECMP leftover: delete it if not desired.
        if r.protocol == SEAM_ROUTE_PROTOCOL {
            if want.contains_key(&r.key()) && !have.contains_key(&r.key()) {
                have.insert(r.key(), r);
            } else {
                out.delete.push(r.clone());
            }
        } else {
            have.entry(r.key()).or_insert(r);
        }
    }
    for r in desired {
        match have.get(&r.key()) {
            None => out.add.push(r.clone()),
            Some(cur) if cur.protocol != SEAM_ROUTE_PROTOCOL => {
                out.conflicts.push((r.clone(), (*cur).clone()))
            }
            Some(cur) if r.matches_installed(cur) => out.unchanged.push(r.clone()),
            Some(_) => out.replace.push(r.clone()),
        }
    }
    Ok(out)
}

/// What [`Netlink::reconcile`] did. Failures of single routes do not stop the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Routes newly installed.
    pub added: Vec<Route>,
    /// Routes whose attributes were updated in place.
    pub replaced: Vec<Route>,
    /// Stale Seam routes removed.
    pub deleted: Vec<Route>,
    /// Desired routes that were already right.
    pub unchanged: usize,
    /// Desired routes not installed because another protocol's route holds the prefix.
    pub conflicts: Vec<(Route, Route)>,
    /// Routes the kernel refused, with the reason.
    pub failed: Vec<(Route, String)>,
}

fn scope_from(s: NlScope) -> Scope {
    match s {
        NlScope::Universe => Scope::Universe,
        NlScope::Link => Scope::Link,
        NlScope::Host => Scope::Host,
        other => Scope::Other(u8::from(other)),
    }
}

fn scope_to(s: Scope) -> NlScope {
    match s {
        Scope::Universe => NlScope::Universe,
        Scope::Link => NlScope::Link,
        Scope::Host => NlScope::Host,
        Scope::Other(v) => NlScope::from(v),
    }
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Converts a kernel route message; None for families/types Seam does not model.
fn route_from_message(m: &RouteMessage) -> Option<(Route, RouteType)> {
    let v4 = match m.header.address_family {
        AddressFamily::Inet => true,
        AddressFamily::Inet6 => false,
        _ => return None,
    };
    let mut dst_addr: Option<IpAddr> = None;
    let mut r = Route {
        dst: IpNet::default(),
        gateway: None,
        oif: None,
        onlink: m.header.flags.contains(RouteFlags::Onlink),
        scope: scope_from(m.header.scope),
        table: u32::from(m.header.table),
        metric: None,
        protocol: u8::from(m.header.protocol),
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst_addr = addr_of(d),
            RouteAttribute::Gateway(g) => r.gateway = addr_of(g),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    let dst_addr = dst_addr.unwrap_or(if v4 {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    });
    r.dst = IpNet::new(dst_addr, m.header.destination_prefix_length).ok()?;
    if r.metric.is_none() {
        r.metric = Some(r.effective_metric());
    }
    Some((r, m.header.kind))
}

/// Builds the netlink message for adding/replacing `r`.
fn message_for(r: &Route) -> Result<RouteMessage> {
    let ctx = |e: String| Error::invalid(format!("route {}", r.dst), e);
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .map_err(|e| ctx(e.to_string()))?
        .table_id(r.table)
        .protocol(RouteProtocol::from(r.protocol))
        .scope(scope_to(r.scope))
        .kind(RouteType::Unicast);
    if let Some(gw) = r.gateway {
        b = b.gateway(gw).map_err(|e| ctx(e.to_string()))?;
    }
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    if r.onlink {
        b = b.onlink();
    }
    Ok(b.build())
}

impl Netlink {
    /// Every unicast route in every table, both families, any protocol.
    pub async fn routes(&self) -> Result<Vec<Route>> {
        Ok(self
            .all_routes()
            .await?
            .into_iter()
            .filter(|(_, t)| *t == RouteType::Unicast)
            .map(|(r, _)| r)
            .collect())
    }

    /// The unicast routes with protocol `protocol` (e.g. [`SEAM_ROUTE_PROTOCOL`]).
    pub async fn routes_by_protocol(&self, protocol: u8) -> Result<Vec<Route>> {
        Ok(self
            .routes()
            .await?
            .into_iter()
            .filter(|r| r.protocol == protocol)
            .collect())
    }

    async fn all_routes(&self) -> Result<Vec<(Route, RouteType)>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let msgs = self
                .collect(
                    || "listing routes".into(),
                    self.handle().route().get(msg).execute(),
                )
                .await?;
            out.extend(
                msgs.iter()
                    .filter(|m| !m.header.flags.contains(RouteFlags::Cloned))
                    .filter_map(route_from_message),
            );
        }
        Ok(out)
    }

    /// Adds `route`; fails with EEXIST (see [`Error::is_exists`]) if its key is taken.
    pub async fn add_route(&self, route: &Route) -> Result<()> {
        route.validate()?;
        let msg = message_for(route)?;
        self.handle().route().add(msg).execute().await.map_err(|e| {
            Error::netlink(
                format!("adding route {}{}", describe(route), self.where_()),
                e,
            )
        })
    }

    /// Adds `route` or replaces the route with the same key (`ip route replace`).
    pub async fn replace_route(&self, route: &Route) -> Result<()> {
        route.validate()?;
        let msg = message_for(route)?;
        self.handle()
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink(
                    format!("replacing route {}{}", describe(route), self.where_()),
                    e,
                )
            })
    }

    /// Deletes the route with `route`'s key *and protocol* (so deleting a Seam route can never
    /// remove another protocol's route for the same prefix). Returns false if there was none.
    pub async fn delete_route(&self, route: &Route) -> Result<bool> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.addr(), route.dst.prefix_len())
            .map_err(|e| Error::invalid(format!("route {}", route.dst), e.to_string()))?
            .table_id(route.table)
            .protocol(RouteProtocol::from(route.protocol))
            // RT_SCOPE_NOWHERE matches any scope on delete (what `ip route del` sends).
            .scope(NlScope::NoWhere)
            .priority(route.effective_metric());
        if let Some(oif) = route.oif {
            b = b.output_interface(oif);
        }
        match self.handle().route().del(b.build()).execute().await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = Error::netlink(
                    format!("deleting route {}{}", describe(route), self.where_()),
                    e,
                );
                if err.is_not_found() {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Makes the kernel's Seam-protocol routes equal `desired`: adds missing ones, replaces
    /// changed ones, deletes Seam routes that are no longer desired, and never touches routes
    /// of any other protocol (a desired prefix held by one is reported as a conflict).
    /// Invalid input fails before anything is changed.
    pub async fn reconcile(&self, desired: &[Route]) -> Result<ReconcileReport> {
        let existing: Vec<Route> = self
            .all_routes()
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let p = plan(&existing, desired)?;
        let mut report = ReconcileReport {
            unchanged: p.unchanged.len(),
            conflicts: p.conflicts,
            ..Default::default()
        };
        for r in p.delete {
            match self.delete_route(&r).await {
                Ok(_) => report.deleted.push(r),
                Err(e) => report.failed.push((r, e.to_string())),
            }
        }
        for r in p.replace {
            match self.replace_route(&r).await {
                Ok(()) => report.replaced.push(r),
                Err(e) => report.failed.push((r, e.to_string())),
            }
        }
        for r in p.add {
            match self.replace_route(&r).await {
                Ok(()) => report.added.push(r),
                Err(e) => report.failed.push((r, e.to_string())),
            }
        }
        Ok(report)
    }
}

/// `ip route`-style text for error messages.
fn describe(r: &Route) -> String {
    let mut s = r.dst.to_string();
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" oif {oif}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    s.push_str(&format!(" table {} proto {}", r.table, r.protocol));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    /// A route as the kernel lists it (metric filled in, oif resolved).
    fn listed(r: Route) -> Route {
        let m = r.effective_metric();
        Route {
            metric: Some(m),
            ..r
        }
    }

    #[test]
    fn plan_adds_keeps_replaces_and_deletes_only_seam_routes() {
        let keep = Route::via(net("10.1.0.0/26"), ip("192.168.0.2"));
        let change = Route::via(net("10.2.0.0/26"), ip("192.168.0.3"));
        let new = Route::dev(net("10.9.0.5/32"), 7);
        let stale = Route::via(net("10.3.0.0/26"), ip("192.168.0.4"));
        let foreign = Route::via(net("10.4.0.0/26"), ip("192.168.0.5")).with_protocol(4);
        let existing = vec![
            listed(keep.clone().with_oif(2)),
            listed(Route::via(net("10.2.0.0/26"), ip("192.168.0.9")).with_oif(2)),
            listed(stale.clone().with_oif(2)),
            listed(foreign.clone()),
        ];
        let desired = vec![keep.clone(), change.clone(), new.clone()];
        let p = plan(&existing, &desired).unwrap();
        assert_eq!(p.unchanged, vec![keep]);
        assert_eq!(p.replace, vec![change]);
        assert_eq!(p.add, vec![new]);
        assert_eq!(p.delete, vec![listed(stale.with_oif(2))]);
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn plan_never_replaces_a_foreign_route_with_the_same_key() {
        let foreign = listed(Route::via(net("10.4.0.0/26"), ip("192.168.0.5")).with_protocol(12));
        let desired = Route::via(net("10.4.0.0/26"), ip("192.168.0.6"));
        let p = plan(
            std::slice::from_ref(&foreign),
            std::slice::from_ref(&desired),
        )
        .unwrap();
        assert!(p.add.is_empty() && p.replace.is_empty() && p.delete.is_empty());
        assert_eq!(p.conflicts, vec![(desired, foreign)]);
    }

    #[test]
    fn plan_same_prefix_different_metric_is_a_different_route() {
        let foreign = listed(Route::via(net("10.4.0.0/26"), ip("192.168.0.5")).with_protocol(12));
        let desired = Route::via(net("10.4.0.0/26"), ip("192.168.0.6")).with_metric(50);
        let p = plan(&[foreign], std::slice::from_ref(&desired)).unwrap();
        assert_eq!(p.add, vec![desired]);
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn plan_ipv6_default_metric_matches_listed_1024() {
        let r = Route::via(net("fd00:1::/64"), ip("fd00::2"));
        let p = plan(&[listed(r.clone().with_oif(3))], std::slice::from_ref(&r)).unwrap();
        assert_eq!(p.unchanged, vec![r]);
    }

    #[test]
    fn plan_rejects_bad_input_naming_the_route() {
        let host_bits = Route::via(net("10.0.0.1/24"), ip("192.168.0.1"));
        let e = plan(&[], &[host_bits]).unwrap_err().to_string();
        assert!(e.contains("10.0.0.1/24") && e.contains("host bits"), "{e}");

        let mixed = Route::via(net("10.0.0.0/24"), ip("fd00::1"));
        let e = plan(&[], &[mixed]).unwrap_err().to_string();
        assert!(e.contains("gateway fd00::1") && e.contains("family"), "{e}");

        let foreign = Route::via(net("10.0.0.0/24"), ip("192.168.0.1")).with_protocol(4);
        let e = plan(&[], &[foreign]).unwrap_err().to_string();
        assert!(e.contains("protocol 4"), "{e}");

        let a = Route::via(net("10.0.0.0/24"), ip("192.168.0.1"));
        let e = plan(&[], &[a.clone(), a]).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");

        let nowhere = Route {
            gateway: None,
            ..Route::via(net("10.0.0.0/24"), ip("192.168.0.1"))
        };
        let e = plan(&[], &[nowhere]).unwrap_err().to_string();
        assert!(e.contains("gateway or an output interface"), "{e}");
    }

    #[test]
    fn plan_deletes_duplicate_seam_routes_at_one_key() {
        let r = Route::via(net("10.1.0.0/26"), ip("192.168.0.2"));
        let dup = listed(Route::via(net("10.1.0.0/26"), ip("192.168.0.7")).with_oif(2));
        let p = plan(
            &[listed(r.clone().with_oif(2)), dup.clone()],
            std::slice::from_ref(&r),
        )
        .unwrap();
        assert_eq!(p.unchanged, vec![r]);
        assert_eq!(p.delete, vec![dup]);
    }
}
