//! Checks serde cannot express (CIDR host bits, block sizes, AS ranges, selector syntax,
//! rule consistency), plus the defaults that depend on other fields (block size per family,
//! policy types from the rules). Every failure carries the field path inside the document.

use ipnet::IpNet;

use crate::parse::DocError;
use crate::selector::validate_selector;
use crate::types::*;
use crate::Resource;

fn err<T>(path: &str, reason: impl Into<String>) -> Result<T, DocError> {
    Err((path.to_string(), reason.into()))
}

/// Names follow Kubernetes' DNS subdomain rule (what Calico enforces too), so every name is a
/// safe store-key segment and a valid Kubernetes object name.
pub(crate) fn check_name(path: &str, name: &str) -> Result<(), DocError> {
    if name.is_empty() {
        return err(path, "missing; every resource needs a name");
    }
    if name.len() > 253 {
        return err(path, format!("{name:?} is longer than 253 characters"));
    }
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return err(
            path,
            format!("{name:?} is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"),
        );
    }
    Ok(())
}

fn check_selector(path: &str, selector: &str) -> Result<(), DocError> {
    validate_selector(selector).map_err(|reason| (path.to_string(), format!("invalid selector {selector:?}: {reason}")))
}

/// Optional selectors: empty means "not set".
fn check_opt_selector(path: &str, selector: &str) -> Result<(), DocError> {
    if selector.trim().is_empty() {
        Ok(())
    } else {
        check_selector(path, selector)
    }
}

fn check_labels(labels: &Labels) -> Result<(), DocError> {
    for key in labels.keys() {
        if key.is_empty() || key.len() > 316 || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            return err(&format!("metadata.labels.{key}"), format!("{key:?} is not a valid label key"));
        }
    }
    Ok(())
}

fn check_cidr(path: &str, cidr: &IpNet) -> Result<(), DocError> {
    if cidr.trunc() != *cidr {
        return err(path, format!("{cidr} has host bits set; did you mean {}?", cidr.trunc()));
    }
    Ok(())
}

/// Fill in derived defaults and check one resource; paths are relative to its document.
pub(crate) fn normalize_and_validate(resource: Resource) -> Result<Resource, DocError> {
    let mut resource = resource;
    check_labels(resource.labels())?;
    if let Some(ns) = resource.namespace() {
        check_name("metadata.namespace", ns)?;
    }
    match &mut resource {
        Resource::IPPool(p) => {
            check_name("metadata.name", &p.name)?;
            ippool(&mut p.spec)?
        }
        Resource::BGPConfiguration(c) => {
            check_name("metadata.name", &c.name)?;
            bgp_configuration(&c.spec)?
        }
        Resource::BGPPeer(p) => {
            check_name("metadata.name", &p.name)?;
            bgp_peer(&p.spec)?
        }
        Resource::Node(n) => {
            check_name("metadata.name", &n.name)?;
            if let Some(bgp) = &n.spec.bgp {
                if bgp.ipv4_address.is_none() && bgp.ipv6_address.is_none() {
                    return err("spec.bgp", "needs ipv4Address or ipv6Address");
                }
            }
        }
        Resource::WorkloadEndpoint(w) => {
            check_name("metadata.name", &w.name)?;
            if w.spec.node.is_empty() {
                return err("spec.node", "missing; the node the endpoint lives on");
            }
            if w.spec.orchestrator.is_empty() {
                return err("spec.orchestrator", "missing (e.g. k8s, nomad, cni)");
            }
        }
        Resource::NetworkPolicy(p) => {
            check_name("metadata.name", &p.name)?;
            let s = &mut p.spec;
            policy_common(s.order, &s.selector, &mut s.types, &s.ingress, &s.egress)?;
            check_opt_selector("spec.serviceAccountSelector", &s.service_account_selector)?;
        }
        Resource::GlobalNetworkPolicy(p) => {
            check_name("metadata.name", &p.name)?;
            let s = &mut p.spec;
            policy_common(s.order, &s.selector, &mut s.types, &s.ingress, &s.egress)?;
            check_opt_selector("spec.namespaceSelector", &s.namespace_selector)?;
            check_opt_selector("spec.serviceAccountSelector", &s.service_account_selector)?;
            if s.do_not_track && s.pre_dnat {
                return err("spec.preDNAT", "cannot be combined with doNotTrack");
            }
        }
        Resource::Profile(p) => {
            check_name("metadata.name", &p.name)?;
            rules("spec.ingress", &p.spec.ingress)?;
            rules("spec.egress", &p.spec.egress)?;
        }
    }
    Ok(resource)
}

