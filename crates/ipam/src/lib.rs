//! IP address management for Seam: IP pools per orchestrator (chosen by `nodeSelector`),
//! node-affine blocks claimed with compare-and-swap, allocations keyed by a handle (container
//! ID + interface), idempotent allocate/release, and a leak check + GC.
//!
//! Pure logic over [`store::Store`]: no kernel, no sockets of its own, so it is tested on the
//! embedded store and runs unchanged on etcd. Every mutation is a single-key CAS retried on
//! `Conflict`, and writes are ordered so that a crash at any point leaves at worst a leak that
//! [`Ipam::check`] reports and [`Ipam::gc`] reclaims — never an address held twice (an address
//! is taken only by a CAS on its block, the single source of truth).

pub mod audit;
pub mod block;
pub mod inventory;
pub mod keys;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use store::{Condition, KeyValue, Revision, Store, StoreError};

pub use audit::{CheckReport, GcReport, NodeBlocks, PoolUsage, Problem, Report};
pub use block::Block;
pub use inventory::PoolInfo;
pub use keys::IpamConfig;
use audit::AffinityRemoval;
use keys::{decode, encode, AffinityRecord, HandleRecord};

/// How removals (a deleted block, a lost claim, a released node) drop the affinity record:
/// the record they find first is stale; one a new claim writes afterwards is kept.
const REMOVED: AffinityRemoval = AffinityRemoval { first_seen: true, older_than: None };

/// Well-known allocation attribute keys (what the CNI plugin records for each address).
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_POD: &str = "pod";
pub const ATTR_ORCHESTRATOR: &str = "orchestrator";

/// How often one allocation or release retries after losing a CAS race before giving up.
/// Generous: with many allocators on one block, each round lets at least one writer win.
const MAX_RETRIES: usize = 10_000;

/// Everything that can go wrong, with the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored resource (pool, node, endpoint) the IPAM reads did not decode.
    #[error(transparent)]
    Resource(#[from] resources::ResourceError),
    /// Allocation asked for a node the store does not know.
    #[error("node {0:?} does not exist (create the Node resource before allocating for it)")]
    NodeNotFound(String),
    /// No enabled pool of this family selects the node.
    #[error("no enabled IPv{family} pool selects node {node:?}")]
    NoPool { node: String, family: u8 },
    /// Every usable pool is full (or, with strictAffinity, every block affine to the node is).
    #[error("IPv{family} addresses exhausted for node {node:?}{hint}")]
    Exhausted { node: String, family: u8, hint: &'static str },
    #[error("invalid handle {handle:?}: {reason}")]
    InvalidHandle { handle: String, reason: String },
    #[error("invalid node name {node:?}: {reason}")]
    InvalidNode { node: String, reason: String },
    #[error("IP pool {pool:?}: {reason}")]
    InvalidPool { pool: String, reason: String },
    /// A stored record does not decode or contradicts itself.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// Lost the CAS race too many times in a row.
    #[error("gave up on {key} after {MAX_RETRIES} conflicting writes")]
    Contention { key: String },
}

/// Who an allocation belongs to: one container interface (as in CNI: container ID + ifname).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Handle {
    pub container_id: String,
    pub interface: String,
}

impl Handle {
    /// A validated handle; the parts end up in store keys, so `/` and the `.` separator's
    /// ambiguity in the interface are rejected.
    pub fn new(container_id: &str, interface: &str) -> Result<Handle, IpamError> {
        let bad = |reason: &str| IpamError::InvalidHandle {
            handle: format!("{container_id}.{interface}"),
            reason: reason.to_string(),
        };
        let ok_chars = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if container_id.is_empty() || interface.is_empty() {
            return Err(bad("container id and interface must both be non-empty"));
        }
        if !ok_chars(container_id) || !ok_chars(interface) || interface.contains('.') {
            return Err(bad("only letters, digits, '-', '_', ':' and '.' (not in the interface) are allowed"));
        }
        if container_id.len() + interface.len() > 250 {
            return Err(bad("longer than 250 characters"));
        }
        Ok(Handle { container_id: container_id.to_string(), interface: interface.to_string() })
    }

    /// The string stored in blocks and used as the handle's key: `container_id.interface`.
    pub fn id(&self) -> String {
        Handle::id_of(&self.container_id, &self.interface)
    }

    pub fn id_of(container_id: &str, interface: &str) -> String {
        format!("{container_id}.{interface}")
    }

