//! Calico's v1 resource format (`apiVersion: v1`, lowercase kinds), as written in the BBVA
//! experiment, converted to the canonical v3 types the way Calico's own v1-to-v3 upgrade did:
//! ipPool names derive from the CIDR, a global bgpPeer has no node, a `policy` is a
//! GlobalNetworkPolicy, profile tags become labels to apply.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::parse::{from_value, DocError};
use crate::types::*;
use crate::{validate, Resource};

/// The v1 envelope: metadata and spec differ per kind; spec was optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct V1Doc<M, S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: M,
    spec: S,
}

/// v1 ipPool identity: just the CIDR.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolMeta {
    cidr: IpNet,
}

/// v1 ipPool settings (note the dashed `nat-outgoing`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    #[serde(default)]
    ipip: Option<Ipip>,
    #[serde(default, rename = "nat-outgoing")]
    nat_outgoing: bool,
    #[serde(default)]
    disabled: bool,
}

/// v1 IPIP switch: `enabled`, and `mode` always (default) or cross-subnet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ipip {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    mode: Option<String>,
}

/// v1 bgpPeer identity: where the peer is and who peers with it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerMeta {
    #[serde(rename = "peerIP")]
    peer_ip: IpAddr,
    scope: String,
    /// `hostname` is the pre-1.0 spelling.
    #[serde(default, alias = "hostname")]
    node: Option<String>,
}

/// v1 bgpPeer settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PeerSpec {
    as_number: Asn,
}

/// v1 metadata of named kinds (node, policy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedMeta {
    name: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<Value>,
}

/// v1 profile metadata: tags and labels were applied to the profile's endpoints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileMeta {
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    labels: Labels,
}

/// v1 policy spec.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    #[serde(default)]
    order: Option<f64>,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    types: Vec<PolicyType>,
    #[serde(default)]
    ingress: Vec<V1Rule>,
    #[serde(default)]
    egress: Vec<V1Rule>,
    #[serde(default)]
    do_not_track: bool,
    #[serde(default, rename = "preDNAT")]
    pre_dnat: bool,
    #[serde(default)]
    apply_on_forward: bool,
}

/// v1 profile spec.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProfileSpecV1 {
    #[serde(default)]
    ingress: Vec<V1Rule>,
    #[serde(default)]
    egress: Vec<V1Rule>,
}

/// A v1 rule: like v3 but entities had `net`/`tag` too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct V1Rule {
    action: Action,
    #[serde(default)]
    ip_version: Option<u8>,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    not_protocol: Option<Protocol>,
    #[serde(default)]
    icmp: Option<IcmpMatch>,
    #[serde(default, rename = "notICMP")]
    not_icmp: Option<IcmpMatch>,
    #[serde(default)]
    source: V1Entity,
    #[serde(default)]
    destination: V1Entity,
}

/// A v1 rule side.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct V1Entity {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    not_tag: Option<String>,
    #[serde(default)]
    net: Option<IpNet>,
    #[serde(default)]
    not_net: Option<IpNet>,
    #[serde(default)]
    nets: Vec<IpNet>,
    #[serde(default)]
    not_nets: Vec<IpNet>,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    not_selector: String,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    not_ports: Vec<Port>,
}

/// v1 workloadEndpoint identity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WepMeta {
    name: String,
    workload: String,
    orchestrator: String,
    node: String,
    #[serde(default)]
    labels: Labels,
}

/// v1 workloadEndpoint spec.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WepSpec {
    #[serde(default)]
    ip_networks: Vec<IpNet>,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    interface_name: String,
    #[serde(default)]
    mac: String,
}

/// An address or CIDR as a name: `192.168.0.0/17` -> `192-168-0-0-17` (names cannot hold
/// dots-in-addresses ambiguity, slashes or colons).
pub(crate) fn name_from_text(text: &str) -> String {
    text.chars().map(|c| if matches!(c, '.' | ':' | '/') { '-' } else { c.to_ascii_lowercase() }).collect()
}

/// A tag used as a label: `has(tag)` was how Calico's upgrade expressed v1 tag matches.
fn tag_selector(tag: &str, negate: bool) -> String {
    if negate {
        format!("!has({tag})")
    } else {
        format!("has({tag})")
    }
}

fn and_selectors(parts: Vec<String>) -> String {
    let parts: Vec<String> = parts.into_iter().filter(|p| !p.trim().is_empty()).collect();
    match parts.len() {
        0 => String::new(),
        1 => parts.into_iter().next().expect("one"),
        _ => parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(" && "),
    }
}

impl V1Entity {
    fn convert(self) -> EntityRule {
        let mut nets = self.nets;
        nets.extend(self.net);
        let mut not_nets = self.not_nets;
        not_nets.extend(self.not_net);
        let selector = and_selectors(
            [Some(self.selector), self.tag.map(|t| tag_selector(&t, false)), self.not_tag.map(|t| tag_selector(&t, true))]
                .into_iter()
                .flatten()
                .collect(),
        );
        EntityRule {
            nets,
            not_nets,
            selector,
            not_selector: self.not_selector,
            namespace_selector: String::new(),
            ports: self.ports,
            not_ports: self.not_ports,
        }
    }
}

impl V1Rule {
    fn convert(self) -> Rule {
        Rule {
            action: self.action,
            ip_version: self.ip_version,
            protocol: self.protocol,
            not_protocol: self.not_protocol,
            icmp: self.icmp,
            not_icmp: self.not_icmp,
            source: self.source.convert(),
            destination: self.destination.convert(),
        }
    }
}

fn rules(v: Vec<V1Rule>) -> Vec<Rule> {
    v.into_iter().map(V1Rule::convert).collect()
}

