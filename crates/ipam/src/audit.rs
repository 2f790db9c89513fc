//! `show`, `check` and `gc`: read the whole IPAM state once, compare blocks (the truth) with
//! the indexes (handles, affinities) and the resources (nodes, pools, workload endpoints),
//! and repair what a crash or a deleted node left behind — each repair a CAS, so running GC
//! alongside live allocators never takes an address someone holds.
//!
//! The snapshot is several reads at different revisions (blocks, then handles, then
//! affinities), so it can show an operation half done: a release that freed its block but
//! had not yet deleted its handle record looks like an unindexed allocation once the record
//! is gone. So an index repair never trusts the snapshot: it re-reads the block and the
//! record, writes with a CAS on what it read, and re-reads the block after every write,
//! taking back (by CAS on its own revision) a record that turned out to index nothing. A
//! release is never undone, and an allocation never left unindexed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use store::{Condition, Revision, Store};

use crate::block::Block;
use crate::inventory::{self, PoolInfo};
use crate::keys::{self, decode, encode, AffinityRecord, HandleRecord};
use crate::{backoff, cas_delete, cas_put, read, unix, BlockInfo, IpamError, MAX_RETRIES};

/// `seam ipam show`: usage per pool and blocks per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub pools: Vec<PoolUsage>,
    pub nodes: Vec<NodeBlocks>,
    /// Blocks with no affinity (their node was deleted; they hold addresses still in use).
    pub unaffine_blocks: Vec<BlockInfo>,
}

/// One pool's usage. A pool that was deleted while blocks remained shows with `name: None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    pub name: Option<String>,
    pub cidr: IpNet,
    pub block_size: Option<u8>,
    pub disabled: bool,
    pub node_selector: Option<String>,
    /// Addresses in the pool's range.
    pub size: u128,
    pub blocks: usize,
    /// Addresses in claimed blocks.
    pub block_capacity: u64,
    /// Addresses allocated.
    pub used: u64,
}

/// The blocks claimed by one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBlocks {
    pub node: String,
    /// False when the Node resource is gone (its blocks are GC candidates).
    pub exists: bool,
    pub blocks: Vec<BlockInfo>,
}

/// One inconsistency found by `check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Problem {
    /// A record that does not decode or contradicts itself.
    Corrupt { key: String, reason: String },
    /// One address held by more than one allocation (overlapping blocks).
    DoubleAllocation { ip: IpAddr, holders: Vec<String> },
    /// An allocation older than the grace period whose handle has no live workload endpoint.
    LeakedIp { ip: IpAddr, block: IpNet, handle: String, age_secs: u64 },
    /// An allocation whose handle record is missing or does not list its block (release by
    /// handle would miss it).
    UnindexedAllocation { ip: IpAddr, block: IpNet, handle: String },
    /// A block affine to a node that no longer exists.
    OrphanBlock { block: IpNet, node: String, used: u32 },
    /// An empty block that should be returned to its pool (pool disabled or deleted, or no
    /// affinity).
    ReleasableBlock { block: IpNet, reason: String },
    /// A handle record older than the grace period that holds no address.
    EmptyHandle { handle: String },
    /// An affinity record whose block is missing or belongs to another node.
    StaleAffinity { node: String, block: IpNet },
    /// A block affine to a node without the node's affinity record.
    MissingAffinity { node: String, block: IpNet },
}

impl Problem {
    /// Problems that mean the data is wrong, not merely untidy: an address given out twice
    /// or a record that cannot be trusted. The crash tests require none of these, ever.
    pub fn is_severe(&self) -> bool {
        matches!(self, Problem::Corrupt { .. } | Problem::DoubleAllocation { .. })
    }
}

/// `seam ipam check`'s findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub blocks: usize,
    pub allocations: usize,
    pub handles: usize,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn severe(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_severe())
    }

    pub fn double_allocations(&self) -> usize {
        self.problems.iter().filter(|p| matches!(p, Problem::DoubleAllocation { .. })).count()
    }

    pub fn leaks(&self) -> usize {
        self.problems.iter().filter(|p| matches!(p, Problem::LeakedIp { .. })).count()
    }
}

