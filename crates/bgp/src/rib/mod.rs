//! RIBs, decision process and route reflection (RFC 4271 §3.2 and §9, RFC 4456), sans-IO.
//!
//! Data flow: `apply_update` / `originate` change a peer's Adj-RIB-In (or the local table) and the
//! candidate list of each touched prefix in the Loc-RIB; the decision process re-selects the best
//! path; when it changed, the prefix is marked dirty for every peer that negotiated its family.
//! `next_updates` later resolves a peer's dirty prefixes against the current Loc-RIB (export
//! rules, per-peer attribute rewriting), compares with the peer's Adj-RIB-Out, and emits UPDATEs
//! grouped by outbound attribute set. Resolving lazily means a prefix that flaps ten times before
//! a slow peer drains is exported once, and the pending state per peer is one set of prefixes.
//!
//! Graceful Restart, helper side (RFC 4724 §4.2): when a session that negotiated it ends
//! without a NOTIFICATION, `peer_down_graceful` keeps the peer's routes of the families it
//! preserves, marked stale: they stay decision candidates and keep being advertised, and the
//! peer's entry stays in the RIB without a session (not an export target). When the same
//! neighbor comes back, `peer_up_restarting` revives that entry under the *same* `PeerId`, so
//! every stale path keeps its identity (no re-keying of the Loc-RIB, no churn towards other
//! peers, and the never-send-back rule keeps working for the new session). A re-announced
//! route clears its stale mark; `end_of_rib` (the peer's End-of-RIB for a family) removes the
//! routes of that family still stale, and `purge_stale` (the restart timer expired) removes
//! all of them. The caller keeps the timers; the RIB only keeps the marks.
//!
//! Nothing here reads a clock or touches a socket: time comes in as `Instant` arguments.

mod decision;
mod export;
mod intern;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use crate::types::{Family, Prefix};
use crate::wire::{MpNextHop, MpReach, MpUnreach, Nlri, Origin, PathAttributes, Update};

use intern::Interner;

/// Identity and reflection settings of this speaker, needed by import checks and export rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// RFC 4456 CLUSTER_ID; the configuration layer defaults it to `router_id`.
    pub cluster_id: Ipv4Addr,
}

impl RibConfig {
    /// A configuration whose cluster id is the router id (the RFC 4456 default).
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        RibConfig { local_as, router_id, cluster_id: router_id }
    }
}

/// Handle of one established session inside the RIB. Never reused for another neighbor's
/// session, so a late event for a session that went down cannot touch its successor. The one
/// exception is explicit: `Rib::peer_up_restarting` gives a restarted session the id of the
/// stale routes it takes over (RFC 4724), and the caller tells old and new sessions apart.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// What the RIB needs to know about an established session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The neighbor's address (decision tie-break, display).
    pub address: IpAddr,
    /// Our address on this session: the next hop we put on routes for eBGP peers and on
    /// locally originated routes without one.
    pub local_address: IpAddr,
    pub remote_as: u32,
    pub remote_id: Ipv4Addr,
    /// RFC 4456 client of this reflector.
    pub route_reflector_client: bool,
    /// Families negotiated on the session; only routes of these are sent.
    pub families: Vec<Family>,
}

/// Where a route came from, for display and for the never-send-back rule.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteSource {
    Peer(PeerId, IpAddr),
    /// Originated by this speaker (`Rib::originate`).
    Local,
}

/// One route as shown by the management API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub prefix: Prefix,
    pub attrs: Arc<PathAttributes>,
    pub source: RouteSource,
    /// When the route was received / originated (its age origin).
    pub since: Instant,
    /// Whether this path is the Loc-RIB's best for the prefix.
    pub best: bool,
}

/// Per-session route counters, as `gobgp neighbor` shows them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Paths in the Adj-RIB-In, including those the import checks rejected.
    pub received: usize,
    /// Paths that passed the import checks and are candidates in the Loc-RIB.
    pub accepted: usize,
    /// Prefixes in the Adj-RIB-Out.
    pub advertised: usize,
}

/// What one received UPDATE did, for logs and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// NLRI announced (IPv4 field plus MP_REACH), accepted or not.
    pub announced: usize,
    /// NLRI withdrawn (IPv4 field plus MP_UNREACH).
    pub withdrawn: usize,
    /// Announced NLRI that failed an import check and were treated as withdrawn.
    pub rejected: usize,
    /// Why they were rejected (one entry per attribute set), for the log.
    pub reject_reasons: Vec<RejectReason>,
    /// Prefixes whose best path changed.
    pub best_changed: usize,
    /// The UPDATE was an End-of-RIB marker for this family (RFC 4724 §2).
    pub end_of_rib: Option<Family>,
    /// The peer id is unknown (the session already went down); nothing was applied.
    pub unknown_peer: bool,
}