/// Deserialize a v1 document, treating a missing spec as empty.
fn doc<M: serde::de::DeserializeOwned, S: serde::de::DeserializeOwned>(mut value: Value) -> Result<(M, S), DocError> {
    if let Value::Object(map) = &mut value {
        map.entry("spec").or_insert_with(|| Value::Object(Default::default()));
        if !map.contains_key("metadata") {
            return Err(("metadata".into(), "missing".into()));
        }
    }
    let d: V1Doc<M, S> = from_value(value)?;
    Ok((d.metadata, d.spec))
}

/// One v1 document (its `kind` already read) to a canonical resource.
pub(crate) fn parse_v1(kind: &str, value: Value) -> Result<Resource, DocError> {
    let resource = match kind {
        "ipPool" => {
            let (m, s): (PoolMeta, PoolSpec) = doc(value)?;
            let ipip_mode = match s.ipip {
                Some(Ipip { enabled: true, mode }) => match mode.as_deref() {
                    None | Some("always") => EncapMode::Always,
                    Some("cross-subnet") => EncapMode::CrossSubnet,
                    Some(other) => {
                        return Err((
                            "spec.ipip.mode".into(),
                            format!("unknown IPIP mode {other:?}, expected always or cross-subnet"),
                        ))
                    }
                },
                _ => EncapMode::Never,
            };
            Resource::IPPool(IPPool {
                name: name_from_text(&m.cidr.to_string()),
                labels: Labels::new(),
                spec: IPPoolSpec {
                    cidr: m.cidr,
                    block_size: BLOCK_SIZE_UNSET,
                    ipip_mode,
                    vxlan_mode: EncapMode::Never,
                    nat_outgoing: s.nat_outgoing,
                    disabled: s.disabled,
                    disable_bgp_export: false,
                    node_selector: "all()".into(),
                    allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
                },
            })
        }
        "bgpPeer" => {
            let (m, s): (PeerMeta, PeerSpec) = doc(value)?;
            let ip_name = name_from_text(&m.peer_ip.to_string());
            let (name, node) = match (m.scope.as_str(), m.node) {
                ("global", None) => (ip_name, None),
                ("global", Some(_)) => {
                    return Err(("metadata.node".into(), "a global bgpPeer has no node; use scope: node".into()))
                }
                ("node", Some(node)) if !node.is_empty() => (format!("{node}.{ip_name}"), Some(node)),
                ("node", _) => return Err(("metadata.node".into(), "scope: node needs the node's name".into())),
                (other, _) => {
                    return Err(("metadata.scope".into(), format!("unknown scope {other:?}, expected global or node")))
                }
            };
            Resource::BGPPeer(BGPPeer {
                name,
                labels: Labels::new(),
                spec: BGPPeerSpec { node, peer_ip: Some(m.peer_ip), as_number: Some(s.as_number), ..Default::default() },
            })
        }
        "node" => {
            // v1 node specs have the same fields as v3's (bgp.asNumber/ipv4Address/ipv6Address,
            // orchestratorRefs).
            let (m, spec): (NamedMeta, NodeSpec) = doc(value)?;
            Resource::Node(Node { name: m.name, labels: m.labels, spec })
        }
        "policy" => {
            let (m, s): (NamedMeta, PolicySpec) = doc(value)?;
            Resource::GlobalNetworkPolicy(GlobalNetworkPolicy {
                name: m.name,
                labels: m.labels,
                spec: GlobalNetworkPolicySpec {
                    order: s.order,
                    selector: s.selector,
                    namespace_selector: String::new(),
                    service_account_selector: String::new(),
                    types: s.types,
                    ingress: rules(s.ingress),
                    egress: rules(s.egress),
                    do_not_track: s.do_not_track,
                    pre_dnat: s.pre_dnat,
                    apply_on_forward: s.apply_on_forward,
                },
            })
        }
        "profile" => {
            let (m, s): (ProfileMeta, ProfileSpecV1) = doc(value)?;
            let mut labels_to_apply = m.labels;
            for tag in m.tags {
                labels_to_apply.entry(tag).or_default();
            }
            Resource::Profile(Profile {
                name: m.name,
                labels: Labels::new(),
                spec: ProfileSpec { ingress: rules(s.ingress), egress: rules(s.egress), labels_to_apply },
            })
        }
        "workloadEndpoint" => {
            let (m, s): (WepMeta, WepSpec) = doc(value)?;
            // Kubernetes workloads were named `<namespace>.<pod>` in v1.
            let (namespace, pod) = match (m.orchestrator.as_str(), m.workload.split_once('.')) {
                ("k8s", Some((ns, pod))) => (ns.to_string(), pod.to_string()),
                _ => ("default".to_string(), String::new()),
            };
            let escape = |s: &str| s.replace('-', "--");
            let name = format!(
                "{}-{}-{}-{}",
                escape(&m.node),
                escape(&m.orchestrator),
                escape(&m.workload),
                escape(&m.name)
            );
            Resource::WorkloadEndpoint(WorkloadEndpoint {
                namespace,
                name,
                labels: m.labels,
                spec: WorkloadEndpointSpec {
                    node: m.node,
                    orchestrator: m.orchestrator,
                    workload: m.workload,
                    pod,
                    endpoint: m.name,
                    interface_name: s.interface_name,
                    mac: s.mac,
                    ip_networks: s.ip_networks,
                    profiles: s.profiles,
                    ..Default::default()
                },
            })
        }
        other => {
            return Err((
                "kind".into(),
                format!(
                    "unknown or unsupported v1 kind {other:?}; v1 kinds are ipPool, bgpPeer, node, policy, profile, workloadEndpoint"
                ),
            ))
        }
    };
    validate::normalize_and_validate(resource)
}
