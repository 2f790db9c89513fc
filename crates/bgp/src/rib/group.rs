//! Update groups: the outbound side of the RIB, shared by every session that would be sent the
//! same UPDATEs.
//!
//! What a peer is sent depends only on the export rules, and those depend on the receiving
//! session's type (iBGP or eBGP), whether it is a reflector client, our address on it (next hop
//! for eBGP and for local routes) and its families — not on who it is. So sessions alike in
//! those respects share one [`ExportGroup`]: one Adj-RIB-Out, one queue of pending changes, and
//! the runtime encodes each UPDATE once for all members (this is FRR's update-group idea). A
//! reflector with 100 clients resolves and encodes a route once instead of 100 times and holds
//! one Adj-RIB-Out instead of 100.
//!
//! The one per-peer rule, never sending a route back to the peer it came from, becomes the
//! [`Audience`] of each UPDATE: announcements are packed per (attribute set, source), so an
//! UPDATE of routes learned from member X goes to every member but X. The group's Adj-RIB-Out
//! therefore holds, for each prefix, what every member except the route's source was told.
//! When the best route of a prefix moves *to* member X, X had been told the previous one and
//! is sent a withdrawal of its own (`Only(X)`), ahead of the announcement to the others.
//!
//! Members that need something nobody else does get `Only` messages from a private queue that
//! is emitted before the shared changes: the table dump of a member that joins an existing
//! group (a snapshot of the Adj-RIB-Out; later shared changes follow it), the answer to its
//! ROUTE-REFRESH, and its End-of-RIB. A member that falls far behind can be split off into a
//! group of its own (`Rib::split_member`) that starts from a copy of this one's state, so one
//! slow reader never holds back the others.

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{announce_update, withdraw_update, FastMap, PeerId, RouteSource};
use crate::types::{Family, Prefix};
use crate::wire::{Nlri, PathAttributes, Update};

/// Handle of one update group. Never reused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// Which members of a group one outbound UPDATE is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every member.
    All,
    /// Every member but this one: the routes were learned from it.
    AllExcept(PeerId),
    /// This member only: its table dump, refresh, End-of-RIB, or the withdrawal of a route it
    /// now announces itself.
    Only(PeerId),
}

impl Audience {
    /// Whether `peer` (a member of the group) is to receive the UPDATE.
    pub fn includes(&self, peer: PeerId) -> bool {
        match *self {
            Audience::All => true,
            Audience::AllExcept(other) => other != peer,
            Audience::Only(only) => only == peer,
        }
    }
}

/// One outbound UPDATE of a group and who receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupUpdate {
    pub update: Update,
    pub audience: Audience,
}

/// What decides the exported attributes: sessions with equal keys can share a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) ebgp: bool,
    pub(crate) client: bool,
    pub(crate) local_address: IpAddr,
    /// Negotiated families, sorted and without duplicates.
    pub(crate) families: Vec<Family>,
}

/// What the group advertised (Adj-RIB-Out) or wants to advertise (pending) for one prefix: the
/// outbound attribute set (interned in the outbound interner) and the Loc-RIB route behind it.
#[derive(Clone, Debug)]
pub(crate) struct OutRoute {
    pub(crate) attrs: Arc<PathAttributes>,
    pub(crate) source: RouteSource,
    pub(crate) since: Instant,
}

/// The peer a route came from, if any (the address in `RouteSource` may change when a
/// restarted neighbor takes its stale routes over; the id does not).
pub(crate) fn source_peer(source: RouteSource) -> Option<PeerId> {
    match source {
        RouteSource::Peer(id, _) => Some(id),
        RouteSource::Local => None,
    }
}

/// Prefixes waiting to be announced with one outbound attribute set from one source. Entries
/// may be stale (re-queued elsewhere since); `want` is the authority, checked on emission.
#[derive(Clone, Debug)]
struct Pending {
    attrs: Arc<PathAttributes>,
    family: Family,
    source: RouteSource,
    prefixes: Vec<Prefix>,
}

