//! Parsing: every kind in both YAML styles, the seed's snippets verbatim, and each error with
//! its exact document index and field path.

use std::net::IpAddr;

use resources::*;

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn one(yaml: &str) -> Resource {
    let mut r = parse_documents(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.len(), 1, "{r:?}");
    r.pop().unwrap()
}

fn error(yaml: &str) -> String {
    parse_documents(yaml, "t.yaml").expect_err("must fail").to_string()
}

fn seed_expected() -> Vec<Resource> {
    let allow = Rule {
        action: Action::Allow,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: EntityRule::default(),
        destination: EntityRule::default(),
    };
    vec![
        Resource::IPPool(IPPool {
            name: "192-168-0-0-17".into(),
            labels: Labels::new(),
            spec: IPPoolSpec {
                cidr: "192.168.0.0/17".parse().unwrap(),
                block_size: 26,
                ipip_mode: EncapMode::Never,
                vxlan_mode: EncapMode::Never,
                nat_outgoing: false,
                disabled: false,
                disable_bgp_export: false,
                node_selector: "all()".into(),
                allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
            },
        }),
        Resource::BGPPeer(BGPPeer {
            name: "172-16-18-32".into(),
            labels: Labels::new(),
            spec: BGPPeerSpec {
                peer_ip: Some("172.16.18.32".parse().unwrap()),
                as_number: Some(Asn(64511)),
                ..Default::default()
            },
        }),
        Resource::GlobalNetworkPolicy(GlobalNetworkPolicy {
            name: "allow-all".into(),
            labels: Labels::new(),
            spec: GlobalNetworkPolicySpec {
                types: vec![PolicyType::Ingress, PolicyType::Egress],
                ingress: vec![allow.clone()],
                egress: vec![allow.clone()],
                ..Default::default()
            },
        }),
        Resource::Profile(Profile {
            name: "calico-open".into(),
            labels: Labels::new(),
            spec: ProfileSpec { ingress: vec![allow.clone()], egress: vec![allow], labels_to_apply: Labels::new() },
        }),
    ]
}

#[test]
fn seed_snippets_as_list_and_as_documents() {
    let list = parse_documents(&data("seed_list.yaml"), "seed_list.yaml").unwrap();
    let docs = parse_documents(&data("seed_docs.yaml"), "seed_docs.yaml").unwrap();
    assert_eq!(list, seed_expected());
    assert_eq!(docs, seed_expected());
}

#[test]
fn yaml_and_json_output_parse_back_to_the_same_resources() {
    let seed = seed_expected();
    let yaml = to_yaml(&seed, None).unwrap();
    assert!(yaml.contains("kind: List"), "{yaml}");
    assert_eq!(parse_documents(&yaml, "out.yaml").unwrap(), seed);
    let json = to_json(&seed, None);
    assert_eq!(parse_documents(&json, "out.json").unwrap(), seed);
    // One resource prints as a plain document; a kind listing as `<Kind>List`.
    let single = to_yaml(&seed[..1], None).unwrap();
    assert!(single.starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\n"), "{single}");
    let listed = to_json(&seed[..1], Some(Kind::IPPool));
    assert!(listed.contains("\"kind\": \"IPPoolList\""), "{listed}");
    assert_eq!(parse_documents(&listed, "l.json").unwrap(), seed[..1].to_vec());
}

#[test]
fn ippool_v3_with_every_field() {
    let r = one(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: k8s
  labels: {coe: kubernetes}
spec:
  cidr: 192.168.0.0/17
  blockSize: 24
  ipipMode: CrossSubnet
  natOutgoing: true
  disabled: true
  nodeSelector: coe == 'kubernetes'
  allowedUses: [Workload]
",
    );
    let Resource::IPPool(p) = r else { panic!("{r:?}") };
    assert_eq!(p.name, "k8s");
    assert_eq!(p.labels.get("coe").map(String::as_str), Some("kubernetes"));
    assert_eq!(p.spec.block_size, 24);
    assert_eq!(p.spec.ipip_mode, EncapMode::CrossSubnet);
    assert_eq!(p.spec.vxlan_mode, EncapMode::Never);
    assert!(p.spec.nat_outgoing && p.spec.disabled);
    assert_eq!(p.spec.node_selector, "coe == 'kubernetes'");
    assert_eq!(p.spec.allowed_uses, vec![AllowedUse::Workload]);
}

#[test]
fn ippool_v6_default_block_and_v1_ipip_modes() {
    let Resource::IPPool(p) = one(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: v6}\nspec: {cidr: 'fd00:10::/48'}\n",
    ) else {
        panic!()
    };
    assert_eq!(p.spec.block_size, 122);
    let Resource::IPPool(p) = one(
        "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}\nspec:\n  ipip: {enabled: true, mode: cross-subnet}\n  nat-outgoing: true\n",
    ) else {
        panic!()
    };
    assert_eq!(p.name, "10-1-0-0-16");
    assert_eq!(p.spec.ipip_mode, EncapMode::CrossSubnet);
    assert!(p.spec.nat_outgoing);
    let Resource::IPPool(p) =
        one("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.2.0.0/16}\nspec:\n  ipip: {enabled: true}\n")
    else {
        panic!()
    };
    assert_eq!(p.spec.ipip_mode, EncapMode::Always);
    // v1 spec may be absent.
    let Resource::IPPool(p) = one("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 'fd00::/64'}\n") else { panic!() };
    assert_eq!(p.name, "fd00---64");
}