/// What `gc` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Leaked addresses freed, with the handle that held them.
    pub released_ips: Vec<(IpAddr, String)>,
    pub deleted_blocks: Vec<IpNet>,
    /// Non-empty blocks of deleted nodes whose affinity was removed.
    pub orphaned_blocks: Vec<IpNet>,
    pub deleted_handles: Vec<String>,
    /// Handle records (re)written so release by handle finds every address.
    pub reindexed_handles: Vec<String>,
    pub deleted_affinities: Vec<(String, IpNet)>,
    pub restored_affinities: Vec<(String, IpNet)>,
}

/// Everything read in one pass.
struct Snapshot {
    blocks: Vec<(String, Block, Revision)>,
    handles: BTreeMap<String, (HandleRecord, Revision)>,
    affinities: Vec<(String, AffinityRecord)>,
    nodes: BTreeMap<String, resources::Labels>,
    pools: Vec<PoolInfo>,
    live: HashSet<String>,
    corrupt: Vec<Problem>,
}

async fn snapshot(store: &dyn Store) -> Result<Snapshot, IpamError> {
    let mut corrupt = Vec::new();
    let (kvs, _) = store.list(keys::BLOCKS).await?;
    let mut blocks = Vec::new();
    for kv in kvs {
        match decode::<Block>(&kv.key, &kv.value) {
            Ok(b) => {
                let expected = keys::block_key(&b.cidr);
                for reason in b.problems() {
                    corrupt.push(Problem::Corrupt { key: kv.key.clone(), reason });
                }
                if expected != kv.key {
                    corrupt.push(Problem::Corrupt {
                        key: kv.key.clone(),
                        reason: format!("block {} is stored under the wrong key", b.cidr),
                    });
                }
                blocks.push((kv.key, b, kv.mod_revision));
            }
            Err(IpamError::Corrupt { key, reason }) => corrupt.push(Problem::Corrupt { key, reason }),
            Err(e) => return Err(e),
        }
    }
    let (kvs, _) = store.list(keys::HANDLES).await?;
    let mut handles = BTreeMap::new();
    for kv in kvs {
        match decode::<HandleRecord>(&kv.key, &kv.value) {
            Ok(h) => {
                handles.insert(h.handle.clone(), (h, kv.mod_revision));
            }
            Err(IpamError::Corrupt { key, reason }) => corrupt.push(Problem::Corrupt { key, reason }),
            Err(e) => return Err(e),
        }
    }
    let (kvs, _) = store.list(keys::AFFINITY).await?;
    let mut affinities = Vec::new();
    for kv in kvs {
        match decode::<AffinityRecord>(&kv.key, &kv.value) {
            Ok(a) => affinities.push((kv.key, a)),
            Err(IpamError::Corrupt { key, reason }) => corrupt.push(Problem::Corrupt { key, reason }),
            Err(e) => return Err(e),
        }
    }
    Ok(Snapshot {
        blocks,
        handles,
        affinities,
        nodes: inventory::nodes(store).await?,
        pools: inventory::load_pools(store).await?,
        live: inventory::live_handles(store).await?,
        corrupt,
    })
}

impl Snapshot {
    /// Why an empty block should go back to its pool, if it should.
    fn releasable(&self, block: &Block) -> Option<String> {
        match self.pools.iter().find(|p| p.cidr == block.pool) {
            None => return Some(format!("pool {} no longer exists", block.pool)),
            Some(p) if p.disabled => return Some(format!("pool {} ({}) is disabled", p.name, p.cidr)),
            _ => {}
        }
        match &block.affinity {
            None => Some("no node holds it".into()),
            Some(n) if !self.nodes.contains_key(n) => Some(format!("node {n} no longer exists")),
            _ => None,
        }
    }