/// Key of a pending batch: the outbound attribute allocation (kept alive by the batch, so the
/// address cannot be reused while the key exists), the family and the source peer.
type PendingKey = (usize, Family, Option<PeerId>);

/// The outbound state shared by the members of one update group.
#[derive(Clone, Debug)]
pub(crate) struct ExportGroup {
    pub(crate) key: GroupKey,
    /// Sessions in the group, sorted.
    pub(crate) members: Vec<PeerId>,
    /// Adj-RIB-Out: what every member except a route's source has been told.
    pub(crate) adj_out: FastMap<Prefix, OutRoute>,
    /// Adj-RIB-Out entries per source peer (a member's own routes are not sent to it).
    from_peer: FastMap<PeerId, usize>,
    /// Prefixes whose export must be re-evaluated (their best path changed).
    pub(crate) dirty: BTreeSet<Prefix>,
    /// Resolved pending changes: `Some` = announce, `None` = withdraw.
    want: FastMap<Prefix, Option<OutRoute>>,
    pending: FastMap<PendingKey, Pending>,
    order: VecDeque<PendingKey>,
    /// Pending withdrawals (prefixes previously advertised).
    withdrawals: Vec<Prefix>,
    /// Messages for single members, emitted before any shared change.
    private: VecDeque<GroupUpdate>,
    /// End-of-RIB markers owed to members once the shared queue is drained.
    eor_pending: Vec<(PeerId, Family)>,
}

impl ExportGroup {
    pub(crate) fn new(key: GroupKey, dirty: BTreeSet<Prefix>) -> Self {
        ExportGroup {
            key,
            members: Vec::new(),
            adj_out: FastMap::default(),
            from_peer: FastMap::default(),
            dirty,
            want: FastMap::default(),
            pending: FastMap::default(),
            order: VecDeque::new(),
            withdrawals: Vec::new(),
            private: VecDeque::new(),
            eor_pending: Vec::new(),
        }
    }

    pub(crate) fn is_member(&self, peer: PeerId) -> bool {
        self.members.binary_search(&peer).is_ok()
    }

    /// Add a member. It is owed one End-of-RIB per family after what is queued now.
    pub(crate) fn add_member(&mut self, peer: PeerId) {
        if let Err(at) = self.members.binary_search(&peer) {
            self.members.insert(at, peer);
        }
        for family in self.key.families.clone() {
            self.eor_pending.push((peer, family));
        }
    }

    /// Forget a member and whatever was queued for it alone.
    pub(crate) fn remove_member(&mut self, peer: PeerId) {
        self.members.retain(|m| *m != peer);
        self.private.retain(|u| u.audience != Audience::Only(peer));
        self.eor_pending.retain(|(p, _)| *p != peer);
    }

    /// Whether anything is queued (may turn out to be nothing once resolved).
    pub(crate) fn has_pending(&self) -> bool {
        !self.dirty.is_empty() || !self.want.is_empty() || !self.private.is_empty() || !self.eor_pending.is_empty()
    }

    /// Prefixes advertised to `peer` (the Adj-RIB-Out minus its own routes).
    pub(crate) fn advertised_to(&self, peer: PeerId) -> usize {
        self.adj_out.len() - self.from_peer.get(&peer).copied().unwrap_or(0)
    }

