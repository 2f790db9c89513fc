//! VXLAN encapsulation between nodes, for pools with `vxlanMode` Always or CrossSubnet.
//!
//! One VXLAN device per node ([`VXLAN_DEVICE`]). Nothing has to be exchanged through the
//! datastore: a node's VTEP MAC is derived from its underlay address ([`vtep_mac`]), and the
//! tunnel next hop of a remote block is the remote node's underlay address itself (the BGP
//! next hop), installed as `block via NH dev vxlan.seam onlink` with a permanent neighbour
//! entry NH -> MAC(NH) and an FDB entry MAC(NH) -> NH on the device. Which routes are
//! encapsulated is the pure [`EncapPolicy`].

use std::net::{IpAddr, Ipv4Addr};

use dataplane::MacAddr;
use ipnet::{IpNet, Ipv4Net};
use resources::{EncapMode, IPPool};

/// The VXLAN device's name.
pub const VXLAN_DEVICE: &str = "vxlan.seam";
/// VXLAN network identifier Seam uses (Calico's default VNI too).
pub const VXLAN_VNI: u32 = 4096;
/// IANA's VXLAN port (RFC 7348 §5).
pub const VXLAN_PORT: u16 = 4789;
/// Outer IPv4 + UDP + VXLAN + inner Ethernet headers: the device MTU is the underlay's minus this.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The VTEP MAC of the node whose underlay address is `addr`: locally administered, unicast
/// (first octet 0x66), the address in the last four octets.
pub fn vtep_mac(addr: Ipv4Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x66, 0x73, o[0], o[1], o[2], o[3]])
}

/// Which learned routes go through the tunnel. Pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncapPolicy {
    /// Every pool's range with its VXLAN mode.
    pub pools: Vec<(IpNet, EncapMode)>,
    /// This node's underlay subnet (CrossSubnet encapsulates only towards other subnets).
    pub local_subnet: Option<Ipv4Net>,
}

impl EncapPolicy {
    pub fn new(pools: &[IPPool], local_subnet: Ipv4Net) -> EncapPolicy {
        EncapPolicy { pools: pools.iter().map(|p| (p.spec.cidr, p.spec.vxlan_mode)).collect(), local_subnet: Some(local_subnet) }
    }

    /// Is any pool asking for VXLAN (so the device must exist)?
    pub fn any(&self) -> bool {
        self.pools.iter().any(|(_, mode)| *mode != EncapMode::Never)
    }

    /// Should `prefix via next_hop` be encapsulated?
    pub fn encapsulate(&self, prefix: &IpNet, next_hop: IpAddr) -> bool {
        let IpAddr::V4(nh) = next_hop else { return false };
        let Some((_, mode)) = self.pools.iter().find(|(pool, _)| pool.contains(prefix)) else { return false };
        match mode {
            EncapMode::Never => false,
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !self.local_subnet.is_some_and(|s| s.contains(&nh)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EncapPolicy {
        EncapPolicy {
            pools: vec![
                ("10.1.0.0/16".parse().unwrap(), EncapMode::Never),
                ("10.2.0.0/16".parse().unwrap(), EncapMode::Always),
                ("10.3.0.0/16".parse().unwrap(), EncapMode::CrossSubnet),
            ],
            local_subnet: Some("172.16.18.0/24".parse().unwrap()),
        }
    }

    #[test]
    fn modes_decide_per_pool_and_subnet() {
        let p = policy();
        let same: IpAddr = "172.16.18.34".parse().unwrap();
        let other: IpAddr = "172.16.19.5".parse().unwrap();
        assert!(!p.encapsulate(&"10.1.0.0/26".parse().unwrap(), other));
        assert!(p.encapsulate(&"10.2.0.64/26".parse().unwrap(), same));
        assert!(!p.encapsulate(&"10.3.0.0/26".parse().unwrap(), same));
        assert!(p.encapsulate(&"10.3.0.0/26".parse().unwrap(), other));
        // Outside every pool (e.g. a route from an external peer): never.
        assert!(!p.encapsulate(&"192.168.0.0/24".parse().unwrap(), other));
        assert!(p.any());
        assert!(!EncapPolicy::default().any());
    }

    #[test]
    fn vtep_macs_are_local_unicast_and_distinct() {
        let a = vtep_mac("172.16.18.33".parse().unwrap());
        let b = vtep_mac("172.16.18.34".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.0, [0x66, 0x73, 172, 16, 18, 33]);
        assert_eq!(a.0[0] & 0b11, 0b10, "locally administered, unicast");
    }
}