    fn problems(&self, grace: Duration, now: SystemTime) -> Vec<Problem> {
        let now = unix(now);
        let grace = grace.as_secs();
        let mut problems = self.corrupt.clone();

        // Double allocation: the same address in more than one block (blocks overlap).
        let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        let sorted: Vec<&Block> = {
            let mut v: Vec<&Block> = self.blocks.iter().map(|(_, b, _)| b).collect();
            v.sort_by_key(|b| b.cidr);
            v
        };
        for pair in sorted.windows(2) {
            if pair[0].cidr.contains(&pair[1].cidr.network()) {
                for (o, s) in &pair[0].allocations {
                    let ip = pair[0].ip_at(*o);
                    if pair[1].cidr.contains(&ip) {
                        holders.entry(ip).or_default().push(format!("{}:{}", pair[0].cidr, s.handle));
                    }
                }
                for (o, s) in &pair[1].allocations {
                    holders.entry(pair[1].ip_at(*o)).or_default().push(format!("{}:{}", pair[1].cidr, s.handle));
                }
            }
        }
        for (ip, h) in holders {
            if h.len() > 1 {
                problems.push(Problem::DoubleAllocation { ip, holders: h });
            }
        }

        let mut held: HashSet<&str> = HashSet::new();
        for (_, block, _) in &self.blocks {
            for (ordinal, slot) in &block.allocations {
                let ip = block.ip_at(*ordinal);
                held.insert(slot.handle.as_str());
                let age = now.saturating_sub(slot.allocated_at);
                if !self.live.contains(&slot.handle) && age >= grace {
                    problems.push(Problem::LeakedIp { ip, block: block.cidr, handle: slot.handle.clone(), age_secs: age });
                }
                let indexed = self.handles.get(&slot.handle).is_some_and(|(h, _)| h.blocks.contains(&block.cidr));
                if !indexed {
                    problems.push(Problem::UnindexedAllocation { ip, block: block.cidr, handle: slot.handle.clone() });
                }
            }
            match &block.affinity {
                Some(node) if !self.nodes.contains_key(node) && !block.is_empty() => {
                    problems.push(Problem::OrphanBlock { block: block.cidr, node: node.clone(), used: block.used() });
                }
                Some(node) if !self.affinities.iter().any(|(_, a)| &a.node == node && a.block == block.cidr) => {
                    problems.push(Problem::MissingAffinity { node: node.clone(), block: block.cidr });
                }
                _ => {}
            }
            if block.is_empty() {
                if let Some(reason) = self.releasable(block) {
                    problems.push(Problem::ReleasableBlock { block: block.cidr, reason });
                }
            }
        }
        for (id, (rec, _)) in &self.handles {
            if !held.contains(id.as_str()) && now.saturating_sub(rec.created_at) >= grace {
                problems.push(Problem::EmptyHandle { handle: id.clone() });
            }
        }
        for (_, a) in &self.affinities {
            let ok = self.blocks.iter().any(|(_, b, _)| b.cidr == a.block && b.affinity.as_deref() == Some(&a.node));
            if !ok && now.saturating_sub(a.created_at) >= grace {
                problems.push(Problem::StaleAffinity { node: a.node.clone(), block: a.block });
            }
        }
        problems
    }
}

/// What [`reconcile_handle`] did to one handle record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandleFix {
    Unchanged,
    /// The record now exists and lists blocks gc added to it.
    Reindexed,
    /// The record held nothing and is gone.
    Deleted,
}

/// Does `handle` hold an address in `cidr` right now? (A fresh read: blocks are the truth.)
async fn holds(store: &dyn Store, cidr: &IpNet, handle: &str) -> Result<bool, IpamError> {
    Ok(read::<Block>(store, &keys::block_key(cidr))
        .await?
        .is_some_and(|(b, _)| b.allocations.values().any(|s| s.handle == handle)))
}