/// Why an announced attribute set was treated as withdrawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// RFC 4456 §8: ORIGINATOR_ID equals our router id (the route is our own, reflected back).
    OriginatorIsUs,
    /// RFC 4456 §8: our CLUSTER_ID is already in the CLUSTER_LIST (reflection loop).
    ClusterLoop,
    /// RFC 4271 §9.1.2: our AS is in the AS_PATH of an eBGP-learned route.
    AsPathLoop,
    /// IPv4 NLRI without a NEXT_HOP attribute (RFC 4271 §5.1.3 makes it mandatory).
    MissingNextHop,
}

/// Behaviour-relevant facts about a route's source, copied into each path so the decision and
/// export do not need a peer-table lookup per comparison.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourceMeta {
    pub(crate) ebgp: bool,
    pub(crate) client: bool,
    pub(crate) router_id: Ipv4Addr,
}

/// One candidate path of a Loc-RIB prefix.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    pub(crate) source: RouteSource,
    /// ADD-PATH identifier from the source (0 when none).
    pub(crate) path_id: u32,
    pub(crate) attrs: Arc<PathAttributes>,
    pub(crate) since: Instant,
    pub(crate) meta: SourceMeta,
}

impl Path {
    /// Same path identity and same attributes: nothing to re-announce.
    fn same_as(&self, other: &Path) -> bool {
        self.source == other.source && self.path_id == other.path_id && Arc::ptr_eq(&self.attrs, &other.attrs)
    }
}

/// All candidates of one prefix plus the index of the selected one.
#[derive(Debug, Default)]
struct Dest {
    paths: Vec<Path>,
    best: Option<usize>,
}

impl Dest {
    fn best_path(&self) -> Option<&Path> {
        self.best.and_then(|i| self.paths.get(i))
    }
}

/// One Adj-RIB-In entry. Rejected routes are kept (flagged) so `received` and the adj-in view
/// show what the peer sent, but they are not decision candidates.
#[derive(Clone, Debug)]
struct InRoute {
    attrs: Arc<PathAttributes>,
    since: Instant,
    accepted: bool,
    /// Kept across a graceful restart of the peer and not re-announced yet (RFC 4724 §4.2).
    stale: bool,
}

/// What we advertised (Adj-RIB-Out) or want to advertise (pending) for one prefix: the
/// outbound attribute set (interned in the outbound interner) and the Loc-RIB route behind it.
#[derive(Clone, Debug)]
struct OutRoute {
    attrs: Arc<PathAttributes>,
    source: RouteSource,
    since: Instant,
}

/// Prefixes waiting to be announced with one outbound attribute set. Entries may be stale (the
/// prefix was re-queued elsewhere since); `Peer::want` is the authority, checked on emission.
#[derive(Debug)]
struct Group {
    attrs: Arc<PathAttributes>,
    family: Family,
    prefixes: Vec<Prefix>,
}

/// Key of a pending group: the outbound attribute allocation (held alive by the group itself,
/// so the address cannot be reused while the key exists) and the family.
type GroupKey = (usize, Family);

/// Per-session state: Adj-RIB-In, Adj-RIB-Out and the outbound queue.
#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    ebgp: bool,
    /// A session is up. False while only stale routes are held after a graceful down: the
    /// entry is then no export target and has nothing queued.
    up: bool,
    /// Adj-RIB-In keyed by (prefix, ADD-PATH id or 0).
    adj_in: HashMap<(Prefix, u32), InRoute>,
    accepted: usize,
    /// Adj-RIB-Out: what the peer has been told.
    adj_out: HashMap<Prefix, OutRoute>,
    /// Prefixes whose export must be re-evaluated (best changed, or refresh).
    dirty: BTreeSet<Prefix>,
    /// Prefixes to re-announce even if the Adj-RIB-Out says the peer has them (ROUTE-REFRESH).
    resend: HashSet<Prefix>,
    /// Resolved pending changes: `Some` = announce, `None` = withdraw.
    want: HashMap<Prefix, Option<OutRoute>>,
    /// Pending announcements grouped by outbound attribute set, emitted in FIFO order.
    groups: HashMap<GroupKey, Group>,
    order: VecDeque<GroupKey>,
    /// Pending withdrawals (prefixes previously advertised).
    withdrawals: Vec<Prefix>,
    /// Families whose End-of-RIB is still owed after the initial dump.
    eor_pending: Vec<Family>,
}

impl Peer {
    fn negotiated(&self, family: Family) -> bool {
        self.up && self.info.families.contains(&family)
    }

    /// Forget everything about the outbound side (the session that received it is gone).
    fn clear_outbound(&mut self) {
        self.adj_out.clear();
        self.dirty.clear();
        self.resend.clear();
        self.want.clear();
        self.groups.clear();
        self.order.clear();
        self.withdrawals.clear();
        self.eor_pending.clear();
    }

