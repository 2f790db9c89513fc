//! Where IPAM state lives in the store, and the small records other than blocks.
//!
//! ```text
//! /seam/v1/ipam/config                     IpamConfig (strictAffinity)
//! /seam/v1/ipam/blocks/<cidr>              Block (source of truth for who holds which IP)
//! /seam/v1/ipam/handles/<handle>           HandleRecord (index: which blocks a handle used)
//! /seam/v1/ipam/affinity/<node>/<cidr>     AffinityRecord (index: a node's blocks)
//! ```
//!
//! `<cidr>` is written with `-` instead of `/` (`192.168.0.64-26`) so a key stays one path
//! segment. Every mutation is a single-key compare-and-swap; the write order (affinity before
//! block, handle before block allocation) means a crash leaves at worst a dangling index
//! entry or an unindexed allocation, which `check` reports and `gc` repairs, never an address
//! held twice.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::IpamError;

pub const ROOT: &str = "/seam/v1/ipam/";
pub const CONFIG: &str = "/seam/v1/ipam/config";
pub const BLOCKS: &str = "/seam/v1/ipam/blocks/";
pub const HANDLES: &str = "/seam/v1/ipam/handles/";
pub const AFFINITY: &str = "/seam/v1/ipam/affinity/";

pub fn encode_cidr(cidr: &IpNet) -> String {
    cidr.to_string().replace('/', "-")
}

pub fn decode_cidr(segment: &str) -> Option<IpNet> {
    let (addr, len) = segment.rsplit_once('-')?;
    format!("{addr}/{len}").parse().ok()
}

pub fn block_key(cidr: &IpNet) -> String {
    format!("{BLOCKS}{}", encode_cidr(cidr))
}

pub fn handle_key(handle_id: &str) -> String {
    format!("{HANDLES}{handle_id}")
}

pub fn affinity_prefix(node: &str) -> String {
    format!("{AFFINITY}{node}/")
}

pub fn affinity_key(node: &str, cidr: &IpNet) -> String {
    format!("{AFFINITY}{node}/{}", encode_cidr(cidr))
}

/// Cluster-wide IPAM settings, like Calico's IPAMConfig.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// Never hand out addresses from a block affine to another node (no borrowing).
    #[serde(default)]
    pub strict_affinity: bool,
}

/// The index entry for one handle: the blocks that may hold its addresses. Written *before*
/// the block allocation, so it is always a superset of the truth; release visits each block
/// and frees what the handle really holds there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    pub handle: String,
    /// The node the allocation was made for.
    pub node: String,
    pub blocks: BTreeSet<IpNet>,
    /// Unix seconds of the record's last write by an allocation (created, or a block added),
    /// so GC leaves a handle whose allocation is still in flight alone.
    pub created_at: u64,
}

/// The index entry saying `node` claimed `block`. Written before the block is created; the
/// block's own `affinity` field is authoritative when they disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityRecord {
    pub node: String,
    pub block: IpNet,
    pub created_at: u64,
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, IpamError> {
    serde_json::from_slice(value).map_err(|e| IpamError::Corrupt { key: key.to_string(), reason: e.to_string() })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("IPAM records always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_segments_round_trip() {
        for s in ["192.168.0.64/26", "fd00::40/122", "10.0.0.1/32"] {
            let net: IpNet = s.parse().unwrap();
            let seg = encode_cidr(&net);
            assert!(!seg.contains('/'));
            assert_eq!(decode_cidr(&seg), Some(net));
        }
        assert_eq!(decode_cidr("nonsense"), None);
        assert_eq!(block_key(&"10.0.0.0/26".parse().unwrap()), "/seam/v1/ipam/blocks/10.0.0.0-26");
        assert_eq!(affinity_key("n1", &"10.0.0.0/26".parse().unwrap()), "/seam/v1/ipam/affinity/n1/10.0.0.0-26");
    }
}
