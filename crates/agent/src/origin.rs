//! Announcing this node's affine blocks over BGP and withdrawing the ones it gave up.
//!
//! [`plan`] is the pure part (what to announce and withdraw given what is announced and what
//! the IPAM says); [`Originator`] reads the IPAM, releases blocks that a DEL left empty, and
//! drives `CoreControl`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bgp::wire::{Origin, PathAttributes};
use bgpd::CoreControl;
use ipam::{Block, BlockInfo, Ipam};
use ipnet::IpNet;
use resources::{Kind, Resource};
use store::{Condition, Store, StoreError};

/// Changes to make to the locally originated routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPlan {
    pub announce: Vec<IpNet>,
    pub withdraw: Vec<IpNet>,
}

/// Pure diff between what is announced and what should be.
pub fn plan(announced: &BTreeSet<IpNet>, desired: &BTreeSet<IpNet>) -> OriginPlan {
    OriginPlan {
        announce: desired.difference(announced).copied().collect(),
        withdraw: announced.difference(desired).copied().collect(),
    }
}

/// Which of `blocks` to announce: all, except blocks of pools with `disableBGPExport` and
/// blocks `released` in this round.
pub fn exported(blocks: &[BlockInfo], no_export_pools: &BTreeSet<IpNet>, released: &BTreeSet<IpNet>) -> BTreeSet<IpNet> {
    blocks
        .iter()
        .filter(|b| !no_export_pools.contains(&b.pool) && !released.contains(&b.cidr))
        .map(|b| b.cidr)
        .collect()
}

/// The attributes of an announced block: ORIGIN IGP, next hop = this node.
pub fn block_attributes(next_hop: Ipv4Addr) -> PathAttributes {
    PathAttributes { origin: Some(Origin::Igp), next_hop: Some(next_hop.into()), ..PathAttributes::default() }
}

