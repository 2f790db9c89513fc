//! What IP pool options ask of this node's dataplane: outgoing NAT and encapsulation checks.
//!
//! `natOutgoing` becomes Seam's own nftables table (`ip seam-nat`): traffic from a NAT pool
//! to a destination outside every pool is masqueraded; traffic between pools never is, so
//! workloads keep seeing each other's real addresses (the seed's no-NAT requirement). The
//! ruleset is a pure function of the pools, loaded in one `nft -f -` transaction that first
//! deletes the previous table, so a reload is atomic.

use ipnet::{IpNet, Ipv4Net};
use resources::{EncapMode, IPPool};

/// Seam's NAT table (family ip).
pub const NAT_TABLE: &str = "seam-nat";

/// The nft script that makes the NAT table match `pools`: the table replaced (or removed when
/// no pool asks for NAT). Pure.
pub fn nat_ruleset(pools: &[IPPool]) -> String {
    let v4 = |p: &IPPool| match p.spec.cidr {
        IpNet::V4(net) => Some(net),
        IpNet::V6(_) => None,
    };
    let all: Vec<Ipv4Net> = pools.iter().filter_map(v4).collect();
    let nat: Vec<Ipv4Net> = pools.iter().filter(|p| p.spec.nat_outgoing).filter_map(v4).collect();
    // `add` then `delete` makes the delete succeed whether or not the table existed.
    let mut script = format!("add table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
    if nat.is_empty() {
        return script;
    }
    let list = |nets: &[Ipv4Net]| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
    script.push_str(&format!(
        "table ip {NAT_TABLE} {{\n\
         \tset all-pools {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}\n\
         \tset nat-pools {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ {} }}\n\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr @nat-pools ip daddr != @all-pools masquerade\n\t}}\n}}\n",
        list(&all),
        list(&nat)
    ));
    script
}

/// Problems with pools this node cannot honour, one message per pool (logged and shown in
/// the agent's status; the agent keeps running and routes the pool natively).
pub fn pool_problems(pools: &[IPPool], ipip_supported: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for pool in pools {
        if pool.spec.ipip_mode != EncapMode::Never && !ipip_supported {
            problems.push(format!(
                "IPPool {}: spec.ipipMode {:?} cannot be honoured: this kernel has no IPIP support (module ipip); use vxlanMode instead",
                pool.name, pool.spec.ipip_mode
            ));
        }
        if pool.spec.vxlan_mode != EncapMode::Never && pool.spec.cidr.addr().is_ipv6() {
            problems.push(format!(
                "IPPool {}: spec.vxlanMode {:?} is not supported for IPv6 pools (Seam's VXLAN underlay is IPv4); routed natively",
                pool.name, pool.spec.vxlan_mode
            ));
        }
    }
    problems
}

/// Load an nft script in one transaction (a failing script changes nothing).
pub async fn load_nft(script: &str) -> anyhow::Result<()> {
    dataplane::nft::load(None, script)
        .await
        .map_err(|e| anyhow::anyhow!("nft rejected the {NAT_TABLE} ruleset: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::Labels;

    fn pool(name: &str, cidr: &str, nat: bool) -> IPPool {
        let mut p = IPPool {
            name: name.into(),
            labels: Labels::new(),
            spec: serde_json::from_value(serde_json::json!({ "cidr": cidr })).unwrap(),
        };
        p.spec.nat_outgoing = nat;
        p
    }

    #[test]
    fn nat_only_for_nat_pools_towards_outside_all_pools() {
        let pools = [pool("k8s", "10.244.0.0/16", true), pool("dcos", "10.245.0.0/16", false), pool("v6", "fd00::/48", true)];
        let script = nat_ruleset(&pools);
        assert!(script.starts_with("add table ip seam-nat\ndelete table ip seam-nat\ntable ip seam-nat {"));
        assert!(script.contains("set all-pools {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.244.0.0/16, 10.245.0.0/16 }"));
        assert!(script.contains("set nat-pools {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.244.0.0/16 }"));
        assert!(script.contains("ip saddr @nat-pools ip daddr != @all-pools masquerade"));
    }

    #[test]
    fn no_nat_pool_removes_the_table() {
        let script = nat_ruleset(&[pool("k8s", "10.244.0.0/16", false)]);
        assert_eq!(script, "add table ip seam-nat\ndelete table ip seam-nat\n");
    }

    #[test]
    fn ipip_refused_without_kernel_support_and_vxlan_reported() {
        let mut p = pool("k8s", "10.244.0.0/16", false);
        p.spec.ipip_mode = EncapMode::Always;
        let problems = pool_problems(std::slice::from_ref(&p), false);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("IPPool k8s: spec.ipipMode Always") && problems[0].contains("no IPIP"));
        assert!(pool_problems(std::slice::from_ref(&p), true).is_empty());
        let mut v = pool("dcos", "10.245.0.0/16", false);
        v.spec.vxlan_mode = EncapMode::CrossSubnet;
        assert!(pool_problems(std::slice::from_ref(&v), true).is_empty());
        let mut v6 = pool("v6", "fd00::/48", false);
        v6.spec.vxlan_mode = EncapMode::Always;
        assert!(pool_problems(&[v6], true)[0].contains("IPPool v6: spec.vxlanMode Always is not supported for IPv6"));
    }
}
