//! The canonical resource types. They follow Calico's v3 (`projectcalico.org/v3`) specs field
//! for field, so users' existing v3 YAML applies unchanged, and every v1 document is converted
//! into them (see `v1.rs`). Specs deny unknown fields: a typo is an error, not a silent no-op.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Labels and similar string maps; ordered so that output and stored JSON are stable.
pub type Labels = BTreeMap<String, String>;

fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------------------------------------
// IPPool
// ---------------------------------------------------------------------------------------------

/// A range that workload addresses are taken from, cut into node-affine blocks by the IPAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IPPool {
    /// Unique name; v1 pools (which have none) get one derived from the CIDR.
    pub name: String,
    pub labels: Labels,
    pub spec: IPPoolSpec,
}

/// Sentinel for "blockSize not given"; replaced by the per-family default when the pool is
/// normalized (no valid block size is 255, so it cannot collide with a user value that is kept).
pub(crate) const BLOCK_SIZE_UNSET: u8 = u8::MAX;

fn block_size_unset() -> u8 {
    BLOCK_SIZE_UNSET
}

fn all_selector() -> String {
    "all()".to_string()
}

fn default_allowed_uses() -> Vec<AllowedUse> {
    vec![AllowedUse::Workload, AllowedUse::Tunnel]
}

/// What an IP pool is for, and how traffic from its addresses leaves the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool's range; host bits must be zero.
    pub cidr: IpNet,
    /// Prefix length of the blocks handed to nodes: 26 (IPv4) / 122 (IPv6) by default.
    #[serde(default = "block_size_unset")]
    pub block_size: u8,
    /// IP-in-IP encapsulation towards other nodes.
    #[serde(default, rename = "ipipMode")]
    pub ipip_mode: EncapMode,
    /// VXLAN encapsulation towards other nodes.
    #[serde(default, rename = "vxlanMode")]
    pub vxlan_mode: EncapMode,
    /// Masquerade traffic leaving the pool for outside destinations.
    #[serde(default)]
    pub nat_outgoing: bool,
    /// No new allocations from a disabled pool (existing ones stay).
    #[serde(default)]
    pub disabled: bool,
    /// Do not advertise this pool's blocks over BGP.
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    /// Which nodes may take blocks from this pool (selector over node labels).
    #[serde(default = "all_selector")]
    pub node_selector: String,
    /// Which kinds of address may come from this pool.
    #[serde(default = "default_allowed_uses")]
    pub allowed_uses: Vec<AllowedUse>,
}

/// Encapsulation mode for IPIP and VXLAN (Calico's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncapMode {
    /// Plain routed traffic (the seed's setup: no encapsulation).
    #[default]
    Never,
    /// Always encapsulate between nodes.
    Always,
    /// Encapsulate only towards nodes in another subnet.
    CrossSubnet,
}

/// Uses an IP pool can be restricted to (Calico's `allowedUses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

// ---------------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------------

/// A host running the node agent; its BGP addresses are where routes to its blocks point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Matched by IP pool `nodeSelector`s and BGP peer `nodeSelector`s.
    pub labels: Labels,
    pub spec: NodeSpec,
}

/// Per-node settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// BGP settings; absent for nodes that do not speak BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    /// The node's names in each orchestrator (Kubernetes, Nomad, DC/OS...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orchestrator_refs: Vec<OrchestratorRef>,
}

/// A node's BGP identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's IPv4 address with its subnet (`10.0.0.5/24`); a bare address means /32.
    #[serde(default, deserialize_with = "de_opt_v4_ifaddr", skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Ipv4Net>,
    /// The node's IPv6 address with its subnet; a bare address means /128.
    #[serde(default, deserialize_with = "de_opt_v6_ifaddr", skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<Ipv6Net>,
    /// The node's own AS; the cluster's (BGPConfiguration) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<Asn>,
    /// Set on route reflector nodes: their cluster ID (RFC 4456), an IPv4-formatted value.
    #[serde(default, rename = "routeReflectorClusterID", skip_serializing_if = "Option::is_none")]
    pub route_reflector_cluster_id: Option<std::net::Ipv4Addr>,
}

/// The node's name as one orchestrator knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchestratorRef {
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
}

fn de_opt_v4_ifaddr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Net>, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains('/') {
        s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IPv4 address/prefix")))
    } else {
        let a: std::net::Ipv4Addr =
            s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IPv4 address")))?;
        Ok(Some(Ipv4Net::from(a)))
    }
}

fn de_opt_v6_ifaddr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Net>, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains('/') {
        s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IPv6 address/prefix")))
    } else {
        let a: std::net::Ipv6Addr =
            s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IPv6 address")))?;
        Ok(Some(Ipv6Net::from(a)))
    }
}

// ---------------------------------------------------------------------------------------------
// AS numbers
// ---------------------------------------------------------------------------------------------