/// Bring one handle record in line with the blocks, for the blocks in `cidrs` that gc's
/// snapshot saw disagreeing with it: list every block that holds the handle, and delete the
/// record when it holds nothing and `deletable` (the revision the snapshot read it at, only
/// given once it is older than the grace period) still matches.
///
/// Why not act on the snapshot directly: the store offers only single-key CAS, and gc reads
/// blocks and handles at different moments. A release frees the block first and deletes the
/// handle record last, so a snapshot taken across a release shows an allocation whose
/// record is gone; writing the record back then undoes the release. Likewise an allocation
/// that lands between the two reads shows a "record that holds nothing". So each pass here
/// decides on the record and the blocks as they are now, and after every write it makes, the
/// loop runs another pass that re-reads the blocks. A writer on the other side writes the block
/// and then reads the record (release: frees, then deletes its record on the revision it read;
/// allocate: takes, then confirms the record lists the block), so of any two racing operations
/// at least one sees the other's write. A record gc created that turns out to index nothing is
/// taken back with a CAS on the revision gc wrote; a record someone else wrote is never deleted
/// unless it is the old, empty one the snapshot found. The loop ends on a pass with nothing to
/// write.
async fn reconcile_handle(
    store: &dyn Store,
    handle: &str,
    mut cidrs: BTreeSet<IpNet>,
    deletable: Option<Revision>,
    node: &str,
    now: u64,
) -> Result<HandleFix, IpamError> {
    let hkey = keys::handle_key(handle);
    // The revision of a record gc created here (absent before): the only one it may take back.
    let mut created: Option<Revision> = None;
    let mut wrote = false;
    let mut deleted_original = false;
    let outcome = |wrote: bool, deleted: bool| match (wrote, deleted) {
        (true, _) => HandleFix::Reindexed,
        (false, true) => HandleFix::Deleted,
        (false, false) => HandleFix::Unchanged,
    };
    for attempt in 0..MAX_RETRIES {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let current = read::<HandleRecord>(store, &hkey).await?;
        if let Some((rec, _)) = &current {
            cidrs.extend(rec.blocks.iter().copied());
        }
        let mut held_now = BTreeSet::new();
        for cidr in &cidrs {
            if holds(store, cidr, handle).await? {
                held_now.insert(*cidr);
            }
        }
        match current {
            Some((mut rec, rev)) => {
                let unlisted: Vec<IpNet> = held_now.iter().filter(|c| !rec.blocks.contains(c)).copied().collect();
                if !unlisted.is_empty() {
                    rec.blocks.extend(unlisted);
                    if let Some(w) = cas_put(store, &hkey, encode(&rec), Condition::Revision(rev)).await? {
                        wrote = true;
                        if created.is_some() {
                            created = Some(w);
                        }
                    }
                    continue;
                }
                if !held_now.is_empty() {
                    return Ok(outcome(wrote, deleted_original));
                }
                let ours = created == Some(rev);
                if !ours && deletable != Some(rev) {
                    // Someone else's record (an allocation in flight writes it before the
                    // block), or one that changed since the snapshot: not gc's to delete.
                    return Ok(outcome(wrote, deleted_original));
                }
                if cas_delete(store, &hkey, Condition::Revision(rev)).await? {
                    if ours {
                        wrote = false;
                        created = None;
                    } else {
                        deleted_original = true;
                    }
                }
            }
            None => {
                if held_now.is_empty() {
                    return Ok(outcome(wrote, deleted_original));
                }
                let rec = HandleRecord {
                    handle: handle.to_string(),
                    node: node.to_string(),
                    blocks: held_now,
                    created_at: now,
                };
                if let Some(w) = cas_put(store, &hkey, encode(&rec), Condition::Absent).await? {
                    created = Some(w);
                    wrote = true;
                }
            }
        }
    }
    Err(IpamError::Contention { key: hkey })
}