    /// Parse `container_id.interface` (the interface is after the last dot).
    pub fn parse(id: &str) -> Result<Handle, IpamError> {
        match id.rsplit_once('.') {
            Some((c, i)) => Handle::new(c, i),
            None => Err(IpamError::InvalidHandle {
                handle: id.to_string(),
                reason: "expected CONTAINER_ID.INTERFACE".into(),
            }),
        }
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.container_id, self.interface)
    }
}

/// One request from the CNI plugin / node agent.
#[derive(Clone, Debug)]
pub struct AllocationRequest {
    pub handle: Handle,
    /// The node the workload runs on: addresses come from its affine blocks.
    pub node: String,
    /// namespace / pod (or task) name / orchestrator, stored with each address.
    pub attributes: BTreeMap<String, String>,
    pub num_ipv4: u32,
    pub num_ipv6: u32,
}

impl AllocationRequest {
    /// One IPv4 address, no attributes.
    pub fn new(node: &str, handle: Handle) -> AllocationRequest {
        AllocationRequest { handle, node: node.to_string(), attributes: BTreeMap::new(), num_ipv4: 1, num_ipv6: 0 }
    }
}

/// One address handed out, with the block (what BGP announces) and pool it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedIp {
    pub ip: IpAddr,
    pub block: IpNet,
    pub pool: IpNet,
}

/// The result of [`Ipam::allocate`]. Allocating again with the same handle returns the same
/// addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub handle: Handle,
    pub ips: Vec<AllocatedIp>,
}

/// A block as the node agent and `seam ipam show` see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub cidr: IpNet,
    pub pool: IpNet,
    pub affinity: Option<String>,
    pub size: u32,
    pub used: u32,
}

impl BlockInfo {
    fn of(block: &Block) -> BlockInfo {
        BlockInfo {
            cidr: block.cidr,
            pool: block.pool,
            affinity: block.affinity.clone(),
            size: block.size(),
            used: block.used(),
        }
    }
}

/// What [`release_node`] did with a deleted node's blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// Empty blocks deleted (their range is free for any node again).
    pub blocks_released: Vec<IpNet>,
    /// Blocks that still hold addresses: their affinity was removed and they are deleted by
    /// `gc` once their allocations are released or found leaked.
    pub blocks_orphaned: Vec<IpNet>,
}

/// The IPAM client. Cheap to clone; holds no state but the store and a clock.
#[derive(Clone)]
pub struct Ipam {
    store: Arc<dyn Store>,
    /// Wall clock for allocation timestamps (GC compares them with its grace period).
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    /// Leak grace used by [`Ipam::check`]: younger allocations may be in-flight CNI ADDs.
    check_grace: Duration,
    /// Per node, the affine block that last had room: tried first, so an allocation costs a
    /// couple of reads instead of a scan of every block the node holds. Only a hint: the
    /// block is re-read and CAS-written like any other.
    hints: Arc<std::sync::Mutex<HashMap<String, IpNet>>>,
}

/// Read a record and its revision, or None.
async fn read<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, Revision)>, IpamError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(KeyValue { value, mod_revision, .. }) => Ok(Some((decode(key, &value)?, mod_revision))),
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { .. })
}