#[test]
fn bgp_peer_both_styles() {
    let Resource::BGPPeer(p) = one(
        "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 10.0.0.1, scope: node, node: rack1-host1}\nspec: {asNumber: 63400}\n",
    ) else {
        panic!()
    };
    assert_eq!(p.name, "rack1-host1.10-0-0-1");
    assert_eq!(p.spec.node.as_deref(), Some("rack1-host1"));
    assert_eq!(p.spec.as_number, Some(Asn(63400)));
    let Resource::BGPPeer(p) = one(
        "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: rr}
spec:
  nodeSelector: all()
  peerIP: '2001:db8::1'
  asNumber: '1.10'
  keepOriginalNextHop: true
  ttlSecurity: 1
",
    ) else {
        panic!()
    };
    assert_eq!(p.spec.peer_ip, Some("2001:db8::1".parse::<IpAddr>().unwrap()));
    assert_eq!(p.spec.as_number, Some(Asn(65546)));
    assert!(p.spec.keep_original_next_hop);
    let Resource::BGPPeer(p) =
        one("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: mesh}\nspec: {peerSelector: has(rr)}\n")
    else {
        panic!()
    };
    assert_eq!(p.spec.peer_selector.as_deref(), Some("has(rr)"));
}

#[test]
fn node_both_styles() {
    let v1 = one(
        "apiVersion: v1
kind: node
metadata: {name: node-1}
spec:
  bgp:
    asNumber: 64512
    ipv4Address: 10.244.0.1/24
    ipv6Address: 2001:db8:85a3::8a2e:370:7334/120
  orchestratorRefs:
  - nodeName: node-1
    orchestrator: k8s
",
    );
    let v3 = one(
        "apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-1}
spec:
  bgp:
    asNumber: 64512
    ipv4Address: 10.244.0.1/24
    ipv6Address: 2001:db8:85a3::8a2e:370:7334/120
  orchestratorRefs:
  - nodeName: node-1
    orchestrator: k8s
",
    );
    assert_eq!(v1, v3);
    let Resource::Node(n) = v3 else { panic!() };
    let bgp = n.spec.bgp.unwrap();
    assert_eq!(bgp.ipv4_address, Some("10.244.0.1/24".parse().unwrap()));
    assert_eq!(bgp.as_number, Some(Asn(64512)));
    // A bare address means a host prefix.
    let Resource::Node(n) = one(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: n2, labels: {coe: dcos}}\nspec: {bgp: {ipv4Address: 10.0.0.2, routeReflectorClusterID: 224.0.0.1}}\n",
    ) else {
        panic!()
    };
    assert_eq!(n.spec.bgp.as_ref().unwrap().ipv4_address, Some("10.0.0.2/32".parse().unwrap()));
    assert_eq!(n.labels.get("coe").unwrap(), "dcos");
}

#[test]
fn bgp_configuration_v3_defaults_name_and_mesh() {
    let Resource::BGPConfiguration(c) = one(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {}
spec:
  asNumber: 64512
  logSeverityScreen: Info
  serviceClusterIPs:
  - cidr: 10.96.0.0/12
",
    ) else {
        panic!()
    };
    assert_eq!(c.name, "default");
    assert!(c.spec.node_to_node_mesh_enabled);
    assert_eq!(c.spec.service_cluster_ips[0].cidr, "10.96.0.0/12".parse().unwrap());
}

