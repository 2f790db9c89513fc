//! Pure block logic: the record stored at `blocks/<cidr>`, address <-> ordinal math, allocation
//! and release inside one block. No I/O: the caller reads the block, mutates it here, and
//! writes it back with a compare-and-swap on the revision it read.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Smallest and largest block prefix lengths accepted per family (as Calico does), so a block
/// holds between 1 and 4096 addresses and fits comfortably in one store value.
pub const V4_BLOCK_RANGE: (u8, u8) = (20, 32);
pub const V6_BLOCK_RANGE: (u8, u8) = (116, 128);
/// Default block sizes: a /26 (64 addresses) for IPv4, a /122 (64 addresses) for IPv6.
pub const DEFAULT_V4_BLOCK: u8 = 26;
pub const DEFAULT_V6_BLOCK: u8 = 122;

/// One allocated address inside a block. The block is the source of truth for who holds
/// which address; handle records are only an index into blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The handle id (`container_id.interface`) that owns this address.
    pub handle: String,
    /// Who the address is for: namespace, pod/task name, orchestrator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Unix seconds of the allocation, so GC can leave in-flight CNI ADDs alone.
    pub allocated_at: u64,
}

/// The record at `blocks/<cidr>`: a block of a pool, possibly affine to one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The block's own CIDR (one of the pool's subnets of the pool's block size).
    pub cidr: IpNet,
    /// The pool the block was carved from.
    pub pool: IpNet,
    /// The node that claimed the block; None once that node was deleted or released it.
    #[serde(default)]
    pub affinity: Option<String>,
    /// Bumped on every change, so watchers (the agent) can tell a block was reused.
    #[serde(default)]
    pub sequence: u64,
    /// Where the next allocation search starts: released addresses are reused last, which
    /// keeps a just-freed IP (and stale conntrack / ARP state for it) out of circulation.
    #[serde(default)]
    pub next: u32,
    /// Allocated ordinals (offset from the block's network address) and who holds them.
    #[serde(default)]
    pub allocations: BTreeMap<u32, Slot>,
}

impl Block {
    /// A new, empty block claimed by `affinity`.
    pub fn new(cidr: IpNet, pool: IpNet, affinity: Option<String>) -> Block {
        Block { cidr, pool, affinity, sequence: 0, next: 0, allocations: BTreeMap::new() }
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> u32 {
        block_size(self.cidr)
    }

    pub fn used(&self) -> u32 {
        self.allocations.len() as u32
    }

    pub fn free(&self) -> u32 {
        self.size().saturating_sub(self.used())
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// The address at `ordinal` (0 is the block's network address).
    pub fn ip_at(&self, ordinal: u32) -> IpAddr {
        nth_addr(self.cidr, ordinal as u128)
    }

    /// The ordinal of `ip`, or None if it is outside the block.
    pub fn ordinal_of(&self, ip: IpAddr) -> Option<u32> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        let base = addr_to_u128(self.cidr.network());
        Some((addr_to_u128(ip) - base) as u32)
    }

    /// Take the next free address for `handle`, or None if the block is full.
    pub fn allocate(
        &mut self,
        handle: &str,
        attributes: &BTreeMap<String, String>,
        now_unix: u64,
    ) -> Option<IpAddr> {
        let size = self.size();
        if self.used() >= size {
            return None;
        }
        let start = if self.next < size { self.next } else { 0 };
        let ordinal = (0..size).map(|i| (start + i) % size).find(|o| !self.allocations.contains_key(o))?;
        self.allocations.insert(
            ordinal,
            Slot { handle: handle.to_string(), attributes: attributes.clone(), allocated_at: now_unix },
        );
        self.next = (ordinal + 1) % size;
        self.sequence += 1;
        Some(self.ip_at(ordinal))
    }

    /// Every address `handle` holds in this block.
    pub fn ips_of(&self, handle: &str) -> Vec<IpAddr> {
        self.allocations.iter().filter(|(_, s)| s.handle == handle).map(|(o, _)| self.ip_at(*o)).collect()
    }

    /// Free every address held by `handle`; returns them (empty if it held none).
    pub fn release_handle(&mut self, handle: &str) -> Vec<IpAddr> {
        let ordinals: Vec<u32> =
            self.allocations.iter().filter(|(_, s)| s.handle == handle).map(|(o, _)| *o).collect();
        self.release_ordinals(&ordinals)
    }

    /// Free these ordinals (those not allocated are ignored); returns the freed addresses.
    pub fn release_ordinals(&mut self, ordinals: &[u32]) -> Vec<IpAddr> {
        let mut freed = Vec::new();
        for o in ordinals {
            if self.allocations.remove(o).is_some() {
                freed.push(self.ip_at(*o));
            }
        }
        if !freed.is_empty() {
            self.sequence += 1;
        }
        freed
    }

    /// Internal consistency problems (a corrupted or hand-edited record).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cidr.network() != self.cidr.addr() {
            problems.push(format!("block cidr {} has host bits set", self.cidr));
        }
        if !self.pool.contains(&self.cidr) {
            problems.push(format!("block {} lies outside its pool {}", self.cidr, self.pool));
        }
        let (lo, hi) = match self.cidr {
            IpNet::V4(_) => V4_BLOCK_RANGE,
            IpNet::V6(_) => V6_BLOCK_RANGE,
        };
        if self.cidr.prefix_len() < lo || self.cidr.prefix_len() > hi {
            problems.push(format!("block {} has prefix length outside {lo}..={hi}", self.cidr));
            return problems;
        }
        let size = self.size();
        for (ordinal, slot) in &self.allocations {
            if *ordinal >= size {
                problems.push(format!("ordinal {ordinal} is beyond the block's {size} addresses"));
            }
            if slot.handle.is_empty() {
                problems.push(format!("address {} has an empty handle", self.ip_at(*ordinal)));
            }
        }
        problems
    }
}