fn ippool(spec: &mut IPPoolSpec) -> Result<(), DocError> {
    check_cidr("spec.cidr", &spec.cidr)?;
    let (range, default) = match spec.cidr {
        IpNet::V4(_) => (20..=32, 26),
        IpNet::V6(_) => (116..=128, 122),
    };
    if spec.block_size == BLOCK_SIZE_UNSET {
        spec.block_size = default.max(spec.cidr.prefix_len());
    }
    if !range.contains(&spec.block_size) {
        return err(
            "spec.blockSize",
            format!("{} is out of range {}..={} for {}", spec.block_size, range.start(), range.end(), spec.cidr),
        );
    }
    if spec.block_size < spec.cidr.prefix_len() {
        return err(
            "spec.blockSize",
            format!("{} is shorter than the pool's prefix /{}: a block cannot be larger than its pool", spec.block_size, spec.cidr.prefix_len()),
        );
    }
    if spec.ipip_mode != EncapMode::Never && spec.vxlan_mode != EncapMode::Never {
        return err("spec.vxlanMode", "IPIP and VXLAN cannot both be enabled on one pool");
    }
    if spec.ipip_mode != EncapMode::Never && matches!(spec.cidr, IpNet::V6(_)) {
        return err("spec.ipipMode", "IP-in-IP carries IPv4 only; use Never for an IPv6 pool");
    }
    check_selector("spec.nodeSelector", &spec.node_selector)?;
    if spec.allowed_uses.is_empty() {
        return err("spec.allowedUses", "must list at least one use");
    }
    Ok(())
}

fn bgp_configuration(spec: &BGPConfigurationSpec) -> Result<(), DocError> {
    if let Some(level) = &spec.log_severity_screen {
        let known = ["debug", "info", "warning", "error", "fatal"];
        if !known.contains(&level.to_ascii_lowercase().as_str()) {
            return err("spec.logSeverityScreen", format!("unknown level {level:?}, expected Debug, Info, Warning, Error or Fatal"));
        }
    }
    for (field, list) in [
        ("serviceClusterIPs", &spec.service_cluster_ips),
        ("serviceExternalIPs", &spec.service_external_ips),
        ("serviceLoadBalancerIPs", &spec.service_load_balancer_ips),
    ] {
        for (i, s) in list.iter().enumerate() {
            check_cidr(&format!("spec.{field}[{i}].cidr"), &s.cidr)?;
        }
    }
    if spec.listen_port == Some(0) {
        return err("spec.listenPort", "0 is not a port");
    }
    Ok(())
}