#[test]
fn workload_endpoint_both_styles() {
    let Resource::WorkloadEndpoint(w) = one(
        "apiVersion: v1
kind: workloadEndpoint
metadata:
  name: eth0
  workload: default.frontend-5gs43
  orchestrator: k8s
  node: rack1-host1
  labels: {app: frontend}
spec:
  interfaceName: cali0ef24ba
  mac: ca:fe:1d:52:bb:e9
  ipNetworks: [192.168.0.0/32]
  profiles: [profile1]
",
    ) else {
        panic!()
    };
    assert_eq!(w.namespace, "default");
    assert_eq!(w.name, "rack1--host1-k8s-default.frontend--5gs43-eth0");
    assert_eq!(w.spec.pod, "frontend-5gs43");
    assert_eq!(w.spec.ip_networks, vec!["192.168.0.0/32".parse().unwrap()]);
    let Resource::WorkloadEndpoint(w) = one(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-pod-eth0, namespace: prod, labels: {app: db}}
spec:
  node: node1
  orchestrator: k8s
  pod: pod
  containerID: abc123
  endpoint: eth0
  interfaceName: cali1
  ipNetworks: [192.168.0.5/32, 'fd00::5/128']
  profiles: [kns.prod]
",
    ) else {
        panic!()
    };
    assert_eq!(w.namespace, "prod");
    assert_eq!(w.spec.container_id, "abc123");
    assert_eq!(w.spec.ip_networks.len(), 2);
}

#[test]
fn policies_v3_with_rules() {
    let Resource::NetworkPolicy(p) = one(
        "apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-tcp-6379, namespace: production}
spec:
  selector: role == 'database'
  order: 100
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
      nets: [10.0.0.0/8]
    destination:
      ports: [6379, '7000:7010', redis]
  egress:
  - action: Deny
    protocol: ICMP
    icmp: {type: 8, code: 0}
",
    ) else {
        panic!()
    };
    assert_eq!(p.namespace, "production");
    assert_eq!(p.spec.order, Some(100.0));
    // Types default from the rules.
    assert_eq!(p.spec.types, vec![PolicyType::Ingress, PolicyType::Egress]);
    let rule = &p.spec.ingress[0];
    assert_eq!(rule.protocol, Some(Protocol::Tcp));
    assert_eq!(rule.destination.ports, vec![Port::Number(6379), Port::Range(7000, 7010), Port::Named("redis".into())]);
    assert_eq!(p.spec.egress[0].action, Action::Deny);

    let Resource::GlobalNetworkPolicy(g) = one(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-egress}
spec:
  order: 10
  selector: all()
  namespaceSelector: has(projectcalico.org/name)
  types: [Egress]
  egress:
  - action: Pass
  - action: Log
    notProtocol: 17
",
    ) else {
        panic!()
    };
    assert_eq!(g.spec.types, vec![PolicyType::Egress]);
    assert_eq!(g.spec.egress[1].not_protocol, Some(Protocol::Number(17)));
}