/// What [`reconcile_affinity`] did to one affinity record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AffinityFix {
    Unchanged,
    /// The block is affine to the node and its missing record was written.
    Restored,
    /// The record pointed at a block that is gone or not the node's, and was deleted.
    Deleted,
}

/// When an affinity record that points at nothing may be deleted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AffinityRemoval {
    /// The caller just removed the block (or lost the claim): the record it first reads is
    /// stale. A record rewritten after that (a new claim) is judged by age only.
    pub first_seen: bool,
    /// Delete records at least this many seconds old at `now`; None: never by age.
    pub older_than: Option<u64>,
}

/// Bring the affinity record of (`node`, `cidr`) in line with the block, which is the truth:
/// restore it when the block is affine to the node, delete it (as `stale` allows) when not.
///
/// Claims write the record, then create the block, then confirm the record (this function
/// again); removals change the block, then drop the record here, and every write is followed
/// by another pass that re-reads the block. Two racing parties each write one key and then
/// read the other, so one of them always sees the other's write: a claim can no longer end
/// with its block unlisted, nor a removal leave a record pointing at nothing. Deletes are a
/// CAS on the revision read, so a record rewritten meanwhile (by a claim) survives.
pub(crate) async fn reconcile_affinity(
    store: &dyn Store,
    node: &str,
    cidr: &IpNet,
    stale: AffinityRemoval,
    now: u64,
) -> Result<AffinityFix, IpamError> {
    let akey = keys::affinity_key(node, cidr);
    let bkey = keys::block_key(cidr);
    let mut first_rev: Option<Option<Revision>> = None;
    let mut created: Option<Revision> = None;
    let mut fix = AffinityFix::Unchanged;
    for attempt in 0..MAX_RETRIES {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let affine = read::<Block>(store, &bkey).await?.is_some_and(|(b, _)| b.affinity.as_deref() == Some(node));
        let current = read::<AffinityRecord>(store, &akey).await?;
        let first = *first_rev.get_or_insert(current.as_ref().map(|(_, rev)| *rev));
        match current {
            None if affine => {
                let rec = AffinityRecord { node: node.to_string(), block: *cidr, created_at: now };
                if let Some(w) = cas_put(store, &akey, encode(&rec), Condition::Absent).await? {
                    created = Some(w);
                    fix = AffinityFix::Restored;
                }
            }
            Some((rec, rev)) if !affine => {
                let ours = created == Some(rev);
                let old = stale.older_than.is_some_and(|grace| now.saturating_sub(rec.created_at) >= grace);
                if !(ours || old || (stale.first_seen && first == Some(rev))) {
                    return Ok(fix);
                }
                if cas_delete(store, &akey, Condition::Revision(rev)).await? {
                    if ours {
                        created = None;
                        fix = AffinityFix::Unchanged;
                    } else {
                        fix = AffinityFix::Deleted;
                    }
                }
            }
            _ => return Ok(fix),
        }
    }
    Err(IpamError::Contention { key: akey })
}

