//! Which BGP sessions this node should have, computed from the resources.
//!
//! Pure: the reconciler feeds in the stored Nodes, BGPPeers and the `default`
//! BGPConfiguration, and gets the neighbor list it hands to `CoreControl::set_neighbors`
//! (which only touches sessions whose settings changed). The rules follow Calico's:
//! - node-to-node mesh: every other Node with a BGP address, unless
//!   `BGPConfiguration.nodeToNodeMeshEnabled` is false;
//! - global BGPPeers: no `node` and no `nodeSelector`, or a `nodeSelector` matching us;
//! - node-specific BGPPeers: `node` equal to our name;
//! - a BGPPeer with `peerSelector` peers with every matching Node instead of one address.
//!
//! An address appears at most once; explicit peers win over the mesh, and among explicit
//! peers a node-specific one wins over a global one (it is the more precise statement).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bgp::types::Family;
use bgpd::config::{Neighbor, Timers};
use resources::{BGPConfiguration, BGPPeer, Labels, Node, Selector};

/// Calico's default AS for nodes and clusters that set none.
pub const DEFAULT_ASN: u32 = 64512;

/// The peer types `calicoctl node status` shows; stored in `Neighbor.description` so that the
/// API (and `seam node status`) can report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerType {
    /// Implicit full mesh between nodes.
    Mesh,
    /// A BGPPeer that applies to every node (or to the nodes its selector matches).
    Global,
    /// A BGPPeer for this node only.
    NodeSpecific,
}

impl PeerType {
    /// Calico's wording.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::Mesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
        }
    }

    /// Precedence when two sources name the same address: explicit beats mesh, node beats global.
    fn rank(self) -> u8 {
        match self {
            PeerType::Mesh => 0,
            PeerType::Global => 1,
            PeerType::NodeSpecific => 2,
        }
    }
}

/// This node as the peering computation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    pub labels: Labels,
    /// The address sessions are sourced from (and the router id).
    pub address: Ipv4Addr,
    /// Our AS (node's own, else the cluster's, else 64512).
    pub asn: u32,
}

/// One session to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    pub address: IpAddr,
    pub asn: u32,
    pub peer_type: PeerType,
    /// The resource the peer comes from (`Node/b`, `BGPPeer/rr`), for logs.
    pub source: String,
}

/// The result of one computation: the peers, and problems with individual resources (a bad
/// selector or a peer without an AS is skipped and reported, the rest still applies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeeringPlan {
    pub peers: Vec<DesiredPeer>,
    pub problems: Vec<String>,
}

/// The cluster AS: BGPConfiguration `default`'s asNumber, else 64512.
pub fn cluster_asn(config: Option<&BGPConfiguration>) -> u32 {
    config.and_then(|c| c.spec.as_number).map_or(DEFAULT_ASN, |a| a.0)
}

/// A node's AS: its own, else the cluster's.
pub fn node_asn(node: &Node, cluster_asn: u32) -> u32 {
    node.spec.bgp.as_ref().and_then(|b| b.as_number).map_or(cluster_asn, |a| a.0)
}

/// A node's BGP address, if it speaks BGP over IPv4.
pub fn node_address(node: &Node) -> Option<Ipv4Addr> {
    node.spec.bgp.as_ref().and_then(|b| b.ipv4_address).map(|net| net.addr())
}