    /// A member is sent the whole Adj-RIB-Out (of `family`, or all) again, privately: it
    /// joined after the group advertised it, or asked for it with ROUTE-REFRESH. Changes still
    /// pending reach it with everyone else's afterwards.
    pub(crate) fn queue_dump(&mut self, peer: PeerId, family: Option<Family>) {
        let mut batches: FastMap<(usize, Family), (Arc<PathAttributes>, Vec<Prefix>)> = FastMap::default();
        for (prefix, route) in &self.adj_out {
            let prefix_family = Family::of_prefix(prefix);
            // Prefixes with a change pending are sent as advertised so far too: the change may
            // still cancel out, and otherwise it follows with everyone else's.
            if family.is_some_and(|f| f != prefix_family) || source_peer(route.source) == Some(peer) {
                continue;
            }
            batches
                .entry((Arc::as_ptr(&route.attrs) as usize, prefix_family))
                .or_insert_with(|| (route.attrs.clone(), Vec::new()))
                .1
                .push(*prefix);
        }
        let mut batches: Vec<_> = batches.into_iter().map(|((_, family), (attrs, prefixes))| (family, attrs, prefixes)).collect();
        for (_, _, prefixes) in &mut batches {
            prefixes.sort();
        }
        batches.sort_by(|a, b| a.2[0].cmp(&b.2[0]));
        for (family, attrs, prefixes) in batches {
            let nlri = prefixes.into_iter().map(Nlri::from).collect();
            self.private.push_back(GroupUpdate { update: announce_update(&attrs, family, nlri), audience: Audience::Only(peer) });
        }
    }

    /// Record the resolved export of `prefix`, cancelling or replacing any earlier pending change.
    pub(crate) fn queue(&mut self, prefix: Prefix, desired: Option<OutRoute>) {
        let current = self.adj_out.get_mut(&prefix);
        let unchanged = match (&desired, current) {
            (None, None) => true,
            (Some(d), Some(cur))
                if Arc::ptr_eq(&d.attrs, &cur.attrs) && source_peer(d.source) == source_peer(cur.source) =>
            {
                // Same attributes to the same members; only the route behind them changed.
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
            (Some(Some(w)), Some(d)) => Arc::ptr_eq(&w.attrs, &d.attrs) && source_peer(w.source) == source_peer(d.source),
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
                let key = (Arc::as_ptr(&d.attrs) as usize, family, source_peer(d.source));
                let (attrs, source) = (d.attrs.clone(), d.source);
                let order = &mut self.order;
                self.pending
                    .entry(key)
                    .or_insert_with(|| {
                        order.push_back(key);
                        Pending { attrs, family, source, prefixes: Vec::new() }
                    })
                    .prefixes
                    .push(prefix);
            }
        }
        self.want.insert(prefix, desired);
    }

    /// Who receives routes learned from `source`: everyone but the source when it is a member.
    fn audience_for(&self, source: Option<PeerId>) -> Audience {
        match source {
            Some(peer) if self.is_member(peer) => Audience::AllExcept(peer),
            _ => Audience::All,
        }
    }

    /// Whether an UPDATE for `audience` reaches at least one member.
    fn reaches_anyone(&self, audience: Audience) -> bool {
        match audience {
            Audience::All => !self.members.is_empty(),
            Audience::AllExcept(peer) => self.members.iter().any(|m| *m != peer),
            Audience::Only(peer) => self.is_member(peer),
        }
    }

    fn push(&self, out: &mut Vec<GroupUpdate>, update: Update, audience: Audience) {
        if self.reaches_anyone(audience) {
            out.push(GroupUpdate { update, audience });
        }
    }

    fn adj_out_insert(&mut self, prefix: Prefix, route: OutRoute) -> Option<OutRoute> {
        if let Some(peer) = source_peer(route.source) {
            *self.from_peer.entry(peer).or_default() += 1;
        }
        let old = self.adj_out.insert(prefix, route);
        if let Some(old) = &old {
            self.from_peer_forget(old.source);
        }
        old
    }

    fn adj_out_remove(&mut self, prefix: &Prefix) -> Option<OutRoute> {
        let old = self.adj_out.remove(prefix);
        if let Some(old) = &old {
            self.from_peer_forget(old.source);
        }
        old
    }