fn bgp_peer(spec: &BGPPeerSpec) -> Result<(), DocError> {
    if spec.node.is_some() && spec.node_selector.is_some() {
        return err("spec.nodeSelector", "cannot be combined with spec.node");
    }
    if let Some(node) = &spec.node {
        check_name("spec.node", node)?;
    }
    if let Some(sel) = &spec.node_selector {
        check_selector("spec.nodeSelector", sel)?;
    }
    match &spec.peer_selector {
        Some(sel) => {
            check_selector("spec.peerSelector", sel)?;
            if spec.peer_ip.is_some() {
                return err("spec.peerIP", "cannot be combined with peerSelector");
            }
            if spec.as_number.is_some() {
                return err("spec.asNumber", "cannot be combined with peerSelector (the selected nodes' AS is used)");
            }
        }
        None => {
            let Some(ip) = spec.peer_ip else {
                return err("spec.peerIP", "missing; a peer needs peerIP and asNumber (or a peerSelector)");
            };
            if ip.is_unspecified() || ip.is_multicast() {
                return err("spec.peerIP", format!("{ip} cannot be a BGP peer address"));
            }
            if spec.as_number.is_none() {
                return err("spec.asNumber", "missing; a peer with peerIP needs its AS number");
            }
        }
    }
    if spec.ttl_security == Some(0) {
        return err("spec.ttlSecurity", "must be 1-255 hops");
    }
    Ok(())
}

fn policy_common(
    order: Option<f64>,
    selector: &str,
    types: &mut Vec<PolicyType>,
    ingress: &[Rule],
    egress: &[Rule],
) -> Result<(), DocError> {
    if let Some(o) = order {
        if !o.is_finite() {
            return err("spec.order", "must be a finite number");
        }
    }
    check_opt_selector("spec.selector", selector)?;
    rules("spec.ingress", ingress)?;
    rules("spec.egress", egress)?;
    if types.is_empty() {
        // Calico's default: always Ingress, Egress when there are egress rules.
        types.push(PolicyType::Ingress);
        if !egress.is_empty() {
            types.push(PolicyType::Egress);
        }
    } else {
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                return err(&format!("spec.types[{i}]"), format!("{t:?} is listed twice"));
            }
        }
        if !types.contains(&PolicyType::Ingress) && !ingress.is_empty() {
            return err("spec.ingress", "ingress rules given but types does not include Ingress");
        }
        if !types.contains(&PolicyType::Egress) && !egress.is_empty() {
            return err("spec.egress", "egress rules given but types does not include Egress");
        }
    }
    Ok(())
}

fn rules(path: &str, rules: &[Rule]) -> Result<(), DocError> {
    for (i, rule) in rules.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(v) = rule.ip_version {
            if v != 4 && v != 6 {
                return err(&format!("{p}.ipVersion"), format!("{v} is not 4 or 6"));
            }
        }
        let port_capable = matches!(
            rule.protocol,
            Some(Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::UdpLite | Protocol::Number(6 | 17 | 132 | 136))
        );
        for (side, e) in [("source", &rule.source), ("destination", &rule.destination)] {
            if (!e.ports.is_empty() || !e.not_ports.is_empty()) && !port_capable {
                return err(
                    &format!("{p}.{side}.ports"),
                    "ports need protocol TCP, UDP, SCTP or UDPLite on the rule",
                );
            }
            check_opt_selector(&format!("{p}.{side}.selector"), &e.selector)?;
            check_opt_selector(&format!("{p}.{side}.notSelector"), &e.not_selector)?;
            check_opt_selector(&format!("{p}.{side}.namespaceSelector"), &e.namespace_selector)?;
            if let Some(v) = rule.ip_version {
                for (field, nets) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
                    for (j, n) in nets.iter().enumerate() {
                        let family = if matches!(n, IpNet::V4(_)) { 4 } else { 6 };
                        if family != v {
                            return err(&format!("{p}.{side}.{field}[{j}]"), format!("{n} is not IPv{v} (rule ipVersion)"));
                        }
                    }
                }
            }
        }
        let icmp_capable = matches!(rule.protocol, Some(Protocol::Icmp | Protocol::IcmpV6 | Protocol::Number(1 | 58)));
        for (field, m) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
            if let Some(m) = m {
                if !icmp_capable {
                    return err(&format!("{p}.{field}"), "needs protocol ICMP or ICMPv6 on the rule");
                }
                if m.code.is_some() && m.icmp_type.is_none() {
                    return err(&format!("{p}.{field}.code"), "a code needs a type");
                }
            }
        }
    }
    Ok(())
}
