//! The IPAM's read-only view of the resources it depends on: IP pools (which ranges, which
//! nodes), nodes (labels, and whether they still exist) and workload endpoints (which handles
//! are live). Read from the resources crate's keys; kept in one place so the rest of the
//! crate never parses resource JSON itself.

use std::collections::{BTreeMap, HashSet};

use ipnet::IpNet;
use resources::{IPPoolSpec, Kind, Labels, Resource, ResourceError, WorkloadEndpointSpec};
use store::Store;

use crate::block::{validate_block_size, DEFAULT_V4_BLOCK, DEFAULT_V6_BLOCK};
use resources::Selector;
use crate::IpamError;

/// What allocation needs to know about one pool, validated.
#[derive(Clone, Debug)]
pub struct PoolInfo {
    pub name: String,
    pub cidr: IpNet,
    /// Prefix length of this pool's blocks.
    pub block_size: u8,
    pub node_selector: Selector,
    /// No new allocations; existing ones stay until released (the pool is being drained).
    pub disabled: bool,
}

impl PoolInfo {
    /// Validate a pool spec: block size in range and inside the pool, selector parses.
    pub fn from_spec(name: &str, spec: &IPPoolSpec) -> Result<PoolInfo, IpamError> {
        let invalid = |reason: String| IpamError::InvalidPool { pool: name.to_string(), reason };
        if spec.cidr.network() != spec.cidr.addr() {
            return Err(invalid(format!("cidr {} has host bits set", spec.cidr)));
        }
        // The resources crate leaves an unset blockSize as an out-of-range sentinel until it
        // normalizes the pool; treat anything it did not set as the family default.
        let block_size = match (spec.cidr, spec.block_size) {
            (IpNet::V4(_), b) if b > 32 => DEFAULT_V4_BLOCK,
            (IpNet::V6(_), b) if b > 128 => DEFAULT_V6_BLOCK,
            (_, b) => b,
        };
        validate_block_size(spec.cidr, block_size).map_err(invalid)?;
        let node_selector =
            Selector::parse(&spec.node_selector).map_err(|e| invalid(format!("nodeSelector: {e}")))?;
        Ok(PoolInfo { name: name.to_string(), cidr: spec.cidr, block_size, node_selector, disabled: spec.disabled })
    }

    /// May `node` (with these labels) take new blocks from this pool?
    pub fn usable_by(&self, labels: &Labels) -> bool {
        !self.disabled && self.node_selector.matches(labels)
    }
}

/// Every resource of one kind, decoded (and validated) by the resources crate.
async fn all(store: &dyn Store, kind: Kind) -> Result<Vec<Resource>, IpamError> {
    Ok(resources::get(store, kind, None, None).await?)
}

/// Every pool, in CIDR order (allocation prefers the lowest matching pool). A pool that does
/// not validate is an error naming it: allocating around a broken pool would hide the problem.
pub async fn load_pools(store: &dyn Store) -> Result<Vec<PoolInfo>, IpamError> {
    let mut pools = Vec::new();
    for r in all(store, Kind::IPPool).await? {
        if let Resource::IPPool(p) = r {
            pools.push(PoolInfo::from_spec(&p.name, &p.spec)?);
        }
    }
    pools.sort_by_key(|p| p.cidr);
    Ok(pools)
}

/// A node's labels, or None if the node does not exist.
pub async fn node_labels(store: &dyn Store, node: &str) -> Result<Option<Labels>, IpamError> {
    match resources::get(store, Kind::Node, None, Some(node)).await {
        Ok(mut found) => match found.pop() {
            Some(Resource::Node(n)) => Ok(Some(n.labels)),
            _ => Ok(None),
        },
        Err(ResourceError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every node that exists, with its labels.
pub async fn nodes(store: &dyn Store) -> Result<BTreeMap<String, Labels>, IpamError> {
    let mut nodes = BTreeMap::new();
    for r in all(store, Kind::Node).await? {
        if let Resource::Node(n) = r {
            nodes.insert(n.name, n.labels);
        }
    }
    Ok(nodes)
}

/// The handle ids (`container_id.interface`) of every workload endpoint that exists: an
/// allocation whose handle is not here has no live workload behind it.
pub async fn live_handles(store: &dyn Store) -> Result<HashSet<String>, IpamError> {
    let mut live = HashSet::new();
    for r in all(store, Kind::WorkloadEndpoint).await? {
        if let Resource::WorkloadEndpoint(w) = r {
            if let Some(id) = endpoint_handle(&w.spec) {
                live.insert(id);
            }
        }
    }
    Ok(live)
}

/// The handle a workload endpoint's addresses were allocated under: its container ID and
/// the interface inside the container (`endpoint`, `eth0` when unset, as CNI defaults).
pub fn endpoint_handle(spec: &WorkloadEndpointSpec) -> Option<String> {
    if spec.container_id.is_empty() {
        return None;
    }
    let interface = if spec.endpoint.is_empty() { "eth0" } else { spec.endpoint.as_str() };
    Some(crate::Handle::id_of(&spec.container_id, interface))
}
