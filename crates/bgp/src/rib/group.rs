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

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

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

/// What the group advertised for one prefix: the outbound attribute set (interned in the
/// outbound interner) and the peer the route came from (`None`: originated here). Kept this
/// small on purpose, one per prefix and group: the rest is in the Loc-RIB.
#[derive(Clone, Debug)]
pub(crate) struct OutRoute {
    pub(crate) attrs: Arc<PathAttributes>,
    pub(crate) source: Option<PeerId>,
}

/// The peer a route came from, if any (the address in `RouteSource` may change when a
/// restarted neighbor takes its stale routes over; the id does not).
pub(crate) fn source_peer(source: RouteSource) -> Option<PeerId> {
    match source {
        RouteSource::Peer(id, _) => Some(id),
        RouteSource::Local => None,
    }
}

/// Key of an announcement batch: the outbound attribute allocation (kept alive by the batch,
/// so the address cannot be reused while the key exists), the family and the source peer.
type BatchKey = (usize, Family, Option<PeerId>);

/// The changes found while resolving one slice of dirty prefixes, packed into as few UPDATEs
/// as possible: announcements per (attribute set, source), withdrawals per (family, source of
/// what was advertised), and withdrawals owed to a member whose own route became best.
#[derive(Default)]
pub(crate) struct Resolution {
    announcements: Vec<(Arc<PathAttributes>, Family, Option<PeerId>, Vec<Nlri>)>,
    index: FastMap<BatchKey, usize>,
    /// The batch the previous prefix went to: consecutive prefixes usually share it.
    last: Option<(BatchKey, usize)>,
    withdrawals: Vec<((Family, Option<PeerId>), Vec<Nlri>)>,
    retractions: Vec<((Family, PeerId), Vec<Nlri>)>,
    /// Net change of Adj-RIB-Out entries per source peer, applied once per slice.
    from_peer_delta: Vec<(PeerId, isize)>,
}

impl Resolution {
    fn announce(&mut self, attrs: &Arc<PathAttributes>, family: Family, source: Option<PeerId>, prefix: Prefix) {
        let key = (Arc::as_ptr(attrs) as usize, family, source);
        let slot = match self.last {
            Some((last, slot)) if last == key => slot,
            _ => {
                let next = self.announcements.len();
                let slot = *self.index.entry(key).or_insert(next);
                if slot == next {
                    self.announcements.push((attrs.clone(), family, source, Vec::new()));
                }
                self.last = Some((key, slot));
                slot
            }
        };
        self.announcements[slot].3.push(Nlri::from(prefix));
    }

    fn withdraw(&mut self, family: Family, source: Option<PeerId>, prefix: Prefix) {
        push_keyed(&mut self.withdrawals, (family, source), prefix);
    }

    fn retract(&mut self, family: Family, member: PeerId, prefix: Prefix) {
        push_keyed(&mut self.retractions, (family, member), prefix);
    }

    /// One more (`+1`) or one fewer (`-1`) Adj-RIB-Out entry from `source`.
    fn count(&mut self, source: Option<PeerId>, delta: isize) {
        let Some(peer) = source else { return };
        match self.from_peer_delta.iter_mut().rev().find(|(p, _)| *p == peer) {
            Some((_, total)) => *total += delta,
            None => self.from_peer_delta.push((peer, delta)),
        }
    }
}

/// Append `prefix` to the list under `key` (few keys: a linear search).
fn push_keyed<K: PartialEq>(lists: &mut Vec<(K, Vec<Nlri>)>, key: K, prefix: Prefix) {
    match lists.iter_mut().rev().find(|(k, _)| *k == key) {
        Some((_, list)) => list.push(Nlri::from(prefix)),
        None => lists.push((key, vec![Nlri::from(prefix)])),
    }
}

/// Smallest dirty list that is ever deduplicated.
const MIN_DEDUP: usize = 4096;