/// Put with CAS; Ok(None) when the condition failed (caller re-reads and retries).
async fn cas_put(
    store: &dyn Store,
    key: &str,
    value: Vec<u8>,
    cond: Condition,
) -> Result<Option<Revision>, IpamError> {
    match store.put(key, value, cond).await {
        Ok(rev) => Ok(Some(rev)),
        Err(e) if is_conflict(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Delete with CAS; Ok(false) when the condition failed.
async fn cas_delete(store: &dyn Store, key: &str, cond: Condition) -> Result<bool, IpamError> {
    match store.delete(key, cond).await {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Brief pause between CAS retries so losers do not spin in lock step with the winner.
async fn backoff(attempt: usize) {
    if attempt < 3 {
        tokio::task::yield_now().await;
    } else {
        let micros = 50 * (attempt.min(40) as u64) + (attempt as u64 * 7919) % 211;
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn validate_node(node: &str) -> Result<(), IpamError> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IpamError::InvalidNode {
            node: node.to_string(),
            reason: "expected 1-253 letters, digits, '-', '_' or '.'".into(),
        })
    }
}

/// The block and handle state one allocation call carries between attempts.
struct HandleState {
    record: Option<(HandleRecord, Revision)>,
    /// The revision of the handle record as this call last wrote it. A record the call only
    /// read (a retried ADD, or one gc re-created) may be deleted by a concurrent gc before the
    /// block write lands, so it is read again after the block write; see `confirm_index`.
    written: Option<Revision>,
}

impl Ipam {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Ipam {
            store,
            clock: Arc::new(SystemTime::now),
            check_grace: Duration::from_secs(600),
            hints: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// Use another clock (tests move time forward to exercise the GC grace period).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> SystemTime + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// Allocations younger than this are not reported as leaks by [`Ipam::check`].
    pub fn with_check_grace(mut self, grace: Duration) -> Self {
        self.check_grace = grace;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// The cluster IPAM config (defaults when never written).
    pub async fn config(&self) -> Result<IpamConfig, IpamError> {
        Ok(read::<IpamConfig>(&*self.store, keys::CONFIG).await?.map(|(c, _)| c).unwrap_or_default())
    }

    pub async fn set_config(&self, config: &IpamConfig) -> Result<(), IpamError> {
        self.store.put(keys::CONFIG, encode(config), Condition::Always).await?;
        Ok(())
    }

    /// Allocate addresses for `req.handle` on `req.node`. Idempotent: addresses the handle
    /// already holds count towards the request and are returned again.
    pub async fn allocate(&self, req: AllocationRequest) -> Result<Allocation, IpamError> {
        validate_node(&req.node)?;
        let handle_id = req.handle.id();
        let store = &*self.store;
        let labels = inventory::node_labels(store, &req.node)
            .await?
            .ok_or_else(|| IpamError::NodeNotFound(req.node.clone()))?;
        let config = self.config().await?;
        let pools = inventory::load_pools(store).await?;

        let mut state =
            HandleState { record: read::<HandleRecord>(store, &keys::handle_key(&handle_id)).await?, written: None };
        // What the handle already holds (a retried CNI ADD, or a crash after the block write).
        let mut held: Vec<AllocatedIp> = Vec::new();
        if let Some((rec, _)) = &state.record {
            for cidr in &rec.blocks {
                if let Some((block, _)) = read::<Block>(store, &keys::block_key(cidr)).await? {
                    for ip in block.ips_of(&handle_id) {
                        held.push(AllocatedIp { ip, block: block.cidr, pool: block.pool });
                    }
                }
            }
        }

        let mut ips = Vec::new();
        for (family, wanted) in [(4u8, req.num_ipv4), (6u8, req.num_ipv6)] {
            let is_family = |ip: &IpAddr| (family == 4) == ip.is_ipv4();
            let mut have: Vec<AllocatedIp> = held.iter().filter(|a| is_family(&a.ip)).cloned().collect();
            have.truncate(wanted as usize);
            if (have.len() as u32) < wanted {
                let candidates: Vec<&PoolInfo> = pools
                    .iter()
                    .filter(|p| (family == 4) == p.cidr.addr().is_ipv4() && p.usable_by(&labels))
                    .collect();
                if candidates.is_empty() {
                    return Err(IpamError::NoPool { node: req.node.clone(), family });
                }
                while (have.len() as u32) < wanted {
                    let got = self
                        .allocate_one(&req, &handle_id, &candidates, &config, family, &mut state)
                        .await?;
                    have.push(got);
                }
            }
            ips.extend(have);
        }
        Ok(Allocation { handle: req.handle, ips })
    }

    /// One address: from the node's affine blocks, else a newly claimed block, else (unless
    /// strictAffinity) borrowed from any block of a usable pool.
    async fn allocate_one(
        &self,
        req: &AllocationRequest,
        handle_id: &str,
        pools: &[&PoolInfo],
        config: &IpamConfig,
        family: u8,
        state: &mut HandleState,
    ) -> Result<AllocatedIp, IpamError> {
        let store = &*self.store;
        let in_pools = |cidr: &IpNet| pools.iter().any(|p| p.cidr.contains(cidr));
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // 1. A block this node already claimed: the one that last had room, then all.
            let hint = self.hints.lock().expect("hint lock").get(&req.node).copied();
            if let Some(cidr) = hint.filter(|c| in_pools(c)) {
                let bkey = keys::block_key(&cidr);
                if let Some(kv) = store.get(&bkey).await? {
                    let block: Block = decode(&bkey, &kv.value)?;
                    if block.affinity.as_deref() == Some(req.node.as_str()) && block.free() > 0 {
                        match self.take_in_block(req, handle_id, block, kv.mod_revision, state).await? {
                            Some(ip) => return Ok(ip),
                            None => continue,
                        }
                    }
                }
            }
            let (affs, _) = store.list(&keys::affinity_prefix(&req.node)).await?;
            let mut lost_race = false;
            for kv in &affs {
                let rec: AffinityRecord = decode(&kv.key, &kv.value)?;
                if !in_pools(&rec.block) {
                    continue;
                }
                let bkey = keys::block_key(&rec.block);
                let Some(kv) = store.get(&bkey).await? else { continue };
                let block: Block = decode(&bkey, &kv.value)?;
                if block.affinity.as_deref() != Some(req.node.as_str()) || block.free() == 0 {
                    continue;
                }
                match self.take_in_block(req, handle_id, block, kv.mod_revision, state).await? {
                    Some(ip) => {
                        self.hints.lock().expect("hint lock").insert(req.node.clone(), ip.block);
                        return Ok(ip);
                    }
                    None => {
                        lost_race = true;
                        break;
                    }
                }
            }
            if lost_race {
                continue;
            }

            // 2. Claim a free block range from the first pool that has one.
            let (blocks, _) = store.list(keys::BLOCKS).await?;
            let mut existing: Vec<(Block, Revision)> = Vec::with_capacity(blocks.len());
            for kv in &blocks {
                existing.push((decode(&kv.key, &kv.value)?, kv.mod_revision));
            }
            let taken = |c: &IpNet| existing.iter().any(|(b, _)| b.cidr.contains(&c.network()) || c.contains(&b.cidr));
            let mut found_range = false;
            for pool in pools {
                if let Some(cidr) = block::first_free_block(pool.cidr, pool.block_size, &taken) {
                    found_range = true;
                    // Won or lost, step 1 / the next free range is tried on the next round.
                    self.claim_block(&req.node, pool, cidr).await?;
                    break;
                }
            }
            if found_range {
                continue;
            }

            // 3. Borrow from any block of a usable pool, unless strict affinity forbids it.
            if config.strict_affinity {
                return Err(IpamError::Exhausted {
                    node: req.node.clone(),
                    family,
                    hint: " (strictAffinity forbids borrowing from other nodes' blocks)",
                });
            }
            let mut any_free = false;
            for (block, rev) in existing {
                if !in_pools(&block.cidr) || block.free() == 0 {
                    continue;
                }
                any_free = true;
                if let Some(ip) = self.take_in_block(req, handle_id, block, rev, state).await? {
                    return Ok(ip);
                }
                break; // lost a race: re-read everything
            }
            if !any_free {
                return Err(IpamError::Exhausted { node: req.node.clone(), family, hint: "" });
            }
        }
        Err(IpamError::Contention { key: keys::affinity_prefix(&req.node) })
    }

    /// Record the block in the handle index, then take an address in it with a CAS on the
    /// revision it was read at. Ok(None): the block changed under us, re-read.
    async fn take_in_block(
        &self,
        req: &AllocationRequest,
        handle_id: &str,
        mut block: Block,
        rev: Revision,
        state: &mut HandleState,
    ) -> Result<Option<AllocatedIp>, IpamError> {
        self.index_handle(req, handle_id, block.cidr, state).await?;
        let now = unix(self.now());
        let Some(ip) = block.allocate(handle_id, &req.attributes, now) else { return Ok(None) };
        let key = keys::block_key(&block.cidr);
        match cas_put(&*self.store, &key, encode(&block), Condition::Revision(rev)).await? {
            Some(_) => {
                let listed_by_us = state.record.as_ref().is_some_and(|(_, r)| Some(*r) == state.written);
                if !listed_by_us {
                    self.confirm_index(req, handle_id, block.cidr, state).await?;
                }
                Ok(Some(AllocatedIp { ip, block: block.cidr, pool: block.pool }))
            }
            None => Ok(None),
        }
    }

    /// After the block write, when the handle record that lists the block was read rather
    /// than written by this call: read it again and re-index if it is gone or changed. gc
    /// deletes a record that held nothing (or takes back one it wrote itself) and then re-reads
    /// the blocks; writing the block and then reading the record here means that, however the
    /// two interleave, one side sees the other and the new address never ends up unindexed.
    async fn confirm_index(
        &self,
        req: &AllocationRequest,
        handle_id: &str,
        cidr: IpNet,
        state: &mut HandleState,
    ) -> Result<(), IpamError> {
        state.record = read::<HandleRecord>(&*self.store, &keys::handle_key(handle_id)).await?;
        if state.record.as_ref().is_some_and(|(rec, _)| rec.blocks.contains(&cidr)) {
            return Ok(());
        }
        self.index_handle(req, handle_id, cidr, state).await
    }

    /// Make sure the handle record lists `cidr` before an address there is taken.
    async fn index_handle(
        &self,
        req: &AllocationRequest,
        handle_id: &str,
        cidr: IpNet,
        state: &mut HandleState,
    ) -> Result<(), IpamError> {
        let key = keys::handle_key(handle_id);
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, cond) = match state.record.take() {
                Some((rec, rev)) => (rec, Condition::Revision(rev)),
                None => (
                    HandleRecord {
                        handle: handle_id.to_string(),
                        node: req.node.clone(),
                        blocks: BTreeSet::new(),
                        created_at: unix(self.now()),
                    },
                    Condition::Absent,
                ),
            };
            if rec.blocks.contains(&cidr) {
                let rev = match cond {
                    Condition::Revision(r) => r,
                    _ => unreachable!("a fresh record lists no block"),
                };
                state.record = Some((rec, rev));
                return Ok(());
            }
            rec.blocks.insert(cidr);
            // An allocation is in flight on this record now: restart its grace period, so gc
            // does not delete it as empty before the block write lands (which would leave the
            // address unindexed, since a record this call wrote is not re-read afterwards).
            rec.created_at = unix(self.now());
            if let Some(rev) = cas_put(&*self.store, &key, encode(&rec), cond).await? {
                state.record = Some((rec, rev));
                state.written = Some(rev);
                return Ok(());
            }
            // Someone else touched the handle (a concurrent retry of the same ADD): re-read.
            state.record = read::<HandleRecord>(&*self.store, &key).await?;
        }
        Err(IpamError::Contention { key })
    }

    /// Claim `cidr` for `node`: affinity index first, then the block itself with
    /// `Condition::Absent` (the CAS that decides who owns it). Ok(false): another node won.
    async fn claim_block(&self, node: &str, pool: &PoolInfo, cidr: IpNet) -> Result<bool, IpamError> {
        let store = &*self.store;
        let akey = keys::affinity_key(node, &cidr);
        let rec = AffinityRecord { node: node.to_string(), block: cidr, created_at: unix(self.now()) };
        store.put(&akey, encode(&rec), Condition::Always).await?;
        let block = Block::new(cidr, pool.cidr, Some(node.to_string()));
        let now = unix(self.now());
        match cas_put(store, &keys::block_key(&cidr), encode(&block), Condition::Absent).await? {
            Some(_) => {
                // A gc or release may have dropped the record between our two writes (it
                // then re-reads the block; we re-read the record): put it back if so.
                let keep = AffinityRemoval { first_seen: false, older_than: None };
                audit::reconcile_affinity(store, node, &cidr, keep, now).await?;
                Ok(true)
            }
            None => {
                // The range went to someone else: drop our index entry unless it now is ours.
                if let Some((b, _)) = read::<Block>(store, &keys::block_key(&cidr)).await? {
                    if b.affinity.as_deref() == Some(node) {
                        return Ok(true);
                    }
                }
                audit::reconcile_affinity(store, node, &cidr, REMOVED, now).await?;
                Ok(false)
            }
        }
    }

    /// Release every address held by `handle`. Idempotent: an unknown handle releases nothing.
    pub async fn release(&self, handle: &Handle) -> Result<Vec<IpAddr>, IpamError> {
        let store = &*self.store;
        let handle_id = handle.id();
        let hkey = keys::handle_key(&handle_id);
        let mut freed = Vec::new();
        let mut pools: Option<Vec<PoolInfo>> = None;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((rec, rev)) = read::<HandleRecord>(store, &hkey).await? else { return Ok(freed) };
            for cidr in &rec.blocks {
                freed.extend(self.release_in_block(cidr, &handle_id, &mut pools).await?);
            }
            // The record goes last: until then a crash leaves it, and a retry frees the rest.
            if cas_delete(store, &hkey, Condition::Revision(rev)).await? {
                return Ok(freed);
            }
        }
        Err(IpamError::Contention { key: hkey })
    }

    /// Free `handle_id`'s addresses in one block (CAS loop); delete the block if it is left
    /// empty and nobody should keep it (no affinity, or its pool is disabled or gone).
    async fn release_in_block(
        &self,
        cidr: &IpNet,
        handle_id: &str,
        pools: &mut Option<Vec<PoolInfo>>,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let store = &*self.store;
        let bkey = keys::block_key(cidr);
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((mut block, rev)) = read::<Block>(store, &bkey).await? else { return Ok(Vec::new()) };
            let freed = block.release_handle(handle_id);
            if freed.is_empty() {
                return Ok(freed);
            }
            if block.is_empty() {
                if pools.is_none() {
                    *pools = Some(inventory::load_pools(store).await?);
                }
                let pool_active =
                    pools.as_ref().is_some_and(|ps| ps.iter().any(|p| p.cidr == block.pool && !p.disabled));
                if block.affinity.is_none() || !pool_active {
                    if cas_delete(store, &bkey, Condition::Revision(rev)).await? {
                        if let Some(node) = &block.affinity {
                            audit::reconcile_affinity(store, node, cidr, REMOVED, unix(self.now())).await?;
                        }
                        return Ok(freed);
                    }
                    continue;
                }
            }
            if cas_put(store, &bkey, encode(&block), Condition::Revision(rev)).await?.is_some() {
                return Ok(freed);
            }
        }
        Err(IpamError::Contention { key: bkey })
    }

    /// The blocks affine to `node` (what its agent announces over BGP).
    pub async fn node_blocks(&self, node: &str) -> Result<Vec<BlockInfo>, IpamError> {
        validate_node(node)?;
        let store = &*self.store;
        let (affs, _) = store.list(&keys::affinity_prefix(node)).await?;
        let mut out = Vec::new();
        for kv in affs {
            let rec: AffinityRecord = decode(&kv.key, &kv.value)?;
            if let Some((block, _)) = read::<Block>(store, &keys::block_key(&rec.block)).await? {
                if block.affinity.as_deref() == Some(node) {
                    out.push(BlockInfo::of(&block));
                }
            }
        }
        out.sort_by_key(|b| b.cidr);
        Ok(out)
    }

    /// Blocks per node and usage per pool.
    pub async fn show(&self) -> Result<Report, IpamError> {
        audit::show(&*self.store).await
    }

    /// Leaked addresses, double allocations, corrupt records, blocks of deleted nodes, and
    /// index entries that disagree with the blocks.
    pub async fn check(&self) -> Result<CheckReport, IpamError> {
        audit::check(&*self.store, self.check_grace, self.now()).await
    }

    /// Free what `check` finds, for allocations older than `grace` at `now`.
    pub async fn gc(&self, grace: Duration, now: SystemTime) -> Result<GcReport, IpamError> {
        audit::gc(&*self.store, grace, now).await
    }
}

/// Release a deleted node's blocks: empty ones are deleted, the others lose their affinity
/// (their addresses stay valid until released or reclaimed by `gc`). Idempotent.
pub async fn release_node(store: &dyn Store, node: &str) -> Result<ReleaseSummary, IpamError> {
    validate_node(node)?;
    let mut summary = ReleaseSummary::default();
    // Blocks are the truth: also catch blocks whose affinity record was never written.
    let (kvs, _) = store.list(keys::BLOCKS).await?;
    let mut cidrs: BTreeSet<IpNet> = BTreeSet::new();
    for kv in &kvs {
        let block: Block = decode(&kv.key, &kv.value)?;
        if block.affinity.as_deref() == Some(node) {
            cidrs.insert(block.cidr);
        }
    }
    let (affs, _) = store.list(&keys::affinity_prefix(node)).await?;
    for kv in &affs {
        let rec: AffinityRecord = decode(&kv.key, &kv.value)?;
        cidrs.insert(rec.block);
    }
    for cidr in cidrs {
        let bkey = keys::block_key(&cidr);
        for attempt in 0..=MAX_RETRIES {
            if attempt == MAX_RETRIES {
                return Err(IpamError::Contention { key: bkey });
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((mut block, rev)) = read::<Block>(store, &bkey).await? else { break };
            if block.affinity.as_deref() != Some(node) {
                break;
            }
            if block.is_empty() {
                if cas_delete(store, &bkey, Condition::Revision(rev)).await? {
                    summary.blocks_released.push(cidr);
                    break;
                }
            } else {
                block.affinity = None;
                block.sequence += 1;
                if cas_put(store, &bkey, encode(&block), Condition::Revision(rev)).await?.is_some() {
                    summary.blocks_orphaned.push(cidr);
                    break;
                }
            }
        }
        audit::reconcile_affinity(store, node, &cidr, REMOVED, unix(SystemTime::now())).await?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
