//! RIBs, decision process and route reflection (RFC 4271 §3.2 and §9, RFC 4456), sans-IO.
//!
//! Data flow: `apply_update` / `originate` change the paths of each touched prefix in the
//! Loc-RIB (a received route is stored once: the Adj-RIBs-In are the destinations' paths,
//! flagged when rejected or stale); the decision process re-selects the best path among the
//! accepted ones; when it changed, the prefix is marked dirty in every update group of its
//! family (`group.rs`: sessions with the same export rules share one Adj-RIB-Out and queue).
//! `next_group_updates` later resolves a group's dirty prefixes against the current Loc-RIB
//! (export rules, attribute rewriting), compares with the group's Adj-RIB-Out, and emits
//! UPDATEs packed per outbound attribute set and source, each with its audience. Resolving
//! lazily means a prefix that flaps ten times before a slow group drains is exported once.
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
mod group;
mod intern;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

/// Maps keyed by prefix are the RIB's hot path: foldhash is several times faster than SipHash
/// on such small keys and still seeds every map at random, so peers cannot aim collisions.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use crate::types::{Family, Prefix};
use crate::wire::{MpNextHop, MpReach, MpUnreach, Nlri, Origin, PathAttributes, Update};

use group::{source_peer, ExportGroup, GroupKey, OutRoute};
use intern::Interner;

pub use group::{Audience, GroupId, GroupUpdate};

/// How many dirty prefixes one drain of an update group resolves at most.
const RESOLVE_BATCH: usize = 16 * 1024;

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

/// One path of a prefix as received from a peer (its Adj-RIB-In entry) or originated here.
/// The Adj-RIBs-In live in the Loc-RIB's destinations: a received route is stored once, and
/// the accepted ones are the decision's candidates.
#[derive(Clone, Debug)]
pub(crate) struct Path {
    pub(crate) source: RouteSource,
    /// ADD-PATH identifier from the source (0 when none).
    pub(crate) path_id: u32,
    pub(crate) attrs: Arc<PathAttributes>,
    pub(crate) since: Instant,
    pub(crate) meta: SourceMeta,
    /// Passed the import checks: a decision candidate. Rejected routes are kept so `received`
    /// and the Adj-RIB-In view show what the peer sent.
    pub(crate) accepted: bool,
    /// Kept across a graceful restart of the peer and not re-announced yet (RFC 4724 §4.2).
    pub(crate) stale: bool,
}

impl Path {
    /// Whether this path came from `peer`.
    fn from_peer(&self, peer: PeerId) -> bool {
        matches!(self.source, RouteSource::Peer(id, _) if id == peer)
    }
}

impl Path {
    /// Same path identity and same attributes: nothing to re-announce.
    fn same_as(&self, other: &Path) -> bool {
        self.source == other.source && self.path_id == other.path_id && Arc::ptr_eq(&self.attrs, &other.attrs)
    }
}

/// Paths of one prefix. Nearly every prefix has exactly one, kept inline: no allocation per
/// prefix, and the path sits in the table's own memory.
type Paths = smallvec::SmallVec<[Path; 1]>;

/// All paths of one prefix plus the index of the selected one.
#[derive(Debug, Default)]
struct Dest {
    paths: Paths,
    best: Option<usize>,
}

impl Dest {
    fn best_path(&self) -> Option<&Path> {
        self.best.and_then(|i| self.paths.get(i))
    }
}

/// Per-session state: counters of its Adj-RIB-In (whose routes live in the Loc-RIB's
/// destinations) and the update group the session is sending with.
#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    ebgp: bool,
    /// A session is up. False while only stale routes are held after a graceful down: the
    /// entry is then no export target and belongs to no group.
    up: bool,
    /// Routes in its Adj-RIB-In, and how many of them passed the import checks.
    received: usize,
    accepted: usize,
    /// The update group holding this session's Adj-RIB-Out and outbound queue (while up).
    group: Option<GroupId>,
}

impl Peer {
    fn negotiated(&self, family: Family) -> bool {
        self.up && self.info.families.contains(&family)
    }