/// The outbound state shared by the members of one update group.
#[derive(Clone, Debug)]
pub(crate) struct ExportGroup {
    pub(crate) key: GroupKey,
    /// Sessions in the group, sorted.
    pub(crate) members: Vec<PeerId>,
    /// Adj-RIB-Out: what every member except a route's source has been told, including what
    /// is resolved into `ready` but not taken yet.
    pub(crate) adj_out: FastMap<Prefix, OutRoute>,
    /// Adj-RIB-Out entries per source peer (a member's own routes are not sent to it).
    from_peer: FastMap<PeerId, usize>,
    /// Prefixes whose export must be re-evaluated, in the order they changed. A prefix that
    /// changed twice may be listed twice; resolving it again finds nothing to send.
    pub(crate) dirty: VecDeque<Prefix>,
    /// Resolved UPDATEs, in order, waiting to be taken.
    ready: VecDeque<GroupUpdate>,
    /// Length of `dirty` past which it is deduplicated next.
    dedup_at: usize,
    /// End-of-RIB markers owed to members once nothing else is queued.
    eor_pending: Vec<(PeerId, Family)>,
}

impl ExportGroup {
    pub(crate) fn new(key: GroupKey, dirty: VecDeque<Prefix>) -> Self {
        ExportGroup {
            key,
            members: Vec::new(),
            adj_out: FastMap::default(),
            from_peer: FastMap::default(),
            dirty,
            ready: VecDeque::new(),
            dedup_at: MIN_DEDUP,
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
        self.ready.retain(|u| u.audience != Audience::Only(peer));
        self.eor_pending.retain(|(p, _)| *p != peer);
    }

    /// Mark `prefix` for re-evaluation. The list is deduplicated when it grows past twice the
    /// table size (`table_len`) and past twice its last deduplicated length, so a flapping
    /// prefix cannot make it grow without bound while the group waits for its members.
    pub(crate) fn mark_dirty(&mut self, prefix: Prefix, table_len: usize) {
        self.dirty.push_back(prefix);
        if self.dirty.len() > self.dedup_at.max(2 * table_len) {
            let mut seen = FastMap::default();
            self.dirty.retain(|p| seen.insert(*p, ()).is_none());
            // Doubling keeps the deduplication amortised O(1) per mark.
            self.dedup_at = (2 * self.dirty.len()).max(MIN_DEDUP);
        }
    }

    /// Whether anything is queued (may turn out to be nothing once resolved).
    pub(crate) fn has_pending(&self) -> bool {
        !self.dirty.is_empty() || !self.ready.is_empty() || !self.eor_pending.is_empty()
    }

    /// Prefixes advertised to `peer` (the Adj-RIB-Out minus its own routes).
    pub(crate) fn advertised_to(&self, peer: PeerId) -> usize {
        self.adj_out.len() - self.from_peer.get(&peer).copied().unwrap_or(0)
    }

    /// A member is sent the whole Adj-RIB-Out (of `family`, or all) again, privately: it
    /// joined after the group advertised it, or asked for it with ROUTE-REFRESH. Changes still
    /// dirty reach it with everyone else's afterwards.
    pub(crate) fn queue_dump(&mut self, peer: PeerId, family: Option<Family>) {
        let mut batches: FastMap<(usize, Family), (Arc<PathAttributes>, Vec<Prefix>)> = FastMap::default();
        for (prefix, route) in &self.adj_out {
            let prefix_family = Family::of_prefix(prefix);
            if family.is_some_and(|f| f != prefix_family) || route.source == Some(peer) {
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
            self.ready.push_back(GroupUpdate { update: announce_update(&attrs, family, nlri), audience: Audience::Only(peer) });
        }
    }

    /// Record the export of one dirty prefix: compare with the Adj-RIB-Out, update it, and add
    /// the change (if any) to `batch`.
    pub(crate) fn resolve_one(&mut self, prefix: Prefix, desired: Option<OutRoute>, batch: &mut Resolution) {
        let family = Family::of_prefix(&prefix);
        let Some(desired) = desired else {
            if let Some(old) = self.adj_out.remove(&prefix) {
                batch.count(old.source, -1);
                batch.withdraw(family, old.source, prefix);
            }
            return;
        };
        let source = desired.source;
        let attrs = desired.attrs.clone();
        match self.adj_out.entry(prefix) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                let current = entry.get_mut();
                if Arc::ptr_eq(&current.attrs, &desired.attrs) && current.source == source {
                    // Same attributes to the same members: nothing to send.
                    return;
                }
                let old = std::mem::replace(current, desired);
                batch.count(old.source, -1);
                // The source member was told the previous route: it must forget it.
                if let Some(member) = source.filter(|_| old.source != source) {
                    batch.retract(family, member, prefix);
                }
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(desired);
            }
        }
        batch.count(source, 1);
        batch.announce(&attrs, family, source, prefix);
    }