/// Number of addresses in a block-sized CIDR (callers validate the prefix range first).
pub fn block_size(cidr: IpNet) -> u32 {
    let host_bits = cidr.max_prefix_len() - cidr.prefix_len();
    1u32 << host_bits.min(31)
}

/// Check a pool's block size against its family's range and the pool's own prefix.
pub fn validate_block_size(pool: IpNet, block_size: u8) -> Result<(), String> {
    let (lo, hi) = match pool {
        IpNet::V4(_) => V4_BLOCK_RANGE,
        IpNet::V6(_) => V6_BLOCK_RANGE,
    };
    if block_size < lo || block_size > hi {
        return Err(format!("blockSize {block_size} for pool {pool} must be within {lo}..={hi}"));
    }
    if block_size < pool.prefix_len() {
        return Err(format!("blockSize {block_size} is larger than pool {pool} itself"));
    }
    Ok(())
}

/// The first block of `block_size` in `pool` that `taken` does not contain, scanning the pool
/// in address order. Lazy, so a huge IPv6 pool is never enumerated.
pub fn first_free_block(
    pool: IpNet,
    block_size: u8,
    taken: &dyn Fn(&IpNet) -> bool,
) -> Option<IpNet> {
    pool.subnets(block_size).ok()?.find(|b| !taken(b))
}

/// The `n`th address of `net` counting from its network address.
pub fn nth_addr(net: IpNet, n: u128) -> IpAddr {
    let base = addr_to_u128(net.network());
    match net {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from((base + n) as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(base + n)),
    }
}

fn addr_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn v4_block_allocates_every_address_once() {
        let mut b = Block::new(net("192.168.0.64/26"), net("192.168.0.0/17"), Some("n1".into()));
        let attrs = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            let ip = b.allocate(&format!("h{i}"), &attrs, 7).unwrap();
            assert!(b.cidr.contains(&ip));
            assert!(seen.insert(ip), "{ip} twice");
        }
        assert_eq!(b.allocate("full", &attrs, 7), None);
        assert_eq!(b.free(), 0);
        assert_eq!(b.ip_at(0), "192.168.0.64".parse::<IpAddr>().unwrap());
        assert_eq!(b.ip_at(63), "192.168.0.127".parse::<IpAddr>().unwrap());
        assert!(b.problems().is_empty());
    }

    #[test]
    fn released_addresses_are_reused_last() {
        let mut b = Block::new(net("10.0.0.0/30"), net("10.0.0.0/24"), None);
        let a = BTreeMap::new();
        let first = b.allocate("a", &a, 0).unwrap();
        assert_eq!(b.release_handle("a"), vec![first]);
        // The cursor moved on: the freed .0 is not handed out again until the rest are used.
        let order: Vec<IpAddr> = (0..4).map(|i| b.allocate(&format!("x{i}"), &a, 0).unwrap()).collect();
        let expect: Vec<IpAddr> =
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.0"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(order, expect);
    }

    #[test]
    fn release_by_handle_frees_only_that_handle() {
        let mut b = Block::new(net("10.0.0.0/29"), net("10.0.0.0/24"), None);
        let a = BTreeMap::new();
        let x1 = b.allocate("x", &a, 0).unwrap();
        let y = b.allocate("y", &a, 0).unwrap();
        let x2 = b.allocate("x", &a, 0).unwrap();
        assert_eq!(b.ips_of("x"), vec![x1, x2]);
        assert_eq!(b.release_handle("x"), vec![x1, x2]);
        assert_eq!(b.release_handle("x"), Vec::<IpAddr>::new());
        assert_eq!(b.ips_of("y"), vec![y]);
        assert_eq!(b.used(), 1);
    }

    #[test]
    fn v6_block_math() {
        let mut b = Block::new(net("fd00:0:0:1::40/122"), net("fd00::/48"), None);
        assert_eq!(b.size(), 64);
        let ip = b.allocate("h", &BTreeMap::new(), 0).unwrap();
        assert_eq!(ip, "fd00:0:0:1::40".parse::<IpAddr>().unwrap());
        assert_eq!(b.ordinal_of("fd00:0:0:1::7f".parse().unwrap()), Some(63));
        assert_eq!(b.ordinal_of("fd00:0:0:1::80".parse().unwrap()), None);
    }

    #[test]
    fn first_free_block_skips_taken_blocks_lazily() {
        let pool = net("fd00::/48");
        let taken = [net("fd00::/122"), net("fd00::40/122")];
        let free = first_free_block(pool, 122, &|b| taken.contains(b)).unwrap();
        assert_eq!(free, net("fd00::80/122"));
        let small = net("10.0.0.0/25");
        let all = [net("10.0.0.0/26"), net("10.0.0.64/26")];
        assert_eq!(first_free_block(small, 26, &|b| all.contains(b)), None);
    }

    #[test]
    fn block_size_validation() {
        assert!(validate_block_size(net("192.168.0.0/17"), 26).is_ok());
        assert!(validate_block_size(net("192.168.0.0/17"), 19).is_err());
        assert!(validate_block_size(net("192.168.0.0/24"), 20).is_err());
        assert!(validate_block_size(net("fd00::/48"), 122).is_ok());
        assert!(validate_block_size(net("fd00::/48"), 64).is_err());
    }

    #[test]
    fn problems_find_corruption() {
        let mut b = Block::new(net("10.0.0.0/30"), net("10.1.0.0/16"), None);
        b.allocations.insert(9, Slot { handle: String::new(), attributes: BTreeMap::new(), allocated_at: 0 });
        let p = b.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("outside its pool"));
        assert!(p[1].contains("beyond"));
    }
}