/// Give up an empty block affine to `node`: delete it only if it is still empty and still
/// ours at the revision read (a concurrent allocation wins the race), then its affinity index.
/// Returns whether it was released.
pub async fn release_empty_block(store: &dyn Store, node: &str, cidr: &IpNet) -> anyhow::Result<bool> {
    let key = ipam::keys::block_key(cidr);
    let Some(kv) = store.get(&key).await? else { return Ok(false) };
    let block: Block = serde_json::from_slice(&kv.value).map_err(|e| anyhow::anyhow!("block {key} is corrupt: {e}"))?;
    if !block.is_empty() || block.affinity.as_deref() != Some(node) {
        return Ok(false);
    }
    match store.delete(&key, Condition::Revision(kv.mod_revision)).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    match store.delete(&ipam::keys::affinity_key(node, cidr), Condition::Always).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the announced blocks in line with the IPAM.
pub struct Originator {
    pub node: String,
    pub address: Ipv4Addr,
    pub ipam: Ipam,
    pub control: CoreControl,
    /// What we announced (and bgpd holds as local routes).
    pub announced: BTreeSet<IpNet>,
    /// Blocks seen holding addresses: when one of these is found empty, a DEL emptied it and
    /// its affinity is released (a block just claimed by an ADD in flight is empty too, but was
    /// never seen used, so it is left alone).
    pub seen_used: BTreeSet<IpNet>,
}

impl Originator {
    pub fn new(node: String, address: Ipv4Addr, ipam: Ipam, control: CoreControl) -> Originator {
        Originator { node, address, ipam, control, announced: BTreeSet::new(), seen_used: BTreeSet::new() }
    }

    /// One round: read the blocks, release emptied ones, announce / withdraw the difference.
    pub async fn sync(&mut self) -> anyhow::Result<OriginPlan> {
        let store = self.ipam.store().clone();
        let blocks = self.ipam.node_blocks(&self.node).await?;
        let no_export: BTreeSet<IpNet> = resources::get(&*store, Kind::IPPool, None, None)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                Resource::IPPool(p) if p.spec.disable_bgp_export => Some(p.spec.cidr),
                _ => None,
            })
            .collect();
        let mut released = BTreeSet::new();
        for block in &blocks {
            if block.used > 0 {
                self.seen_used.insert(block.cidr);
            } else if self.seen_used.contains(&block.cidr) {
                if release_empty_block(&*store, &self.node, &block.cidr).await? {
                    tracing::info!(block = %block.cidr, "released the affinity of an empty block");
                    released.insert(block.cidr);
                }
                self.seen_used.remove(&block.cidr);
            }
        }
        let current: BTreeSet<IpNet> = blocks.iter().map(|b| b.cidr).collect();
        self.seen_used.retain(|c| current.contains(c));
        let desired = exported(&blocks, &no_export, &released);
        let plan = plan(&self.announced, &desired);
        for prefix in &plan.announce {
            self.control
                .originate(*prefix, block_attributes(self.address))
                .await
                .map_err(|e| anyhow::anyhow!("cannot announce block {prefix}: {e}"))?;
            self.announced.insert(*prefix);
            tracing::info!(block = %prefix, "announcing block");
        }
        for prefix in &plan.withdraw {
            // NotFound means bgpd no longer has it: the goal is reached either way.
            if let Err(e) = self.control.withdraw(*prefix).await {
                if !matches!(e, seam_api::ControlError::NotFound(_)) {
                    return Err(anyhow::anyhow!("cannot withdraw block {prefix}: {e}"));
                }
            }
            self.announced.remove(prefix);
            tracing::info!(block = %prefix, "withdrew block");
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<IpNet> {
        items.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn info(cidr: &str, pool: &str, used: u32) -> BlockInfo {
        BlockInfo { cidr: cidr.parse().unwrap(), pool: pool.parse().unwrap(), affinity: Some("a".into()), size: 64, used }
    }

    #[test]
    fn plan_is_the_difference() {
        let p = plan(&set(&["10.0.0.0/26", "10.0.0.64/26"]), &set(&["10.0.0.64/26", "10.0.0.128/26"]));
        assert_eq!(p.announce, vec!["10.0.0.128/26".parse::<IpNet>().unwrap()]);
        assert_eq!(p.withdraw, vec!["10.0.0.0/26".parse::<IpNet>().unwrap()]);
        assert_eq!(plan(&set(&["10.0.0.0/26"]), &set(&["10.0.0.0/26"])), OriginPlan::default());
    }

    #[test]
    fn export_skips_no_export_pools_and_released_blocks() {
        let blocks = [info("10.0.0.0/26", "10.0.0.0/16", 1), info("10.1.0.0/26", "10.1.0.0/16", 1), info("10.0.0.64/26", "10.0.0.0/16", 0)];
        let out = exported(&blocks, &set(&["10.1.0.0/16"]), &set(&["10.0.0.64/26"]));
        assert_eq!(out, set(&["10.0.0.0/26"]));
    }

    #[test]
    fn attributes_are_igp_with_our_next_hop() {
        let a = block_attributes("10.0.0.1".parse().unwrap());
        assert_eq!(a.origin, Some(Origin::Igp));
        assert_eq!(a.next_hop, Some("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn releases_only_an_empty_block_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&format!("file:{}", dir.path().join("s.redb").display())).await.unwrap();
        let pool: resources::IPPool = resources::IPPool {
            name: "p".into(),
            labels: Default::default(),
            spec: serde_json::from_value(serde_json::json!({"cidr": "10.50.0.0/24", "blockSize": 26})).unwrap(),
        };
        let node = resources::Node { name: "a".into(), labels: Default::default(), spec: Default::default() };
        resources::apply(&*store, vec![Resource::IPPool(pool), Resource::Node(node)]).await.unwrap();
        let ipam = Ipam::new(store.clone());
        let handle = ipam::Handle::new("c1", "eth0").unwrap();
        let alloc = ipam.allocate(ipam::AllocationRequest::new("a", handle.clone())).await.unwrap();
        let cidr = ipam.node_blocks("a").await.unwrap()[0].cidr;
        assert!(!alloc.ips.is_empty());
        // In use: kept. Someone else's: kept.
        assert!(!release_empty_block(&*store, "a", &cidr).await.unwrap());
        ipam.release(&handle).await.unwrap();
        assert!(!release_empty_block(&*store, "b", &cidr).await.unwrap());
        assert_eq!(ipam.node_blocks("a").await.unwrap().len(), 1, "empty affine blocks stay by default");
        assert!(release_empty_block(&*store, "a", &cidr).await.unwrap());
        assert!(ipam.node_blocks("a").await.unwrap().is_empty());
        assert!(store.get(&ipam::keys::affinity_key("a", &cidr)).await.unwrap().is_none());
    }
}