    fn from_peer_forget(&mut self, source: RouteSource) {
        if let Some(peer) = source_peer(source) {
            if let Some(count) = self.from_peer.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.from_peer.remove(&peer);
                }
            }
        }
    }

    /// Emit up to `max` UPDATEs: private messages, then withdrawals, then announcements per
    /// (attribute set, source), then End-of-RIB markers once nothing shared is left.
    pub(crate) fn emit(&mut self, max: usize) -> Vec<GroupUpdate> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(update) = self.private.pop_front() else { break };
            out.push(update);
        }
        if out.len() < max && !self.withdrawals.is_empty() {
            // Withdrawals per (family, source of what was advertised): the source was never
            // told, so it is left out.
            let mut batches: Vec<((Family, Option<PeerId>), Vec<Prefix>)> = Vec::new();
            for prefix in std::mem::take(&mut self.withdrawals) {
                if !matches!(self.want.get(&prefix), Some(None)) {
                    continue;
                }
                let Some(old) = self.adj_out.get(&prefix) else {
                    self.want.remove(&prefix);
                    continue;
                };
                let key = (Family::of_prefix(&prefix), source_peer(old.source));
                match batches.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, list)) => list.push(prefix),
                    None => batches.push((key, vec![prefix])),
                }
            }
            for ((family, source), prefixes) in batches {
                if out.len() >= max {
                    self.withdrawals.extend(prefixes);
                    continue;
                }
                let mut nlri = Vec::with_capacity(prefixes.len());
                for prefix in prefixes {
                    self.want.remove(&prefix);
                    self.adj_out_remove(&prefix);
                    nlri.push(Nlri::from(prefix));
                }
                let audience = self.audience_for(source);
                self.push(&mut out, withdraw_update(family, nlri), audience);
            }
        }
        while out.len() < max {
            let Some(key) = self.order.pop_front() else { break };
            let Some(batch) = self.pending.remove(&key) else { continue };
            let source = source_peer(batch.source);
            let mut nlri = Vec::with_capacity(batch.prefixes.len());
            // The source member was told the previous route of these prefixes (if any).
            let mut retract = Vec::new();
            for prefix in batch.prefixes {
                let current = matches!(self.want.get(&prefix), Some(Some(w))
                    if Arc::ptr_eq(&w.attrs, &batch.attrs) && source_peer(w.source) == source);
                if !current {
                    continue;
                }
                let Some(Some(route)) = self.want.remove(&prefix) else { continue };
                if let Some(old) = self.adj_out_insert(prefix, route) {
                    if source.is_some() && source_peer(old.source) != source {
                        retract.push(Nlri::from(prefix));
                    }
                }
                nlri.push(Nlri::from(prefix));
            }
            if let (Some(peer), false) = (source, retract.is_empty()) {
                if self.is_member(peer) {
                    out.push(GroupUpdate { update: withdraw_update(batch.family, retract), audience: Audience::Only(peer) });
                }
            }
            if !nlri.is_empty() {
                let audience = self.audience_for(source);
                self.push(&mut out, announce_update(&batch.attrs, batch.family, nlri), audience);
            }
        }
        if self.dirty.is_empty() && self.want.is_empty() && self.private.is_empty() {
            while out.len() < max && !self.eor_pending.is_empty() {
                let (peer, family) = self.eor_pending.remove(0);
                out.push(GroupUpdate { update: Update::end_of_rib(family), audience: Audience::Only(peer) });
            }
        }
        out
    }

    /// Take `peer` out into a group of its own that continues from this group's state: the
    /// same Adj-RIB-Out (what it will know once it has read what was emitted), the pending
    /// changes as dirty prefixes, and what was queued for it alone.
    pub(crate) fn split(&mut self, peer: PeerId) -> ExportGroup {
        let mut alone = ExportGroup::new(self.key.clone(), self.dirty.clone());
        alone.dirty.extend(self.want.keys().copied());
        alone.adj_out = self.adj_out.clone();
        alone.from_peer = self.from_peer.clone();
        alone.members = vec![peer];
        alone.private = self.private.iter().filter(|u| u.audience == Audience::Only(peer)).cloned().collect();
        alone.eor_pending = self.eor_pending.iter().filter(|(p, _)| *p == peer).copied().collect();
        self.remove_member(peer);
        alone
    }
}