    /// Record the resolved export of `prefix`, cancelling or replacing any earlier pending change.
    fn queue(&mut self, prefix: Prefix, desired: Option<OutRoute>) {
        let force = self.resend.remove(&prefix);
        let current = self.adj_out.get_mut(&prefix);
        let unchanged = match (&desired, current) {
            (None, None) => true,
            (Some(d), Some(cur)) if !force && Arc::ptr_eq(&d.attrs, &cur.attrs) => {
                // Same attributes on the wire; only the route behind them changed.
                cur.source = d.source;
                cur.since = d.since;
                true
            }
            _ => false,
        };
        if unchanged {
            self.want.remove(&prefix);
            return;
        }
        let already = match (self.want.get(&prefix), &desired) {
            (Some(None), None) => true,
            (Some(Some(w)), Some(d)) => Arc::ptr_eq(&w.attrs, &d.attrs),
            _ => false,
        };
        if already {
            self.want.insert(prefix, desired);
            return;
        }
        match &desired {
            None => self.withdrawals.push(prefix),
            Some(d) => {
                let family = Family::of_prefix(&prefix);
                let key = (Arc::as_ptr(&d.attrs) as usize, family);
                let attrs = d.attrs.clone();
                let order = &mut self.order;
                self.groups
                    .entry(key)
                    .or_insert_with(|| {
                        order.push_back(key);
                        Group { attrs, family, prefixes: Vec::new() }
                    })
                    .prefixes
                    .push(prefix);
            }
        }
        self.want.insert(prefix, desired);
    }

    /// Emit pending withdrawals and groups, then End-of-RIB markers, up to `max` UPDATEs.
    fn emit(&mut self, max: usize) -> Vec<Update> {
        let mut out = Vec::new();
        if !self.withdrawals.is_empty() {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for prefix in std::mem::take(&mut self.withdrawals) {
                if matches!(self.want.get(&prefix), Some(None)) {
                    match prefix {
                        Prefix::V4(_) => v4.push(prefix),
                        Prefix::V6(_) => v6.push(prefix),
                    }
                }
            }
            for (family, list) in [(Family::IPV4_UNICAST, v4), (Family::IPV6_UNICAST, v6)] {
                if list.is_empty() {
                    continue;
                }
                if out.len() >= max {
                    self.withdrawals.extend(list);
                    continue;
                }
                let mut nlri = Vec::with_capacity(list.len());
                for prefix in list {
                    self.want.remove(&prefix);
                    self.adj_out.remove(&prefix);
                    nlri.push(Nlri::from(prefix));
                }
                out.push(withdraw_update(family, nlri));
            }
        }
        while out.len() < max {
            let Some(key) = self.order.pop_front() else { break };
            let Some(group) = self.groups.remove(&key) else { continue };
            let mut nlri = Vec::with_capacity(group.prefixes.len());
            for prefix in group.prefixes {
                let current = matches!(self.want.get(&prefix), Some(Some(w)) if Arc::ptr_eq(&w.attrs, &group.attrs));
                if !current {
                    continue;
                }
                if let Some(Some(route)) = self.want.remove(&prefix) {
                    self.adj_out.insert(prefix, route);
                    nlri.push(Nlri::from(prefix));
                }
            }
            if !nlri.is_empty() {
                out.push(announce_update(&group.attrs, group.family, nlri));
            }
        }
        if self.dirty.is_empty() && self.want.is_empty() {
            while out.len() < max && !self.eor_pending.is_empty() {
                out.push(Update::end_of_rib(self.eor_pending.remove(0)));
            }
        }
        out
    }
}

/// A withdrawal UPDATE: IPv4 in the Withdrawn Routes field, others in MP_UNREACH.
fn withdraw_update(family: Family, withdrawn: Vec<Nlri>) -> Update {
    if family == Family::IPV4_UNICAST {
        Update { withdrawn, ..Update::default() }
    } else {
        Update { mp_unreach: Some(MpUnreach { family, withdrawn }), ..Update::default() }
    }
}

/// An announcement UPDATE. The RIB keeps every route's next hop in `PathAttributes::next_hop`;
/// on the wire IPv4 uses the NEXT_HOP attribute and other families the MP_REACH next hop.
fn announce_update(attrs: &PathAttributes, family: Family, nlri: Vec<Nlri>) -> Update {
    if family == Family::IPV4_UNICAST {
        Update { attributes: attrs.clone(), nlri, ..Update::default() }
    } else {
        let mut attributes = attrs.clone();
        // `export` always sets a next hop of the prefix's family; `::` only guards the type.
        let next_hop = attributes.next_hop.take().unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        Update {
            attributes,
            mp_reach: Some(MpReach { family, next_hop: MpNextHop::Single(next_hop), nlri }),
            ..Update::default()
        }
    }
}

/// The routing information bases of one speaker: Adj-RIBs-In, the Loc-RIB (all candidates,
/// best selected), Adj-RIBs-Out, and the pending outbound changes per peer.
#[derive(Debug)]
pub struct Rib {
    config: RibConfig,
    /// Attribute sets as received / originated.
    inbound: Interner,
    /// Attribute sets after per-peer export rewriting.
    outbound: Interner,
    peers: BTreeMap<PeerId, Peer>,
    next_peer: u32,
    loc: HashMap<Prefix, Dest>,
    /// Prefixes whose best path changed since the last `take_best_changes`.
    best_changes: HashSet<Prefix>,
}