pub(crate) async fn show(store: &dyn Store) -> Result<Report, IpamError> {
    let snap = snapshot(store).await?;
    let mut pools: Vec<PoolUsage> = snap
        .pools
        .iter()
        .map(|p| PoolUsage {
            name: Some(p.name.clone()),
            cidr: p.cidr,
            block_size: Some(p.block_size),
            disabled: p.disabled,
            node_selector: Some(p.node_selector.to_string()),
            size: 1u128.checked_shl(u32::from(p.cidr.max_prefix_len() - p.cidr.prefix_len())).unwrap_or(u128::MAX),
            blocks: 0,
            block_capacity: 0,
            used: 0,
        })
        .collect();
    let mut nodes: BTreeMap<String, NodeBlocks> = BTreeMap::new();
    let mut unaffine = Vec::new();
    for (_, block, _) in &snap.blocks {
        let idx = match pools.iter().position(|p| p.cidr == block.pool) {
            Some(i) => i,
            None => {
                pools.push(PoolUsage {
                    name: None,
                    cidr: block.pool,
                    block_size: None,
                    disabled: true,
                    node_selector: None,
                    size: 1u128
                        .checked_shl(u32::from(block.pool.max_prefix_len() - block.pool.prefix_len()))
                        .unwrap_or(u128::MAX),
                    blocks: 0,
                    block_capacity: 0,
                    used: 0,
                });
                pools.len() - 1
            }
        };
        pools[idx].blocks += 1;
        pools[idx].block_capacity += u64::from(block.size());
        pools[idx].used += u64::from(block.used());
        let info = BlockInfo::of(block);
        match &block.affinity {
            Some(n) => nodes
                .entry(n.clone())
                .or_insert_with(|| NodeBlocks { node: n.clone(), exists: snap.nodes.contains_key(n), blocks: Vec::new() })
                .blocks
                .push(info),
            None => unaffine.push(info),
        }
    }
    Ok(Report { pools, nodes: nodes.into_values().collect(), unaffine_blocks: unaffine })
}

pub(crate) async fn check(store: &dyn Store, grace: Duration, now: SystemTime) -> Result<CheckReport, IpamError> {
    let snap = snapshot(store).await?;
    Ok(CheckReport {
        blocks: snap.blocks.len(),
        allocations: snap.blocks.iter().map(|(_, b, _)| b.allocations.len()).sum(),
        handles: snap.handles.len(),
        problems: snap.problems(grace, now),
    })
}