/// A 4-octet AS number (RFC 6793). Accepted as an integer, a decimal string, or asdot
/// (`1.10` = 1*65536+10) like Calico; always written back as an integer. 0 is reserved
/// (RFC 7607) and rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asn(pub u32);

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Asn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an AS number (1-4294967295, or asdot X.Y)");
        let value = if let Some((hi, lo)) = s.split_once('.') {
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            (u32::from(hi) << 16) | u32::from(lo)
        } else {
            s.parse::<u32>().map_err(|_| bad())?
        };
        Asn::new(u64::from(value)).ok_or_else(bad)
    }
}

impl Asn {
    /// An AS number from an integer, if it is in 1..=4294967295.
    pub fn new(value: u64) -> Option<Asn> {
        match u32::try_from(value) {
            Ok(0) | Err(_) => None,
            Ok(v) => Some(Asn(v)),
        }
    }
}

impl Serialize for Asn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Asn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number (1-4294967295, or asdot X.Y)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Asn, E> {
                Asn::new(v).ok_or_else(|| E::custom(format!("{v} is not an AS number (1-4294967295)")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Asn, E> {
                u64::try_from(v)
                    .ok()
                    .and_then(Asn::new)
                    .ok_or_else(|| E::custom(format!("{v} is not an AS number (1-4294967295)")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Asn, E> {
                // YAML reads asdot `1.10` as a float; the text form is what matters, and
                // a float cannot carry it reliably, so ask for quotes.
                Err(E::custom(format!("{v} is not an AS number; write asdot values quoted, e.g. \"1.10\"")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Asn, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// BGPConfiguration
// ---------------------------------------------------------------------------------------------

/// Cluster-wide BGP settings (the one named `default`) or per-node overrides (`node.<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BGPConfiguration {
    pub name: String,
    pub labels: Labels,
    pub spec: BGPConfigurationSpec,
}

fn default_true() -> bool {
    true
}

/// The cluster's BGP defaults and which service ranges to advertise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// Default AS for nodes that do not set their own (Calico's default is 64512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<Asn>,
    /// Full mesh between nodes; turned off when route reflectors are used (the seed's setup).
    #[serde(default = "default_true")]
    pub node_to_node_mesh_enabled: bool,
    /// Log level of the BGP speaker: Debug, Info, Warning, Error, Fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Kubernetes service cluster IP ranges to advertise (kube-router's feature).
    #[serde(default, rename = "serviceClusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// External IP ranges to advertise.
    #[serde(default, rename = "serviceExternalIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceCidr>,
    /// LoadBalancer IP ranges to advertise.
    #[serde(default, rename = "serviceLoadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// TCP port the speaker listens on (179 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
}

impl Default for BGPConfigurationSpec {
    fn default() -> Self {
        BGPConfigurationSpec {
            as_number: None,
            node_to_node_mesh_enabled: true,
            log_severity_screen: None,
            service_cluster_ips: Vec::new(),
            service_external_ips: Vec::new(),
            service_load_balancer_ips: Vec::new(),
            listen_port: None,
        }
    }
}

/// One advertised service range (Calico wraps each CIDR in an object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCidr {
    pub cidr: IpNet,
}

// ---------------------------------------------------------------------------------------------
// BGPPeer
// ---------------------------------------------------------------------------------------------

/// A BGP session to configure: global (every node, e.g. the route reflector of the seed) or
/// limited to one node / a node selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BGPPeer {
    pub name: String,
    pub labels: Labels,
    pub spec: BGPPeerSpec,
}

/// Who peers with whom. Either `peerIP` + `asNumber`, or `peerSelector` (peer with other nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// Only this node peers (v1 `scope: node`); absent with no nodeSelector = every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Selector over nodes that peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The remote address.
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<IpAddr>,
    /// The remote AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<Asn>,
    /// Peer with the nodes this selector matches instead of a fixed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// Do not rewrite the next hop on routes sent to this peer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_original_next_hop: bool,
    /// GTSM (RFC 5082): the maximum number of hops to the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
}

// ---------------------------------------------------------------------------------------------
// WorkloadEndpoint
// ---------------------------------------------------------------------------------------------

/// One container interface: which addresses it has, where it lives, which profiles apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadEndpoint {
    pub namespace: String,
    pub name: String,
    /// Matched by policy selectors.
    pub labels: Labels,
    pub spec: WorkloadEndpointSpec,
}

/// The endpoint's identity and addresses as the CNI plugin recorded them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    pub node: String,
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// Host side of the veth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The workload's addresses (usually /32 and /128).
    #[serde(default)]
    pub ip_networks: Vec<IpNet>,
    /// Profiles whose rules and labels apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    /// Named container ports (Calico's `ports`), so policy rules can say `redis` for 6379.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// One named port of a workload endpoint: what a policy's named port resolves to on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/// Policy in one namespace: selects that namespace's endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub spec: NetworkPolicySpec,
}

/// Rules for the endpoints `selector` matches in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Lower orders apply first; absent = after every ordered policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to; empty = all.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Directions the policy governs (defaulted from the rules when empty).
    #[serde(default)]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
}

impl Eq for NetworkPolicySpec {}

/// Policy over every namespace and host (v1 `policy` converts to this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalNetworkPolicy {
    pub name: String,
    pub labels: Labels,
    pub spec: GlobalNetworkPolicySpec,
}