/// Live entries of the two attribute interners (for tests and metrics).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct InternerCounts {
    pub inbound: usize,
    pub outbound: usize,
}

impl Rib {
    pub fn new(config: RibConfig) -> Self {
        Rib {
            config,
            inbound: Interner::default(),
            outbound: Interner::default(),
            peers: BTreeMap::new(),
            next_peer: 1,
            loc: HashMap::new(),
            best_changes: HashSet::new(),
        }
    }

    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    /// The session's registration, if it is up or its routes are held stale after a graceful
    /// down (the info is then that of the last session).
    pub fn peer_info(&self, peer: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&peer).map(|p| &p.info)
    }

    /// Sessions currently registered and up (entries only holding stale routes are left out).
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &PeerInfo)> {
        self.peers.iter().filter(|(_, p)| p.up).map(|(id, p)| (*id, &p.info))
    }

    /// Whether `peer` has a session up (false for unknown peers and for entries that only
    /// hold stale routes).
    pub fn is_up(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.up)
    }

    /// Adj-RIB-In entries of `peer` still marked stale (RFC 4724); 0 for an unknown peer.
    pub fn stale_count(&self, peer: PeerId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.adj_in.values().filter(|r| r.stale).count())
    }

    /// Session established: registers the peer and queues the whole eligible Loc-RIB for it,
    /// followed by one End-of-RIB per negotiated family once that dump is drained.
    pub fn peer_up(&mut self, info: PeerInfo) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let mut families = info.families.clone();
        families.sort();
        families.dedup();
        let dirty: BTreeSet<Prefix> =
            self.loc.keys().filter(|p| families.contains(&Family::of_prefix(p))).copied().collect();
        let peer = Peer {
            ebgp: info.remote_as != self.config.local_as,
            up: true,
            info,
            adj_in: HashMap::new(),
            accepted: 0,
            adj_out: HashMap::new(),
            dirty,
            resend: HashSet::new(),
            want: HashMap::new(),
            groups: HashMap::new(),
            order: VecDeque::new(),
            withdrawals: Vec::new(),
            eor_pending: families,
        };
        self.peers.insert(id, peer);
        id
    }

    /// Session went down: drop its Adj-RIB-In/Out, re-run the decision for the prefixes it
    /// contributed to, and queue the resulting changes for the other peers.
    pub fn peer_down(&mut self, peer: PeerId) {
        let Some(state) = self.peers.remove(&peer) else { return };
        let mut prefixes: Vec<Prefix> =
            state.adj_in.iter().filter(|(_, r)| r.accepted).map(|((p, _), _)| *p).collect();
        prefixes.sort();
        prefixes.dedup();
        for prefix in prefixes {
            self.change_dest(prefix, |paths| paths.retain(|p| !matches!(p.source, RouteSource::Peer(id, _) if id == peer)));
        }
        drop(state);
        self.inbound.sweep();
        self.outbound.sweep();
    }

    /// Session went down without a NOTIFICATION and Graceful Restart applies (RFC 4724 §4.2):
    /// the peer's Adj-RIB-In routes of `families` are kept, marked stale, and stay decision
    /// candidates (nothing changes for other peers); routes of other families are removed as
    /// `peer_down` would. The Adj-RIB-Out and pending queue are dropped (the new session gets
    /// a full dump). The entry stays without a session until `peer_up_restarting`,
    /// `purge_stale` or `peer_down`. Routes already stale from an earlier restart stay stale.
    /// Returns the number of stale routes kept; when that is 0 the entry is removed, as by
    /// `peer_down`. An unknown or already-down peer returns its current stale count.
    pub fn peer_down_graceful(&mut self, peer: PeerId, families: &[Family]) -> usize {
        let Some(state) = self.peers.get_mut(&peer) else { return 0 };
        if !state.up {
            return state.adj_in.values().filter(|r| r.stale).count();
        }
        state.up = false;
        state.clear_outbound();
        let mut kept = 0;
        let mut dropped = Vec::new();
        for ((prefix, path_id), route) in state.adj_in.iter_mut() {
            if families.contains(&Family::of_prefix(prefix)) {
                route.stale = true;
                kept += 1;
            } else {
                dropped.push(Nlri { path_id: Some(*path_id), prefix: *prefix });
            }
        }
        if kept == 0 {
            self.peer_down(peer);
            return 0;
        }
        for nlri in dropped {
            self.withdraw_in(peer, &nlri);
        }
        self.outbound.sweep();
        kept
    }

    /// A session came up for a neighbor whose routes are held stale under `stale_from`
    /// (RFC 4724 §4.2): the entry is revived under the same id, which is returned, with the
    /// new session's `info`; its stale routes stay stale until re-announced, End-of-RIB
    /// (`end_of_rib`) or `purge_stale`. Stale routes of families the new session did not
    /// negotiate are removed at once, and all of them when the session type changed between
    /// iBGP and eBGP (they were imported under the other rules). The whole eligible Loc-RIB is
    /// queued for the session, then End-of-RIB, as `peer_up` does. When `stale_from` is
    /// unknown this is `peer_up`; when it is still up, it is first taken down gracefully for
    /// all its families (a new connection replaced an Established one, RFC 4724 §4.2).
    pub fn peer_up_restarting(&mut self, info: PeerInfo, stale_from: PeerId) -> PeerId {
        let Some(state) = self.peers.get(&stale_from) else { return self.peer_up(info) };
        if state.up {
            let families = state.info.families.clone();
            if self.peer_down_graceful(stale_from, &families) == 0 {
                return self.peer_up(info);
            }
        }
        let ebgp = info.remote_as != self.config.local_as;
        let mut families = info.families.clone();
        families.sort();
        families.dedup();
        let Some(state) = self.peers.get_mut(&stale_from) else { return self.peer_up(info) };
        let type_changed = state.ebgp != ebgp;
        let meta = SourceMeta { ebgp, client: info.route_reflector_client, router_id: info.remote_id };
        let old_source = RouteSource::Peer(stale_from, state.info.address);
        let new_source = RouteSource::Peer(stale_from, info.address);
        let meta_changed = state.info.route_reflector_client != info.route_reflector_client
            || state.info.remote_id != info.remote_id
            || old_source != new_source;
        let mut purge = Vec::new();
        let mut retag = Vec::new();
        for ((prefix, path_id), route) in &state.adj_in {
            if type_changed || !families.contains(&Family::of_prefix(prefix)) {
                purge.push(Nlri { path_id: Some(*path_id), prefix: *prefix });
            } else if meta_changed && route.accepted {
                retag.push((*prefix, *path_id));
            }
        }
        state.ebgp = ebgp;
        state.info = info;
        state.up = true;
        state.clear_outbound();
        state.dirty = self.loc.keys().filter(|p| families.contains(&Family::of_prefix(p))).copied().collect();
        state.eor_pending = families;
        for nlri in purge {
            self.withdraw_in(stale_from, &nlri);
        }
        // The decision uses the source's router id and client flag: refresh them in place.
        for (prefix, path_id) in retag {
            self.change_dest(prefix, |paths| {
                for path in paths.iter_mut().filter(|p| p.source == old_source && p.path_id == path_id) {
                    path.source = new_source;
                    path.meta = meta;
                }
            });
        }
        stale_from
    }

    /// The peer's End-of-RIB for `family` (RFC 4724 §4.2): its routes of that family still
    /// marked stale were not re-announced after the restart, so they are removed and the
    /// resulting withdrawals queued. Returns how many were removed.
    pub fn end_of_rib(&mut self, peer: PeerId, family: Family) -> usize {
        self.purge_where(peer, |prefix| Family::of_prefix(prefix) == family)
    }

    /// The restart (or stale-routes) timer expired: every route of `peer` still stale is
    /// removed. An entry without a session is then removed entirely. Returns how many routes
    /// were removed.
    pub fn purge_stale(&mut self, peer: PeerId) -> usize {
        let removed = self.purge_where(peer, |_| true);
        if self.peers.get(&peer).is_some_and(|p| !p.up) {
            self.peer_down(peer);
        }
        removed
    }

    /// Remove `peer`'s stale Adj-RIB-In routes whose prefix matches `which`.
    fn purge_where(&mut self, peer: PeerId, which: impl Fn(&Prefix) -> bool) -> usize {
        let Some(state) = self.peers.get(&peer) else { return 0 };
        let stale: Vec<Nlri> = state
            .adj_in
            .iter()
            .filter(|((prefix, _), route)| route.stale && which(prefix))
            .map(|((prefix, path_id), _)| Nlri { path_id: Some(*path_id), prefix: *prefix })
            .collect();
        for nlri in &stale {
            self.withdraw_in(peer, nlri);
        }
        if !stale.is_empty() {
            self.inbound.sweep();
        }
        stale.len()
    }

    /// Process a received UPDATE (see the module docs). Announced routes failing an import
    /// check are treated as withdrawn (kept in the Adj-RIB-In, flagged, not candidates).
    pub fn apply_update(&mut self, peer: PeerId, update: &Update, now: Instant) -> UpdateStats {
        let mut stats = UpdateStats::default();
        let Some(state) = self.peers.get(&peer).filter(|p| p.up) else {
            stats.unknown_peer = true;
            return stats;
        };
        if let Some(family) = update.as_end_of_rib() {
            stats.end_of_rib = Some(family);
            return stats;
        }
        let meta = SourceMeta {
            ebgp: state.ebgp,
            client: state.info.route_reflector_client,
            router_id: state.info.remote_id,
        };
        let source = RouteSource::Peer(peer, state.info.address);

        let unreach = update.mp_unreach.iter().flat_map(|u| u.withdrawn.iter());
        for nlri in update.withdrawn.iter().chain(unreach) {
            stats.withdrawn += 1;
            if self.withdraw_in(peer, nlri) {
                stats.best_changed += 1;
            }
        }

        if !update.nlri.is_empty() {
            let checked = self.import(meta, &update.attributes, update.attributes.next_hop);
            self.announce_all(peer, source, meta, &update.nlri, checked, now, &mut stats);
        }
        if let Some(reach) = &update.mp_reach {
            if !reach.nlri.is_empty() {
                let checked = self.import(meta, &update.attributes, Some(reach.next_hop.address()));
                self.announce_all(peer, source, meta, &reach.nlri, checked, now, &mut stats);
            }
        }
        stats
    }

    /// Locally originated route (management API, node agent blocks). Replaces any earlier
    /// origination of the same prefix. A missing ORIGIN is set to IGP (it is mandatory).
    pub fn originate(&mut self, prefix: Prefix, mut attrs: PathAttributes, now: Instant) {
        if attrs.origin.is_none() {
            attrs.origin = Some(Origin::Igp);
        }
        let attrs = self.inbound.intern(attrs);
        let path = Path {
            source: RouteSource::Local,
            path_id: 0,
            attrs,
            since: now,
            meta: SourceMeta { ebgp: false, client: false, router_id: self.config.router_id },
        };
        self.change_dest(prefix, move |paths| {
            match paths.iter_mut().find(|p| p.source == RouteSource::Local) {
                Some(existing) if Arc::ptr_eq(&existing.attrs, &path.attrs) => {}
                Some(existing) => *existing = path,
                None => paths.push(path),
            }
        });
    }

    /// Stop originating `prefix`. Returns whether it was originated.
    pub fn withdraw_originated(&mut self, prefix: Prefix) -> bool {
        let present = self
            .loc
            .get(&prefix)
            .is_some_and(|d| d.paths.iter().any(|p| p.source == RouteSource::Local));
        if present {
            self.change_dest(prefix, |paths| paths.retain(|p| p.source != RouteSource::Local));
        }
        present
    }

    /// Drain up to `max_updates` pending outbound UPDATEs for `peer`, updating its Adj-RIB-Out.
    /// Each UPDATE carries one outbound attribute set with every pending prefix sharing it
    /// (the codec splits it into messages); withdrawals of a family are batched into one.
    /// Once everything queued is drained, the End-of-RIB owed after `peer_up` is emitted once
    /// per family. An unknown peer yields nothing.
    pub fn next_updates(&mut self, peer: PeerId, max_updates: usize) -> Vec<Update> {
        if max_updates == 0 {
            return Vec::new();
        }
        self.resolve(peer);
        self.peers.get_mut(&peer).map_or_else(Vec::new, |state| state.emit(max_updates))
    }

    /// Whether `peer` has queued work. May be true while the queued changes turn out to cancel
    /// out, in which case `next_updates` returns nothing and this becomes false.
    pub fn has_pending(&self, peer: PeerId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| !p.dirty.is_empty() || !p.want.is_empty() || !p.eor_pending.is_empty())
    }

    /// Re-queue the full table of one family for `peer` (ROUTE-REFRESH received, RFC 2918):
    /// every exportable prefix is announced again even if already advertised.
    pub fn refresh(&mut self, peer: PeerId, family: Family) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        if !state.negotiated(family) {
            return;
        }
        for prefix in self.loc.keys().filter(|p| Family::of_prefix(p) == family) {
            state.dirty.insert(*prefix);
        }
        for prefix in state.adj_out.keys().filter(|p| Family::of_prefix(p) == family) {
            state.dirty.insert(*prefix);
            state.resend.insert(*prefix);
        }
    }

    /// Best-path changes since the last call, for the FIB hook: `(prefix, Some(best attributes))`
    /// or `(prefix, None)` when no route is left. Sorted by prefix. A prefix that changed and
    /// changed back is still reported (with its current best), which a FIB applies idempotently.
    pub fn take_best_changes(&mut self) -> Vec<(Prefix, Option<Arc<PathAttributes>>)> {
        let mut prefixes: Vec<Prefix> = self.best_changes.drain().collect();
        prefixes.sort();
        prefixes
            .into_iter()
            .map(|p| (p, self.loc.get(&p).and_then(|d| d.best_path()).map(|b| b.attrs.clone())))
            .collect()
    }

    /// Loc-RIB of one family: every candidate path, sorted by prefix, best path first.
    pub fn loc_rib(&self, family: Family) -> Vec<RouteView> {
        let mut prefixes: Vec<&Prefix> = self.loc.keys().filter(|p| Family::of_prefix(p) == family).collect();
        prefixes.sort();
        let mut out = Vec::new();
        for prefix in prefixes {
            let dest = &self.loc[prefix];
            let best = dest.best;
            let mut indexes: Vec<usize> = (0..dest.paths.len()).collect();
            indexes.sort_by_key(|&i| Some(i) != best);
            for i in indexes {
                let p = &dest.paths[i];
                out.push(RouteView {
                    prefix: *prefix,
                    attrs: p.attrs.clone(),
                    source: p.source,
                    since: p.since,
                    best: Some(i) == best,
                });
            }
        }
        out
    }

    /// Adj-RIB-In of one family as received (import-rejected paths included, never best),
    /// sorted by prefix then path id.
    pub fn adj_rib_in(&self, peer: PeerId, family: Family) -> Vec<RouteView> {
        let Some(state) = self.peers.get(&peer) else { return Vec::new() };
        let source = RouteSource::Peer(peer, state.info.address);
        let mut keys: Vec<&(Prefix, u32)> =
            state.adj_in.keys().filter(|(p, _)| Family::of_prefix(p) == family).collect();
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let route = &state.adj_in[key];
                let best = route.accepted
                    && self.loc.get(&key.0).and_then(|d| d.best_path()).is_some_and(|b| {
                        b.source == source && b.path_id == key.1
                    });
                RouteView { prefix: key.0, attrs: route.attrs.clone(), source, since: route.since, best }
            })
            .collect()
    }

    /// Adj-RIB-Out of one family: what was sent, with the outbound attributes, sorted by prefix.
    pub fn adj_rib_out(&self, peer: PeerId, family: Family) -> Vec<RouteView> {
        let Some(state) = self.peers.get(&peer) else { return Vec::new() };
        let mut prefixes: Vec<&Prefix> =
            state.adj_out.keys().filter(|p| Family::of_prefix(p) == family).collect();
        prefixes.sort();
        prefixes
            .into_iter()
            .map(|prefix| {
                let route = &state.adj_out[prefix];
                RouteView { prefix: *prefix, attrs: route.attrs.clone(), source: route.source, since: route.since, best: true }
            })
            .collect()
    }

    /// Received / accepted / advertised counters; zero for an unknown peer.
    pub fn peer_counts(&self, peer: PeerId) -> PeerCounts {
        self.peers.get(&peer).map_or_else(PeerCounts::default, |p| PeerCounts {
            received: p.adj_in.len(),
            accepted: p.accepted,
            advertised: p.adj_out.len(),
        })
    }

    /// Live attribute sets in the inbound and outbound interners.
    pub fn interner_counts(&self) -> InternerCounts {
        InternerCounts { inbound: self.inbound.live(), outbound: self.outbound.live() }
    }

    /// Number of prefixes with at least one candidate path.
    pub fn prefix_count(&self) -> usize {
        self.loc.len()
    }

    // ---- internals ----

    /// Import checks and normalisation of one received attribute set; `Err` = treat as withdraw.
    fn import(
        &mut self,
        meta: SourceMeta,
        attrs: &PathAttributes,
        next_hop: Option<IpAddr>,
    ) -> Result<Arc<PathAttributes>, (Arc<PathAttributes>, RejectReason)> {
        let mut a = attrs.clone();
        a.next_hop = next_hop;
        if meta.ebgp {
            // RFC 4271 §5.1.5: LOCAL_PREF from an external peer is ignored. RFC 7606 §7.9 and
            // §7.10: ORIGINATOR_ID and CLUSTER_LIST from an external peer are discarded, so an
            // eBGP peer cannot make its routes fail our loop checks or steer the tie-breaks.
            a.local_pref = None;
            a.originator_id = None;
            a.cluster_list.clear();
        }
        let reason = if a.next_hop.is_none() {
            Some(RejectReason::MissingNextHop)
        } else if a.originator_id == Some(self.config.router_id) {
            Some(RejectReason::OriginatorIsUs)
        } else if a.cluster_list.contains(&self.config.cluster_id) {
            Some(RejectReason::ClusterLoop)
        } else if meta.ebgp && a.as_path.contains(self.config.local_as) {
            Some(RejectReason::AsPathLoop)
        } else {
            None
        };
        let shared = self.inbound.intern(a);
        match reason {
            None => Ok(shared),
            Some(r) => Err((shared, r)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn announce_all(
        &mut self,
        peer: PeerId,
        source: RouteSource,
        meta: SourceMeta,
        nlri: &[Nlri],
        checked: Result<Arc<PathAttributes>, (Arc<PathAttributes>, RejectReason)>,
        now: Instant,
        stats: &mut UpdateStats,
    ) {
        let (attrs, accepted) = match checked {
            Ok(a) => (a, true),
            Err((a, reason)) => {
                stats.reject_reasons.push(reason);
                (a, false)
            }
        };
        for n in nlri {
            stats.announced += 1;
            if !accepted {
                stats.rejected += 1;
            }
            if self.announce_in(peer, source, meta, n, &attrs, accepted, now) {
                stats.best_changed += 1;
            }
        }
    }

    /// One received announcement (implicit withdraw of the previous one with the same key).
    /// Returns whether the best path changed.
    #[allow(clippy::too_many_arguments)]
    fn announce_in(
        &mut self,
        peer: PeerId,
        source: RouteSource,
        meta: SourceMeta,
        nlri: &Nlri,
        attrs: &Arc<PathAttributes>,
        accepted: bool,
        now: Instant,
    ) -> bool {
        let path_id = nlri.path_id.unwrap_or(0);
        let key = (nlri.prefix, path_id);
        let Some(state) = self.peers.get_mut(&peer) else { return false };
        let previous = state.adj_in.get_mut(&key).map(|r| {
            let same = Arc::ptr_eq(&r.attrs, attrs) && r.accepted == accepted;
            if same {
                // Re-announced after a graceful restart: no longer stale.
                r.stale = false;
            }
            (same, r.accepted)
        });
        match previous {
            // A repeat of what we hold: nothing changes, the route keeps its age.
            Some((true, _)) => return false,
            Some((_, true)) => state.accepted -= 1,
            _ => {}
        }
        if accepted {
            state.accepted += 1;
        }
        let old = state.adj_in.insert(key, InRoute { attrs: attrs.clone(), since: now, accepted, stale: false });
        let changed = self.replace_candidate(nlri.prefix, source, meta, path_id, attrs, accepted, now);
        if let Some(old) = old {
            // After the Loc-RIB dropped its copy, so an unused set leaves the interner.
            self.inbound.release(old.attrs);
        }
        changed
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_candidate(
        &mut self,
        prefix: Prefix,
        source: RouteSource,
        meta: SourceMeta,
        path_id: u32,
        attrs: &Arc<PathAttributes>,
        accepted: bool,
        now: Instant,
    ) -> bool {
        let is_this = move |p: &Path| p.source == source && p.path_id == path_id;
        if accepted {
            let path = Path { source, path_id, attrs: attrs.clone(), since: now, meta };
            self.change_dest(prefix, move |paths| match paths.iter_mut().find(|p| is_this(p)) {
                Some(existing) => *existing = path,
                None => paths.push(path),
            })
        } else {
            if !self.loc.get(&prefix).is_some_and(|d| d.paths.iter().any(is_this)) {
                return false;
            }
            self.change_dest(prefix, move |paths| paths.retain(|p| !is_this(p)))
        }
    }

    /// One received withdrawal. Returns whether the best path changed.
    fn withdraw_in(&mut self, peer: PeerId, nlri: &Nlri) -> bool {
        let path_id = nlri.path_id.unwrap_or(0);
        let Some(state) = self.peers.get_mut(&peer) else { return false };
        let Some(old) = state.adj_in.remove(&(nlri.prefix, path_id)) else { return false };
        let mut changed = false;
        if old.accepted {
            state.accepted -= 1;
            changed = self.change_dest(nlri.prefix, |paths| {
                paths.retain(|p| !(matches!(p.source, RouteSource::Peer(id, _) if id == peer) && p.path_id == path_id))
            });
        }
        self.inbound.release(old.attrs);
        changed
    }

    /// Apply `edit` to the candidates of `prefix`, re-run the decision, and when the best path
    /// changed record it for the FIB and mark the prefix dirty for every peer of its family.
    fn change_dest(&mut self, prefix: Prefix, edit: impl FnOnce(&mut Vec<Path>)) -> bool {
        let dest = self.loc.entry(prefix).or_default();
        let before = dest.best_path().cloned();
        edit(&mut dest.paths);
        dest.best = decision::select_best(&dest.paths, self.config.local_as, self.config.router_id);
        let changed = match (&before, dest.best_path()) {
            (None, None) => false,
            (Some(a), Some(b)) => !a.same_as(b),
            _ => true,
        };
        if dest.paths.is_empty() {
            self.loc.remove(&prefix);
        }
        if let Some(old) = before {
            self.inbound.release(old.attrs);
        }
        if changed {
            self.best_changes.insert(prefix);
            let family = Family::of_prefix(&prefix);
            for peer in self.peers.values_mut() {
                if peer.negotiated(family) {
                    peer.dirty.insert(prefix);
                }
            }
        }
        changed
    }

    /// Turn `peer`'s dirty prefixes into pending announcements/withdrawals.
    fn resolve(&mut self, peer: PeerId) {
        let Rib { config, outbound, peers, loc, .. } = self;
        let Some(state) = peers.get_mut(&peer) else { return };
        if state.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut state.dirty);
        // Export result per (received attribute set, source, family), valid for this call only.
        // The cached input `Arc` keeps its allocation alive, so its address cannot be reused by
        // another attribute set while the key exists.
        type Cached = (Arc<PathAttributes>, Option<Arc<PathAttributes>>);
        let mut cache: HashMap<(usize, RouteSource, Family), Cached> = HashMap::new();
        let target = export::Target {
            id: peer,
            ebgp: state.ebgp,
            client: state.info.route_reflector_client,
            local_address: state.info.local_address,
        };
        for prefix in dirty {
            let family = Family::of_prefix(&prefix);
            let desired = loc.get(&prefix).and_then(|d| d.best_path()).and_then(|path| {
                let key = (Arc::as_ptr(&path.attrs) as usize, path.source, family);
                let entry = cache.entry(key).or_insert_with(|| {
                    let exported = export::export(config, &target, path, family).map(|a| outbound.intern(a));
                    (path.attrs.clone(), exported)
                });
                entry.1.clone().map(|attrs| OutRoute { attrs, source: path.source, since: path.since })
            });
            state.queue(prefix, desired);
        }
    }
}