pub(crate) async fn gc(store: &dyn Store, grace: Duration, now: SystemTime) -> Result<GcReport, IpamError> {
    let snap = snapshot(store).await?;
    let mut report = GcReport::default();
    let problems = snap.problems(grace, now);
    if let Some(p) = problems.iter().find(|p| p.is_severe()) {
        // Repairing around corruption could free an address somebody holds; stop and say why.
        return Err(IpamError::Corrupt {
            key: keys::ROOT.to_string(),
            reason: format!("refusing to gc while check reports {p:?}; fix that first"),
        });
    }

    // 1. Free leaked addresses, block by block (each a CAS that re-checks the slot).
    let mut leaked: BTreeMap<IpNet, Vec<(IpAddr, String, u64)>> = BTreeMap::new();
    for (_, block, _) in &snap.blocks {
        for (o, slot) in &block.allocations {
            let age = unix(now).saturating_sub(slot.allocated_at);
            if !snap.live.contains(&slot.handle) && age >= grace.as_secs() {
                leaked.entry(block.cidr).or_default().push((block.ip_at(*o), slot.handle.clone(), slot.allocated_at));
            }
        }
    }
    for (cidr, ips) in leaked {
        let bkey = keys::block_key(&cidr);
        loop {
            let Some((mut block, rev)) = read::<Block>(store, &bkey).await? else { break };
            let mut ordinals = Vec::new();
            for (ip, handle, at) in &ips {
                if let Some(o) = block.ordinal_of(*ip) {
                    if block.allocations.get(&o).is_some_and(|s| &s.handle == handle && s.allocated_at == *at) {
                        ordinals.push(o);
                    }
                }
            }
            let freed = block.release_ordinals(&ordinals);
            if freed.is_empty() {
                break;
            }
            if cas_put(store, &bkey, encode(&block), Condition::Revision(rev)).await?.is_some() {
                for ip in freed {
                    let handle = ips.iter().find(|(i, _, _)| *i == ip).map(|(_, h, _)| h.clone()).unwrap_or_default();
                    report.released_ips.push((ip, handle));
                }
                break;
            }
        }
    }

    // Re-read: the blocks changed, and later steps decide on their current contents.
    let snap = snapshot(store).await?;
    let mut held: BTreeMap<String, BTreeSet<IpNet>> = BTreeMap::new();
    for (_, block, _) in &snap.blocks {
        for slot in block.allocations.values() {
            held.entry(slot.handle.clone()).or_default().insert(block.cidr);
        }
    }

    // 2. Index allocations release-by-handle would miss (live handles: leaks were freed), and
    // 3. delete handle records that hold nothing any more. Both decide on the blocks as they
    // are when the record is written, not on the snapshot: a release may run between listing
    // the blocks and listing the handles (see `reconcile_handle`).
    for (handle, cidrs) in &held {
        let missing: BTreeSet<IpNet> = match snap.handles.get(handle) {
            Some((rec, _)) => cidrs.iter().filter(|c| !rec.blocks.contains(c)).copied().collect(),
            None => cidrs.clone(),
        };
        if missing.is_empty() {
            continue;
        }
        let node = snap
            .blocks
            .iter()
            .find(|(_, b, _)| cidrs.contains(&b.cidr))
            .and_then(|(_, b, _)| b.affinity.clone())
            .unwrap_or_default();
        if reconcile_handle(store, handle, missing, None, &node, unix(now)).await? == HandleFix::Reindexed {
            report.reindexed_handles.push(handle.clone());
        }
    }
    for (id, (rec, rev)) in &snap.handles {
        if held.contains_key(id) || unix(now).saturating_sub(rec.created_at) < grace.as_secs() {
            continue;
        }
        match reconcile_handle(store, id, rec.blocks.clone(), Some(*rev), &rec.node, unix(now)).await? {
            HandleFix::Deleted => report.deleted_handles.push(id.clone()),
            HandleFix::Reindexed => report.reindexed_handles.push(id.clone()),
            HandleFix::Unchanged => {}
        }
    }

    // 4. Blocks: return empty ones nobody should keep; detach non-empty ones of deleted nodes.
    for (key, block, rev) in &snap.blocks {
        if block.is_empty() {
            if snap.releasable(block).is_some() && cas_delete(store, key, Condition::Revision(*rev)).await? {
                if let Some(node) = &block.affinity {
                    reconcile_affinity(store, node, &block.cidr, crate::REMOVED, unix(now)).await?;
                }
                report.deleted_blocks.push(block.cidr);
            }
            continue;
        }
        match &block.affinity {
            Some(node) if !snap.nodes.contains_key(node) => {
                let mut b = block.clone();
                b.affinity = None;
                b.sequence += 1;
                if cas_put(store, key, encode(&b), Condition::Revision(*rev)).await?.is_some() {
                    reconcile_affinity(store, node, &block.cidr, crate::REMOVED, unix(now)).await?;
                    report.orphaned_blocks.push(block.cidr);
                }
            }
            Some(node) if !snap.affinities.iter().any(|(_, a)| &a.node == node && a.block == block.cidr) => {
                // Decided on the block as it is now: it may have been released or detached
                // since the snapshot, and restoring its record then would point at nothing.
                let keep = AffinityRemoval { first_seen: false, older_than: None };
                if reconcile_affinity(store, node, &block.cidr, keep, unix(now)).await? == AffinityFix::Restored {
                    report.restored_affinities.push((node.clone(), block.cidr));
                }
            }
            _ => {}
        }
    }

    // 5. Affinity records that point at nothing (a claim that crashed or lost its race), once
    // older than the grace period; a claim completing meanwhile rewrites the record (younger,
    // another revision), and the block is re-read after the delete.
    let aged = AffinityRemoval { first_seen: false, older_than: Some(grace.as_secs()) };
    for (_, a) in &snap.affinities {
        let ok = snap.blocks.iter().any(|(_, b, _)| b.cidr == a.block && b.affinity.as_deref() == Some(&a.node));
        if !ok
            && unix(now).saturating_sub(a.created_at) >= grace.as_secs()
            && reconcile_affinity(store, &a.node, &a.block, aged, unix(now)).await? == AffinityFix::Deleted
        {
            report.deleted_affinities.push((a.node.clone(), a.block));
        }
    }
    Ok(report)
}