    /// Turn a resolved slice into UPDATEs at the end of the ready queue: withdrawals, then the
    /// withdrawals owed to members whose own routes won, then announcements. UPDATEs that
    /// reach no member are dropped (their changes are in the Adj-RIB-Out all the same).
    pub(crate) fn finish(&mut self, batch: Resolution) {
        for (peer, delta) in batch.from_peer_delta {
            let count = self.from_peer.entry(peer).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                self.from_peer.remove(&peer);
            }
        }
        for ((family, source), nlri) in batch.withdrawals {
            let audience = self.audience_for(source);
            self.push(withdraw_update(family, nlri), audience);
        }
        for ((family, member), nlri) in batch.retractions {
            self.push(withdraw_update(family, nlri), Audience::Only(member));
        }
        for (attrs, family, source, nlri) in batch.announcements {
            let audience = self.audience_for(source);
            self.push(announce_update(&attrs, family, nlri), audience);
        }
    }

    /// Who receives routes learned from `source`: everyone but the source when it is a member.
    fn audience_for(&self, source: Option<PeerId>) -> Audience {
        match source {
            Some(peer) if self.is_member(peer) => Audience::AllExcept(peer),
            _ => Audience::All,
        }
    }

    fn push(&mut self, update: Update, audience: Audience) {
        let reaches_anyone = match audience {
            Audience::All => !self.members.is_empty(),
            Audience::AllExcept(peer) => self.members.iter().any(|m| *m != peer),
            Audience::Only(peer) => self.is_member(peer),
        };
        if reaches_anyone {
            self.ready.push_back(GroupUpdate { update, audience });
        }
    }

    /// Move up to `max` ready UPDATEs to `out`.
    pub(crate) fn take_ready(&mut self, max: usize, out: &mut Vec<GroupUpdate>) {
        while out.len() < max {
            let Some(update) = self.ready.pop_front() else { break };
            out.push(update);
        }
    }

    /// Once nothing is dirty or ready: the End-of-RIB markers owed, up to `max` in `out`.
    pub(crate) fn take_end_of_rib(&mut self, max: usize, out: &mut Vec<GroupUpdate>) {
        if !self.dirty.is_empty() || !self.ready.is_empty() {
            return;
        }
        while out.len() < max && !self.eor_pending.is_empty() {
            let (peer, family) = self.eor_pending.remove(0);
            out.push(GroupUpdate { update: Update::end_of_rib(family), audience: Audience::Only(peer) });
        }
    }

    /// Take `peer` out into a group of its own that continues from this group's state: the
    /// same Adj-RIB-Out (what it will know once it has read what was emitted), the same dirty
    /// prefixes, and the ready UPDATEs it is to receive.
    pub(crate) fn split(&mut self, peer: PeerId) -> ExportGroup {
        let mut alone = ExportGroup::new(self.key.clone(), self.dirty.clone());
        alone.adj_out = self.adj_out.clone();
        alone.from_peer = self.from_peer.clone();
        alone.members = vec![peer];
        alone.ready = self.ready.iter().filter(|u| u.audience.includes(peer)).cloned().collect();
        alone.eor_pending = self.eor_pending.iter().filter(|(p, _)| *p == peer).copied().collect();
        self.remove_member(peer);
        alone
    }
}