#[test]
fn v1_policy_rule_conversion() {
    let Resource::GlobalNetworkPolicy(g) = one(
        "apiVersion: v1
kind: policy
metadata: {name: allow-tcp-6379}
spec:
  selector: role == 'database'
  ingress:
  - action: allow
    protocol: tcp
    source: {tag: frontend, net: 10.0.0.0/8}
    destination: {ports: [6379]}
  - action: deny
",
    ) else {
        panic!()
    };
    assert_eq!(g.spec.types, vec![PolicyType::Ingress]);
    let r = &g.spec.ingress[0];
    assert_eq!(r.source.selector, "has(frontend)");
    assert_eq!(r.source.nets, vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(g.spec.ingress[1].action, Action::Deny);
}

#[test]
fn profile_both_styles_tags_become_labels() {
    let Resource::Profile(p) = one(
        "apiVersion: v1
kind: profile
metadata:
  name: prof1
  tags: [tag1]
  labels: {profile: prof1}
spec:
  ingress:
  - action: deny
    source: {net: 10.0.20.0/24}
  egress:
  - action: allow
",
    ) else {
        panic!()
    };
    assert_eq!(p.spec.labels_to_apply.get("profile").unwrap(), "prof1");
    assert_eq!(p.spec.labels_to_apply.get("tag1").unwrap(), "");
    let v3 = one(
        "apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: prof1}
spec:
  ingress:
  - action: Deny
    source: {nets: [10.0.20.0/24]}
  egress:
  - action: Allow
  labelsToApply: {profile: prof1, tag1: ''}
",
    );
    assert_eq!(Resource::Profile(p), v3);
}

#[test]
fn v3_list_kind_is_accepted() {
    let r = parse_documents(
        "apiVersion: projectcalico.org/v3
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: Profile
  metadata: {name: a}
  spec: {}
- apiVersion: v1
  kind: profile
  metadata: {name: b}
",
        "l.yaml",
    )
    .unwrap();
    assert_eq!(r.iter().map(Resource::name).collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn errors_name_file_document_and_field_path() {
    let pool = |spec: &str| format!("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p}}\nspec: {spec}\n");
    let ok = "apiVersion: v1\nkind: profile\nmetadata: {name: ok}\n";
    let cases: Vec<(String, &str)> = vec![
        // Second document, a typo in a field name.
        (
            format!("{ok}---\n{}", pool("{cidr: 10.0.0.0/8, natOutgoin: true}")),
            "t.yaml, document 2 (1-based), spec.natOutgoin: unknown field `natOutgoin`, expected one of",
        ),
        (format!("{ok}---\n{ok}---\n{}", pool("{cidr: 10.0.0.0/8, natOutgoing: maybe}")), "t.yaml, document 3 (1-based), spec.natOutgoing: invalid type"),
        (pool("{cidr: 10.0.0.1/8}"), "document 1 (1-based), spec.cidr: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"),
        (pool("{cidr: 10.0.0.0/8, blockSize: 33}"), "spec.blockSize: 33 is out of range 20..=32 for 10.0.0.0/8"),
        (pool("{cidr: 10.0.0.0/24, blockSize: 22}"), "spec.blockSize: 22 is shorter than the pool's prefix /24"),
        (pool("{cidr: 'fd00::/64', blockSize: 100}"), "spec.blockSize: 100 is out of range 116..=128"),
        (pool("{cidr: 10.0.0.0/8, ipipMode: Sometimes}"), "spec.ipipMode: unknown variant `Sometimes`"),
        (pool("{cidr: 10.0.0.0/8, nodeSelector: \"coe == 'k8s\"}"), "spec.nodeSelector: invalid selector"),
        (pool("{cidr: not-a-cidr}"), "spec.cidr: invalid IP address syntax"),
        (pool("{natOutgoing: true}"), "spec: missing field `cidr`"),
        (
            "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {nat-outgoing: nope}\n".into(),
            "spec.nat-outgoing: invalid type",
        ),
        ("apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/33}\n".into(), "metadata.cidr: invalid IP address syntax"),
        (
            "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.300, scope: global}\nspec: {asNumber: 64511}\n".into(),
            "metadata.peerIP: invalid IP address syntax",
        ),
        (
            "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.32, scope: global}\nspec: {asNumber: 0}\n".into(),
            "spec.asNumber: 0 is not an AS number",
        ),
        (
            "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.32, scope: global}\nspec: {asNumber: 4294967296}\n".into(),
            "spec.asNumber: 4294967296 is not an AS number",
        ),
        (
            "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.32, scope: galactic}\nspec: {asNumber: 1}\n".into(),
            "metadata.scope: unknown scope \"galactic\"",
        ),
        (
            "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 172.16.18.32, scope: node}\nspec: {asNumber: 1}\n".into(),
            "metadata.node: scope: node needs the node's name",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: x}\nspec: {peerIP: 10.0.0.1}\n".into(),
            "spec.asNumber: missing",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: x}\nspec: {node: a, nodeSelector: all(), peerIP: 10.0.0.1, asNumber: 1}\n".into(),
            "spec.nodeSelector: cannot be combined with spec.node",
        ),
        (
            "apiVersion: v1\nkind: policy\nmetadata: {name: p}\nspec:\n  ingress:\n  - action: allow\n  - action: allowed\n".into(),
            "spec.ingress[1].action: unknown action \"allowed\"",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress:\n  - action: Allow\n    destination: {ports: [80]}\n".into(),
            "spec.ingress[0].destination.ports: ports need protocol",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  selector: role ==\n".into(),
            "spec.selector: invalid selector",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  types: [Egress]\n  ingress: [{action: Allow}]\n".into(),
            "spec.ingress: ingress rules given but types does not include Ingress",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: Bad_Name}\n".into(),
            "metadata.name: \"Bad_Name\" is not a valid name",
        ),
        ("apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {}\n".into(), "metadata.name: missing"),
        (
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: a, namespace: x}\n".into(),
            "metadata.namespace: this kind is not namespaced",
        ),
        ("apiVersion: projectcalico.org/v3\nkind: Gadget\nmetadata: {name: a}\n".into(), "kind: unknown kind \"Gadget\""),
        ("apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: a}\n".into(), "kind: unknown or unsupported v1 kind \"hostEndpoint\""),
        ("apiVersion: v2\nkind: ipPool\n".into(), "apiVersion: unsupported apiVersion \"v2\""),
        ("kind: ipPool\n".into(), "apiVersion: missing"),
        ("just a string\n".into(), "document 1 (1-based), at top level: expected a resource"),
        // Inside a top-level list, the item index is part of the path.
        (
            format!(
                "{ok}---\n- apiVersion: v1\n  kind: profile\n  metadata: {{name: a}}\n- apiVersion: v1\n  kind: bgpPeer\n  metadata: {{peerIP: 1.2.3.4, scope: global}}\n  spec: {{asNumber: -5}}\n"
            ),
            "document 2 (1-based), [1].spec.asNumber: -5 is not an AS number",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: Profile\n  metadata: {name: ''}\n".into(),
            "items[0].metadata.name: missing",
        ),
    ];
    let mut failures = Vec::new();
    for (yaml, want) in cases {
        let got = error(&yaml);
        if !got.contains(want) {
            failures.push(format!("for\n{yaml}\nwant: {want}\ngot:  {got}\n"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn yaml_syntax_error_names_the_file() {
    let e = error("a: [1, 2\n");
    assert!(e.starts_with("t.yaml: YAML syntax error:"), "{e}");
}

#[test]
fn one_bad_document_rejects_the_whole_file() {
    let mut text = data("seed_docs.yaml");
    text.push_str("---\napiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/8}\nspec: {nat-outgoing: true, ipip: {enabled: true, mode: sometimes}}\n");
    let e = parse_documents(&text, "seed.yaml").unwrap_err().to_string();
    assert_eq!(
        e,
        "seed.yaml, document 5 (1-based), spec.ipip.mode: unknown IPIP mode \"sometimes\", expected always or cross-subnet"
    );
}

#[test]
fn kind_names_from_the_command_line() {
    for (text, kind) in [
        ("ippool", Kind::IPPool),
        ("IPPools", Kind::IPPool),
        ("bgppeer", Kind::BGPPeer),
        ("bgpconfig", Kind::BGPConfiguration),
        ("BGPConfiguration", Kind::BGPConfiguration),
        ("node", Kind::Node),
        ("wep", Kind::WorkloadEndpoint),
        ("workloadendpoints", Kind::WorkloadEndpoint),
        ("networkpolicy", Kind::NetworkPolicy),
        ("gnp", Kind::GlobalNetworkPolicy),
        ("globalnetworkpolicies", Kind::GlobalNetworkPolicy),
        ("profile", Kind::Profile),
    ] {
        assert_eq!(Kind::from_cli(text), Some(kind), "{text}");
    }
    assert_eq!(Kind::from_cli("hostendpoint"), None);
}

#[test]
fn keys_follow_the_layout() {
    assert_eq!(key(Kind::IPPool, None, "k8s"), "/seam/v1/resources/ippools/k8s");
    assert_eq!(key(Kind::WorkloadEndpoint, Some("prod"), "w"), "/seam/v1/resources/workloadendpoints/prod/w");
    assert_eq!(key(Kind::WorkloadEndpoint, None, ""), "/seam/v1/resources/workloadendpoints/");
    assert_eq!(kind_prefix(Kind::NetworkPolicy, Some("a")), "/seam/v1/resources/networkpolicies/a/");
    assert_eq!(kind_prefix(Kind::Profile, Some("a")), "/seam/v1/resources/profiles/");
}