/// Like `NetworkPolicySpec`, plus the cluster-wide knobs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Restrict to endpoints in namespaces whose labels match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default)]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Apply before connection tracking (untracked).
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_track: bool,
    /// Apply before DNAT (host endpoints).
    #[serde(default, rename = "preDNAT", skip_serializing_if = "is_false")]
    pub pre_dnat: bool,
    /// Also apply to forwarded traffic.
    #[serde(default, skip_serializing_if = "is_false")]
    pub apply_on_forward: bool,
}

impl Eq for GlobalNetworkPolicySpec {}

/// A direction a policy governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

impl<'de> Deserialize<'de> for PolicyType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // v1 wrote these lowercase, v3 capitalized; both mean the same.
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "ingress" => Ok(PolicyType::Ingress),
            "egress" => Ok(PolicyType::Egress),
            _ => Err(serde::de::Error::custom(format!("unknown policy type {s:?}, expected Ingress or Egress"))),
        }
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier's policies, go to profiles.
    Pass,
    /// Log and continue.
    Log,
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // v1 used lowercase action names, v3 capitalized ones.
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(Action::Allow),
            "deny" => Ok(Action::Deny),
            "pass" | "next-tier" => Ok(Action::Pass),
            "log" => Ok(Action::Log),
            _ => Err(serde::de::Error::custom(format!("unknown action {s:?}, expected Allow, Deny, Pass or Log"))),
        }
    }
}

/// One policy rule: match on protocol, source, destination; then `action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, rename = "icmp", skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
}

/// ICMP type/code match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpMatch {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// One side of a rule: addresses, endpoints (by selector) and ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
}

impl EntityRule {
    /// True when the side matches everything (nothing to write out).
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
}

/// An IP protocol: by Calico name or number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    Number(u8),
}

impl Protocol {
    /// Calico's spelling.
    pub fn name(&self) -> String {
        match self {
            Protocol::Tcp => "TCP".into(),
            Protocol::Udp => "UDP".into(),
            Protocol::Icmp => "ICMP".into(),
            Protocol::IcmpV6 => "ICMPv6".into(),
            Protocol::Sctp => "SCTP".into(),
            Protocol::UdpLite => "UDPLite".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => s.serialize_u8(*n),
            other => s.serialize_str(&other.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or number 1-255")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Protocol, E> {
                match u8::try_from(v) {
                    Ok(n) if n > 0 => Ok(Protocol::Number(n)),
                    _ => Err(E::custom(format!("protocol number {v} is not in 1-255"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Protocol, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("protocol number {v} is not in 1-255"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Protocol, E> {
                // v1 wrote protocols lowercase.
                Ok(match v.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "icmp" => Protocol::Icmp,
                    "icmpv6" => Protocol::IcmpV6,
                    "sctp" => Protocol::Sctp,
                    "udplite" => Protocol::UdpLite,
                    _ => match v.parse::<u64>() {
                        Ok(n) => return self.visit_u64(n),
                        Err(_) => {
                            return Err(E::custom(format!(
                                "unknown protocol {v:?}, expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255"
                            )))
                        }
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A port match: one port, an inclusive range (`"8000:8080"`), or a named port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port {
    Number(u16),
    Range(u16, u16),
    Named(String),
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => s.serialize_u16(*n),
            Port::Range(a, b) => s.serialize_str(&format!("{a}:{b}")),
            Port::Named(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (1-65535), a range \"LOW:HIGH\" or a port name")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(n) if n > 0 => Ok(Port::Number(n)),
                    _ => Err(E::custom(format!("port {v} is not in 1-65535"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Port, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("port {v} is not in 1-65535"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Port, E> {
                if let Some((lo, hi)) = v.split_once(':') {
                    let parse = |p: &str| p.trim().parse::<u16>().ok().filter(|n| *n > 0);
                    match (parse(lo), parse(hi)) {
                        (Some(a), Some(b)) if a <= b => Ok(Port::Range(a, b)),
                        _ => Err(E::custom(format!("port range {v:?} is not LOW:HIGH with 1 <= LOW <= HIGH <= 65535"))),
                    }
                } else if let Ok(n) = v.parse::<u64>() {
                    self.visit_u64(n)
                } else if !v.is_empty()
                    && v.len() <= 15
                    && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    Ok(Port::Named(v.to_string()))
                } else {
                    Err(E::custom(format!("{v:?} is not a port, range or port name")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Profile
// ---------------------------------------------------------------------------------------------

/// Rules and labels shared by the endpoints that list the profile (the seed's `calico-open`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub labels: Labels,
    pub spec: ProfileSpec,
}

/// A profile's rules and the labels it gives its endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: Labels,
}