/// Compute the sessions `me` should have.
pub fn desired_peers(
    me: &LocalNode,
    nodes: &[Node],
    config: Option<&BGPConfiguration>,
    peers: &[BGPPeer],
) -> PeeringPlan {
    let cluster = cluster_asn(config);
    let mesh = config.is_none_or(|c| c.spec.node_to_node_mesh_enabled);
    let mut plan = PeeringPlan::default();
    let mut chosen: BTreeMap<IpAddr, DesiredPeer> = BTreeMap::new();
    let mut offer = |peer: DesiredPeer| {
        if peer.address == IpAddr::V4(me.address) {
            return;
        }
        match chosen.get(&peer.address) {
            Some(existing) if existing.peer_type.rank() >= peer.peer_type.rank() => {}
            _ => {
                chosen.insert(peer.address, peer);
            }
        }
    };

    if mesh {
        for node in nodes.iter().filter(|n| n.name != me.name) {
            if let Some(address) = node_address(node) {
                offer(DesiredPeer {
                    address: IpAddr::V4(address),
                    asn: node_asn(node, cluster),
                    peer_type: PeerType::Mesh,
                    source: format!("Node/{}", node.name),
                });
            }
        }
    }

    for peer in peers {
        let spec = &peer.spec;
        // Which nodes this peer applies to.
        let peer_type = match (&spec.node, &spec.node_selector) {
            (Some(node), _) => {
                if node != &me.name {
                    continue;
                }
                PeerType::NodeSpecific
            }
            (None, Some(selector)) => match Selector::parse(selector) {
                Ok(sel) if sel.matches(&me.labels) => PeerType::Global,
                Ok(_) => continue,
                Err(e) => {
                    plan.problems.push(format!("BGPPeer {}: spec.nodeSelector: {e}", peer.name));
                    continue;
                }
            },
            (None, None) => PeerType::Global,
        };
        // Who the remote end is.
        if let Some(selector) = &spec.peer_selector {
            let sel = match Selector::parse(selector) {
                Ok(sel) => sel,
                Err(e) => {
                    plan.problems.push(format!("BGPPeer {}: spec.peerSelector: {e}", peer.name));
                    continue;
                }
            };
            for node in nodes.iter().filter(|n| n.name != me.name && sel.matches(&n.labels)) {
                if let Some(address) = node_address(node) {
                    offer(DesiredPeer {
                        address: IpAddr::V4(address),
                        asn: node_asn(node, cluster),
                        peer_type,
                        source: format!("BGPPeer/{} (Node/{})", peer.name, node.name),
                    });
                }
            }
            continue;
        }
        let Some(address) = spec.peer_ip else {
            plan.problems.push(format!("BGPPeer {}: spec.peerIP is missing (and no peerSelector)", peer.name));
            continue;
        };
        let Some(asn) = spec.as_number else {
            plan.problems.push(format!("BGPPeer {}: spec.asNumber is missing for peer {address}", peer.name));
            continue;
        };
        if address.is_ipv6() {
            plan.problems.push(format!(
                "BGPPeer {}: spec.peerIP {address} is IPv6; this agent speaks BGP from its IPv4 address only",
                peer.name
            ));
            continue;
        }
        offer(DesiredPeer { address, asn: asn.0, peer_type, source: format!("BGPPeer/{}", peer.name) });
    }

    plan.peers = chosen.into_values().collect();
    plan
}

/// Session settings the agent uses for every peer: retry quickly (a node joining or a
/// reflector restarting should be picked up within seconds), detect a dead peer in 30 s.
pub fn agent_timers() -> Timers {
    Timers {
        connect_retry: 5,
        hold_time: 30,
        keepalive_interval: 10,
        idle_hold_time_after_reset: 5,
        min_advertisement_interval: 0,
    }
}