    /// What decides this session's exported attributes (its update group).
    fn group_key(&self) -> GroupKey {
        let mut families = self.info.families.clone();
        families.sort();
        families.dedup();
        GroupKey {
            ebgp: self.ebgp,
            client: self.info.route_reflector_client,
            local_address: self.info.local_address,
            families,
        }
    }
}

/// A withdrawal UPDATE: IPv4 in the Withdrawn Routes field, others in MP_UNREACH.
pub(crate) fn withdraw_update(family: Family, withdrawn: Vec<Nlri>) -> Update {
    if family == Family::IPV4_UNICAST {
        Update { withdrawn, ..Update::default() }
    } else {
        Update { mp_unreach: Some(MpUnreach { family, withdrawn }), ..Update::default() }
    }
}

/// An announcement UPDATE. The RIB keeps every route's next hop in `PathAttributes::next_hop`;
/// on the wire IPv4 uses the NEXT_HOP attribute and other families the MP_REACH next hop.
pub(crate) fn announce_update(attrs: &PathAttributes, family: Family, nlri: Vec<Nlri>) -> Update {
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
    /// Update groups: the outbound state, shared by sessions that are sent the same UPDATEs.
    groups: BTreeMap<GroupId, ExportGroup>,
    /// The group a new session with a given key joins (groups split off for a slow member are
    /// not listed: they serve that member alone).
    joinable: HashMap<GroupKey, GroupId>,
    next_group: u32,
    loc: FastMap<Prefix, Dest>,
    /// Prefixes whose best path changed since the last `take_best_changes`.
    best_changes: FastSet<Prefix>,
    /// Whether `best_changes` is kept (a reflector without a FIB consumer turns it off).
    tracking_best_changes: bool,
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
            groups: BTreeMap::new(),
            joinable: HashMap::new(),
            next_group: 1,
            loc: FastMap::default(),
            best_changes: FastSet::default(),
            tracking_best_changes: true,
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
        if !self.peers.contains_key(&peer) {
            return 0;
        }
        self.paths_of(peer).filter(|(_, path)| path.stale).count()
    }

    /// Session established: registers the peer and queues the whole eligible Loc-RIB for it,
    /// followed by one End-of-RIB per negotiated family once that dump is drained.
    pub fn peer_up(&mut self, info: PeerInfo) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let peer = Peer {
            ebgp: info.remote_as != self.config.local_as,
            up: true,
            info,
            received: 0,
            accepted: 0,
            group: None,
        };
        self.peers.insert(id, peer);
        self.join_group(id);
        id
    }

    /// Put an up session into the update group for its key: an existing one (the session is
    /// then sent that group's Adj-RIB-Out privately) or a new one (which starts with the whole
    /// eligible Loc-RIB dirty). Either way End-of-RIB follows the initial table.
    fn join_group(&mut self, peer: PeerId) {
        let Some(key) = self.peers.get(&peer).map(Peer::group_key) else { return };
        let id = match self.joinable.get(&key) {
            Some(&id) => {
                let group = self.groups.get_mut(&id).expect("joinable groups exist");
                group.queue_dump(peer, None);
                id
            }
            None => {
                let id = GroupId(self.next_group);
                self.next_group += 1;
                let mut dirty: Vec<Prefix> =
                    self.loc.keys().filter(|p| key.families.contains(&Family::of_prefix(p))).copied().collect();
                dirty.sort_unstable();
                self.groups.insert(id, ExportGroup::new(key.clone(), dirty.into()));
                self.joinable.insert(key, id);
                id
            }
        };
        self.groups.get_mut(&id).expect("just found or made").add_member(peer);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.group = Some(id);
        }
    }

    /// Take a session out of its update group; an empty group is dropped.
    fn leave_group(&mut self, peer: PeerId) {
        let Some(id) = self.peers.get_mut(&peer).and_then(|state| state.group.take()) else { return };
        let Some(group) = self.groups.get_mut(&id) else { return };
        group.remove_member(peer);
        if group.members.is_empty() {
            let group = self.groups.remove(&id).expect("present");
            if self.joinable.get(&group.key) == Some(&id) {
                self.joinable.remove(&group.key);
            }
        }
    }

    /// The update group `peer` sends with, while its session is up.
    pub fn group_of(&self, peer: PeerId) -> Option<GroupId> {
        self.peers.get(&peer).and_then(|state| state.group)
    }

    /// Members of a group, sorted (empty for an unknown group).
    pub fn group_members(&self, group: GroupId) -> &[PeerId] {
        self.groups.get(&group).map_or(&[], |g| g.members.as_slice())
    }

    /// Groups with queued work.
    pub fn groups_with_pending(&self) -> Vec<GroupId> {
        self.groups.iter().filter(|(_, g)| g.has_pending()).map(|(id, _)| *id).collect()
    }

    /// Number of update groups (for tests and metrics).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Give `peer` an update group of its own that continues from its current group's state
    /// (for a member that cannot keep up with the others). Returns the peer's group after the
    /// split (unchanged when it was already alone), or `None` when it has none.
    pub fn split_member(&mut self, peer: PeerId) -> Option<GroupId> {
        let current = self.group_of(peer)?;
        let group = self.groups.get_mut(&current)?;
        if group.members.len() <= 1 {
            return Some(current);
        }
        let alone = group.split(peer);
        let id = GroupId(self.next_group);
        self.next_group += 1;
        self.groups.insert(id, alone);
        self.peers.get_mut(&peer).expect("has a group").group = Some(id);
        Some(id)
    }

    /// Drain up to `max_updates` pending outbound UPDATEs of a group, each with the members it
    /// is for, updating the group's Adj-RIB-Out. Each UPDATE carries one outbound attribute set
    /// with the pending prefixes sharing it (the codec splits it into messages).
    pub fn next_group_updates(&mut self, group: GroupId, max_updates: usize) -> Vec<GroupUpdate> {
        if max_updates == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        loop {
            let Some(state) = self.groups.get_mut(&group) else { return out };
            state.take_ready(max_updates, &mut out);
            if out.len() >= max_updates {
                return out;
            }
            if state.dirty.is_empty() {
                state.take_end_of_rib(max_updates, &mut out);
                return out;
            }
            self.resolve(group);
        }
    }

    /// Session went down: drop its Adj-RIB-In/Out, re-run the decision for the prefixes it
    /// contributed to, and queue the resulting changes for the other peers.
    pub fn peer_down(&mut self, peer: PeerId) {
        self.leave_group(peer);
        let Some(state) = self.peers.remove(&peer) else { return };
        let mut prefixes: Vec<Prefix> = self.paths_of(peer).map(|(prefix, _)| *prefix).collect();
        prefixes.sort();
        prefixes.dedup();
        for prefix in prefixes {
            self.change_dest(prefix, |paths| paths.retain(|p| !p.from_peer(peer)));
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
            return self.stale_count(peer);
        }
        state.up = false;
        self.leave_group(peer);
        let mut kept = 0;
        let mut dropped = Vec::new();
        for (prefix, dest) in self.loc.iter_mut() {
            for path in dest.paths.iter_mut().filter(|p| p.from_peer(peer)) {
                if families.contains(&Family::of_prefix(prefix)) {
                    path.stale = true;
                    kept += 1;
                } else {
                    dropped.push(Nlri { path_id: Some(path.path_id), prefix: *prefix });
                }
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
        for (prefix, dest) in &self.loc {
            for path in dest.paths.iter().filter(|p| p.from_peer(stale_from)) {
                if type_changed || !families.contains(&Family::of_prefix(prefix)) {
                    purge.push(Nlri { path_id: Some(path.path_id), prefix: *prefix });
                } else if meta_changed {
                    retag.push((*prefix, path.path_id));
                }
            }
        }
        state.ebgp = ebgp;
        state.info = info;
        state.up = true;
        self.join_group(stale_from);
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
        if !self.peers.contains_key(&peer) {
            return 0;
        }
        let stale: Vec<Nlri> = self
            .paths_of(peer)
            .filter(|(prefix, path)| path.stale && which(prefix))
            .map(|(prefix, path)| Nlri { path_id: Some(path.path_id), prefix: *prefix })
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
            accepted: true,
            stale: false,
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

    /// Drain up to `max_updates` pending outbound UPDATEs for `peer` alone. The peer is first
    /// given an update group of its own (`split_member`), so what it is sent is exactly what it
    /// would be sent by itself; the daemon drains whole groups with `next_group_updates`
    /// instead. Once everything queued is drained, the End-of-RIB owed after `peer_up` is
    /// emitted once per family. An unknown peer yields nothing.
    pub fn next_updates(&mut self, peer: PeerId, max_updates: usize) -> Vec<Update> {
        let Some(group) = self.split_member(peer) else { return Vec::new() };
        self.next_group_updates(group, max_updates)
            .into_iter()
            .filter(|u| u.audience.includes(peer))
            .map(|u| u.update)
            .collect()
    }

    /// Whether `peer`'s update group has queued work. May be true while the queued changes turn
    /// out to cancel out (or concern other members only), in which case draining yields
    /// nothing for it and this becomes false.
    pub fn has_pending(&self, peer: PeerId) -> bool {
        self.group_of(peer).and_then(|g| self.groups.get(&g)).is_some_and(|g| g.has_pending())
    }

    /// Send the full table of one family to `peer` again (ROUTE-REFRESH received, RFC 2918):
    /// every advertised prefix is announced again, to it alone, before further changes.
    pub fn refresh(&mut self, peer: PeerId, family: Family) {
        let Some(state) = self.peers.get(&peer) else { return };
        if !state.negotiated(family) {
            return;
        }
        let Some(group) = state.group.and_then(|id| self.groups.get_mut(&id)) else { return };
        group.queue_dump(peer, Some(family));
    }

    /// Best-path changes since the last call, for the FIB hook: `(prefix, Some(best attributes))`
    /// or `(prefix, None)` when no route is left. Sorted by prefix. A prefix that changed and
    /// changed back is still reported (with its current best), which a FIB applies idempotently.
    /// Keep (the default) or stop keeping the set of changed prefixes `take_best_changes`
    /// reports. A speaker that installs nothing (a route reflector) turns it off and saves a set
    /// entry per changed prefix; turning it back on starts from nothing changed.
    pub fn track_best_changes(&mut self, on: bool) {
        self.tracking_best_changes = on;
        if !on {
            self.best_changes = FastSet::default();
        }
    }

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
        let mut prefixes: Vec<&Prefix> =
            self.loc.iter().filter(|(p, d)| Family::of_prefix(p) == family && d.best.is_some()).map(|(p, _)| p).collect();
        prefixes.sort();
        let mut out = Vec::new();
        for prefix in prefixes {
            let dest = &self.loc[prefix];
            let best = dest.best;
            let mut indexes: Vec<usize> = (0..dest.paths.len()).filter(|&i| dest.paths[i].accepted).collect();
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
        let mut views: Vec<(u32, RouteView)> = self
            .loc
            .iter()
            .filter(|(prefix, _)| Family::of_prefix(prefix) == family)
            .flat_map(|(prefix, dest)| {
                let best = dest.best_path();
                dest.paths.iter().filter(|p| p.from_peer(peer)).map(move |path| {
                    let is_best = best.is_some_and(|b| b.from_peer(peer) && b.path_id == path.path_id);
                    let view = RouteView { prefix: *prefix, attrs: path.attrs.clone(), source, since: path.since, best: is_best };
                    (path.path_id, view)
                })
            })
            .collect();
        views.sort_by(|a, b| (a.1.prefix, a.0).cmp(&(b.1.prefix, b.0)));
        views.into_iter().map(|(_, view)| view).collect()
    }

    /// Adj-RIB-Out of one family: what was sent, with the outbound attributes, sorted by prefix.
    /// Source and age come from the Loc-RIB route behind each entry; an entry whose route is
    /// already gone (its withdrawal about to be sent) is left out.
    pub fn adj_rib_out(&self, peer: PeerId, family: Family) -> Vec<RouteView> {
        let Some(group) = self.group_of(peer).and_then(|g| self.groups.get(&g)) else { return Vec::new() };
        let mut views: Vec<RouteView> = group
            .adj_out
            .iter()
            .filter(|(p, route)| Family::of_prefix(p) == family && route.source != Some(peer))
            .filter_map(|(prefix, route)| {
                let dest = self.loc.get(prefix)?;
                let behind = dest
                    .best_path()
                    .filter(|p| source_peer(p.source) == route.source)
                    .or_else(|| dest.paths.iter().find(|p| p.accepted && source_peer(p.source) == route.source))?;
                Some(RouteView { prefix: *prefix, attrs: route.attrs.clone(), source: behind.source, since: behind.since, best: true })
            })
            .collect();
        views.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        views
    }

    /// Received / accepted / advertised counters; zero for an unknown peer.
    pub fn peer_counts(&self, peer: PeerId) -> PeerCounts {
        self.peers.get(&peer).map_or_else(PeerCounts::default, |p| PeerCounts {
            received: p.received,
            accepted: p.accepted,
            advertised: p.group.and_then(|g| self.groups.get(&g)).map_or(0, |g| g.advertised_to(peer)),
        })
    }

    /// Live attribute sets in the inbound and outbound interners.
    pub fn interner_counts(&self) -> InternerCounts {
        InternerCounts { inbound: self.inbound.live(), outbound: self.outbound.live() }
    }

    /// Number of prefixes with at least one candidate path.
    pub fn prefix_count(&self) -> usize {
        self.loc.values().filter(|d| d.best.is_some()).count()
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
        let is_this = move |p: &Path| p.from_peer(peer) && p.path_id == path_id;
        // `None`: new path; `Some(accepted)`: replaced a path with that flag.
        let mut previous: Option<bool> = None;
        let mut replaced = None;
        let path = Path { source, path_id, attrs: attrs.clone(), since: now, meta, accepted, stale: false };
        let changed = self.edit_dest(nlri.prefix, |paths| match paths.iter_mut().find(|p| is_this(p)) {
            Some(existing) if Arc::ptr_eq(&existing.attrs, attrs) && existing.accepted == accepted => {
                // A repeat of what we hold: nothing changes, the route keeps its age; after a
                // graceful restart it is no longer stale.
                existing.stale = false;
                previous = Some(accepted);
                false
            }
            Some(existing) => {
                previous = Some(existing.accepted);
                replaced = Some(std::mem::replace(existing, path));
                true
            }
            None => {
                paths.push(path);
                true
            }
        });
        let repeat = previous == Some(accepted) && replaced.is_none();
        if let Some(state) = self.peers.get_mut(&peer).filter(|_| !repeat) {
            match previous {
                Some(true) => state.accepted -= 1,
                Some(false) => {}
                None => state.received += 1,
            }
            if accepted {
                state.accepted += 1;
            }
        }
        if let Some(old) = replaced {
            // After the Loc-RIB dropped its copy, so an unused set leaves the interner.
            self.inbound.release(old.attrs);
        }
        changed
    }

    /// One received withdrawal. Returns whether the best path changed.
    fn withdraw_in(&mut self, peer: PeerId, nlri: &Nlri) -> bool {
        let path_id = nlri.path_id.unwrap_or(0);
        let is_this = move |p: &Path| p.from_peer(peer) && p.path_id == path_id;
        if !self.peers.contains_key(&peer) {
            return false;
        }
        let mut removed = None;
        let changed = self.edit_dest(nlri.prefix, |paths| match paths.iter().position(is_this) {
            Some(index) => {
                removed = Some(paths.remove(index));
                true
            }
            None => false,
        });
        let Some(old) = removed else { return false };
        if let Some(state) = self.peers.get_mut(&peer) {
            state.received -= 1;
            if old.accepted {
                state.accepted -= 1;
            }
        }
        self.inbound.release(old.attrs);
        changed
    }

    /// Every path received from `peer`, with its prefix (a walk over the whole table).
    fn paths_of(&self, peer: PeerId) -> impl Iterator<Item = (&Prefix, &Path)> + '_ {
        self.loc
            .iter()
            .flat_map(move |(prefix, dest)| dest.paths.iter().filter(move |p| p.from_peer(peer)).map(move |p| (prefix, p)))
    }

    /// Apply `edit` to the candidates of `prefix`, re-run the decision, and when the best path
    /// changed record it for the FIB and mark the prefix dirty for every peer of its family.
    fn change_dest(&mut self, prefix: Prefix, edit: impl FnOnce(&mut Paths)) -> bool {
        self.edit_dest(prefix, |paths| {
            edit(paths);
            true
        })
    }

    /// `change_dest` with an edit that may find nothing to do (returns false): then the
    /// decision is not run again. One table lookup either way.
    fn edit_dest(&mut self, prefix: Prefix, edit: impl FnOnce(&mut Paths) -> bool) -> bool {
        let dest = self.loc.entry(prefix).or_default();
        let before = dest.best_path().cloned();
        if !edit(&mut dest.paths) {
            if dest.paths.is_empty() {
                self.loc.remove(&prefix);
            }
            return false;
        }
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
            if self.tracking_best_changes {
                self.best_changes.insert(prefix);
            }
            let family = Family::of_prefix(&prefix);
            let table_len = self.loc.len();
            for group in self.groups.values_mut() {
                if group.key.families.contains(&family) {
                    group.mark_dirty(prefix, table_len);
                }
            }
        }
        changed
    }

    /// Resolve the next slice of a group's dirty prefixes against the Loc-RIB into ready
    /// UPDATEs (the Adj-RIB-Out is updated as they are made).
    fn resolve(&mut self, group: GroupId) {
        let Rib { config, outbound, groups, loc, .. } = self;
        let Some(state) = groups.get_mut(&group) else { return };
        // A bounded slice at a time, so resolved-but-untaken UPDATEs stay few whatever the
        // table size.
        let count = state.dirty.len().min(RESOLVE_BATCH);
        if count == 0 {
            return;
        }
        // Export result per (received attribute set, source, family), valid for this call only.
        // The cached input `Arc` keeps its allocation alive, so its address cannot be reused by
        // another attribute set while the key exists.
        type CacheKey = (usize, RouteSource, Family);
        type Cached = (Arc<PathAttributes>, Option<Arc<PathAttributes>>);
        let mut cache: FastMap<CacheKey, Cached> = FastMap::default();
        let mut last: Option<(CacheKey, Option<Arc<PathAttributes>>)> = None;
        let target = export::Target {
            ebgp: state.key.ebgp,
            client: state.key.client,
            local_address: state.key.local_address,
        };
        let mut batch = group::Resolution::default();
        for _ in 0..count {
            let Some(prefix) = state.dirty.pop_front() else { break };
            let family = Family::of_prefix(&prefix);
            let desired = loc.get(&prefix).and_then(|d| d.best_path()).and_then(|path| {
                let key = (Arc::as_ptr(&path.attrs) as usize, path.source, family);
                let exported = match &last {
                    // Consecutive prefixes mostly come from the same UPDATE.
                    Some((last_key, exported)) if *last_key == key => exported.clone(),
                    _ => {
                        let entry = cache.entry(key).or_insert_with(|| {
                            let exported = export::export(config, &target, path, family).map(|a| outbound.intern(a));
                            (path.attrs.clone(), exported)
                        });
                        last = Some((key, entry.1.clone()));
                        entry.1.clone()
                    }
                };
                exported.map(|attrs| OutRoute { attrs, source: source_peer(path.source) })
            });
            state.resolve_one(prefix, desired, &mut batch);
        }
        state.finish(batch);
    }
}