/// The bgpd neighbor for one desired peer. Deterministic, so the same peer always yields an
/// equal `Neighbor` and `set_neighbors` leaves its session alone.
pub fn to_neighbor(me: &LocalNode, peer: &DesiredPeer, remote_port: u16) -> Neighbor {
    Neighbor {
        address: peer.address,
        peer_as: peer.asn,
        local_as: None,
        description: Some(peer.peer_type.as_str().to_string()),
        peer_group: None,
        route_reflector_client: false,
        cluster_id: None,
        passive: false,
        local_address: Some(IpAddr::V4(me.address)),
        remote_port,
        timers: agent_timers(),
        families: vec![Family::IPV4_UNICAST],
        ebgp_multihop_ttl: None,
        auth_password: None,
        // RFC 4724: a killed and restarted agent keeps its kernel routes, so its peers may keep
        // its routes (stale) for up to 120 s instead of withdrawing them; we help them likewise.
        graceful_restart: Some(bgpd::config::GracefulRestartConfig { restart_time: 120 }),
        add_paths_receive: false,
        add_paths_send_max: 0,
        dynamic: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use resources::{Asn, BGPConfigurationSpec, BGPPeerSpec, NodeBgpSpec, NodeSpec};

    fn node(name: &str, addr: Option<&str>, labels: &[(&str, &str)]) -> Node {
        Node {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            spec: NodeSpec {
                bgp: addr.map(|a| NodeBgpSpec { ipv4_address: Some(a.parse().unwrap()), ..Default::default() }),
                ..Default::default()
            },
        }
    }

    fn me() -> LocalNode {
        LocalNode {
            name: "a".into(),
            labels: [("coe".to_string(), "kubernetes".to_string())].into(),
            address: "10.0.0.1".parse().unwrap(),
            asn: 64512,
        }
    }

    fn config(mesh: bool, asn: Option<u32>) -> BGPConfiguration {
        BGPConfiguration {
            name: "default".into(),
            labels: Labels::new(),
            spec: BGPConfigurationSpec { as_number: asn.map(Asn), node_to_node_mesh_enabled: mesh, ..Default::default() },
        }
    }

    fn peer(name: &str, spec: BGPPeerSpec) -> BGPPeer {
        BGPPeer { name: name.into(), labels: Labels::new(), spec }
    }

    fn summary(plan: &PeeringPlan) -> Vec<(String, u32, &'static str)> {
        plan.peers.iter().map(|p| (p.address.to_string(), p.asn, p.peer_type.as_str())).collect()
    }

    #[test]
    fn mesh_by_default_with_every_other_bgp_node() {
        let nodes = [
            node("a", Some("10.0.0.1/24"), &[]),
            node("b", Some("10.0.0.2/24"), &[]),
            node("c", None, &[]),
            node("d", Some("10.0.0.4/32"), &[]),
        ];
        let plan = desired_peers(&me(), &nodes, None, &[]);
        assert_eq!(
            summary(&plan),
            vec![("10.0.0.2".into(), 64512, "node-to-node mesh"), ("10.0.0.4".into(), 64512, "node-to-node mesh")]
        );
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn mesh_disabled_leaves_only_explicit_peers_and_cluster_asn_applies() {
        let nodes = [node("a", Some("10.0.0.1/24"), &[]), node("b", Some("10.0.0.2/24"), &[])];
        let rr = peer("rr", BGPPeerSpec { peer_ip: Some("10.0.0.254".parse().unwrap()), as_number: Some(Asn(65000)), ..Default::default() });
        let plan = desired_peers(&me(), &nodes, Some(&config(false, Some(64600))), &[rr]);
        assert_eq!(summary(&plan), vec![("10.0.0.254".into(), 65000, "global")]);
        // With the mesh on, the cluster AS is used for nodes that set none.
        let plan = desired_peers(&me(), &nodes, Some(&config(true, Some(64600))), &[]);
        assert_eq!(summary(&plan), vec![("10.0.0.2".into(), 64600, "node-to-node mesh")]);
    }

    #[test]
    fn node_specific_and_selector_scoped_peers() {
        let nodes = [node("a", Some("10.0.0.1/24"), &[])];
        let peers = [
            peer("mine", BGPPeerSpec { node: Some("a".into()), peer_ip: Some("10.1.0.1".parse().unwrap()), as_number: Some(Asn(1)), ..Default::default() }),
            peer("other-node", BGPPeerSpec { node: Some("b".into()), peer_ip: Some("10.1.0.2".parse().unwrap()), as_number: Some(Asn(2)), ..Default::default() }),
            peer("k8s", BGPPeerSpec { node_selector: Some("coe == 'kubernetes'".into()), peer_ip: Some("10.1.0.3".parse().unwrap()), as_number: Some(Asn(3)), ..Default::default() }),
            peer("dcos", BGPPeerSpec { node_selector: Some("coe == 'dcos'".into()), peer_ip: Some("10.1.0.4".parse().unwrap()), as_number: Some(Asn(4)), ..Default::default() }),
        ];
        let plan = desired_peers(&me(), &nodes, None, &peers);
        assert_eq!(summary(&plan), vec![("10.1.0.1".into(), 1, "node specific"), ("10.1.0.3".into(), 3, "global")]);
    }

    #[test]
    fn explicit_peers_win_over_mesh_and_node_over_global() {
        let nodes = [node("a", Some("10.0.0.1/24"), &[]), node("b", Some("10.0.0.2/24"), &[])];
        let peers = [
            peer("g", BGPPeerSpec { peer_ip: Some("10.0.0.2".parse().unwrap()), as_number: Some(Asn(65001)), ..Default::default() }),
            peer("n", BGPPeerSpec { node: Some("a".into()), peer_ip: Some("10.0.0.2".parse().unwrap()), as_number: Some(Asn(65002)), ..Default::default() }),
        ];
        let plan = desired_peers(&me(), &nodes, None, &peers[..1]);
        assert_eq!(summary(&plan), vec![("10.0.0.2".into(), 65001, "global")]);
        let plan = desired_peers(&me(), &nodes, None, &peers);
        assert_eq!(summary(&plan), vec![("10.0.0.2".into(), 65002, "node specific")]);
        // Reversed input order gives the same answer.
        let reversed = [peers[1].clone(), peers[0].clone()];
        assert_eq!(desired_peers(&me(), &nodes, None, &reversed).peers, plan.peers);
    }

    #[test]
    fn peer_selector_peers_with_matching_nodes_and_never_with_itself() {
        let nodes = [
            node("a", Some("10.0.0.1/24"), &[("rr", "true")]),
            node("r1", Some("10.0.0.10/24"), &[("rr", "true")]),
            node("b", Some("10.0.0.2/24"), &[]),
        ];
        let peers = [peer("to-rr", BGPPeerSpec { peer_selector: Some("has(rr)".into()), ..Default::default() })];
        let plan = desired_peers(&me(), &nodes, Some(&config(false, None)), &peers);
        assert_eq!(summary(&plan), vec![("10.0.0.10".into(), 64512, "global")]);
        // A peer pointing at our own address is dropped too.
        let selfish = [peer("self", BGPPeerSpec { peer_ip: Some("10.0.0.1".parse().unwrap()), as_number: Some(Asn(1)), ..Default::default() })];
        assert!(desired_peers(&me(), &nodes, Some(&config(false, None)), &selfish).peers.is_empty());
    }

    #[test]
    fn bad_peers_are_reported_and_skipped() {
        let peers = [
            peer("no-as", BGPPeerSpec { peer_ip: Some("10.1.0.1".parse().unwrap()), ..Default::default() }),
            peer("bad-sel", BGPPeerSpec { node_selector: Some("coe == ".into()), peer_ip: Some("10.1.0.2".parse().unwrap()), as_number: Some(Asn(2)), ..Default::default() }),
            peer("nothing", BGPPeerSpec::default()),
            peer("ok", BGPPeerSpec { peer_ip: Some("10.1.0.3".parse().unwrap()), as_number: Some(Asn(3)), ..Default::default() }),
        ];
        let plan = desired_peers(&me(), &[], None, &peers);
        assert_eq!(summary(&plan), vec![("10.1.0.3".into(), 3, "global")]);
        assert_eq!(plan.problems.len(), 3, "{:?}", plan.problems);
        assert!(plan.problems[0].contains("BGPPeer no-as") && plan.problems[0].contains("asNumber"));
        assert!(plan.problems[1].contains("BGPPeer bad-sel") && plan.problems[1].contains("nodeSelector"));
        assert!(plan.problems[2].contains("BGPPeer nothing") && plan.problems[2].contains("peerIP"));
    }

    #[test]
    fn neighbors_are_deterministic_and_carry_the_peer_type() {
        let p = DesiredPeer { address: "10.0.0.2".parse().unwrap(), asn: 64512, peer_type: PeerType::Mesh, source: "Node/b".into() };
        let a = to_neighbor(&me(), &p, 179);
        assert_eq!(a, to_neighbor(&me(), &p, 179));
        assert_eq!(a.description.as_deref(), Some("node-to-node mesh"));
        assert_eq!(a.local_address, Some("10.0.0.1".parse().unwrap()));
        assert!(!a.passive);
        assert_eq!(a.timers.connect_retry, 5);
    }
}
