//! Table-driven semantics tests: resources + endpoints are compiled, then packets run through
//! the reference evaluator over the *compiled* table. Also: the rendered text passes the real
//! `nft -c` check, and endpoint churn yields element-only deltas.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use policy::nft::Ruleset;
use policy::{
    compile, default_profiles, endpoint_delta, evaluate, trace, CtState, Endpoint, NamedPort, OrchestratorPools,
    Packet, PolicyInput, Verdict,
};
use resources::{parse_documents, parse_k8s_network_policies, Labels, Protocol, Resource};

use Verdict::{Accept as A, Drop as D};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ep(name: &str, ns: &str, orch: &str, lbl: &[(&str, &str)], addr: &str, iface: &str) -> Endpoint {
    Endpoint {
        name: name.into(),
        namespace: ns.into(),
        orchestrator: orch.into(),
        labels: labels(lbl),
        addresses: vec![addr.parse().unwrap()],
        interface: (!iface.is_empty()).then(|| iface.to_string()),
        profiles: vec![format!("seam.{orch}")],
        ports: Vec::new(),
    }
}

/// Two orchestrators as in the seed: Kubernetes pods in 10.65/16, DC/OS tasks in 10.66/16.
fn world() -> PolicyInput {
    let mut db = ep("db", "default", "k8s", &[("role", "db")], "10.65.0.10/32", "calidb");
    db.addresses.push("fd00:65::10/128".parse().unwrap());
    db.ports.push(NamedPort { name: "redis".into(), protocol: Protocol::Tcp, port: 6379 });
    let mut fe = ep("fe", "default", "k8s", &[("role", "frontend"), ("tier", "web")], "10.65.0.11/32", "calife");
    fe.addresses.push("fd00:65::11/128".parse().unwrap());
    let endpoints = vec![
        db,
        fe,
        ep("other", "default", "k8s", &[("role", "other")], "10.65.0.12/32", "caliother"),
        ep("worker", "myproject", "k8s", &[("role", "worker")], "10.65.1.5/32", "calimp"),
        // On another node: in the sets, no chain here.
        ep("remote-fe", "default", "k8s", &[("role", "frontend")], "10.65.9.9/32", ""),
        ep("nginx", "dcos", "mesos", &[("app", "nginx")], "10.66.0.5/32", "calidcos"),
    ];
    let profiles = default_profiles(&[
        OrchestratorPools { orchestrator: "k8s".into(), cidrs: vec!["10.65.0.0/16".parse().unwrap(), "fd00:65::/64".parse().unwrap()] },
        OrchestratorPools { orchestrator: "mesos".into(), cidrs: vec!["10.66.0.0/16".parse().unwrap()] },
    ]);
    let namespaces = BTreeMap::from([
        ("myproject".to_string(), labels(&[("project", "myproject")])),
        ("default".to_string(), labels(&[])),
    ]);
    PolicyInput { endpoints, profiles, namespaces, ..Default::default() }
}

/// Where a packet comes from / goes to: an endpoint name, or a raw outside address.
fn locate(input: &PolicyInput, who: &str, v6: bool) -> (IpAddr, String) {
    if let Ok(a) = who.parse::<IpAddr>() {
        return (a, "eth0".into());
    }
    let e = input.endpoints.iter().find(|e| e.name == who).unwrap_or_else(|| panic!("no endpoint {who}"));
    let a = e.addresses.iter().find(|a| matches!(a, IpNet::V6(_)) == v6).expect("address of family").addr();
    (a, e.interface.clone().unwrap_or_else(|| "eth0".into()))
}

/// (from, to, protocol, dport, expected)
type Case<'a> = (&'a str, &'a str, u8, u16, Verdict);

fn check(input: &PolicyInput, cases: &[Case]) -> Ruleset {
    let rs = compile(input).unwrap_or_else(|e| panic!("{e}"));
    for (i, (from, to, proto, dport, want)) in cases.iter().enumerate() {
        let v6 = from.contains(':') || to.contains(':') || from.ends_with("#6");
        let (from, to) = (from.trim_end_matches("#6"), to.trim_end_matches("#6"));
        let (src, iif) = locate(input, from, v6);
        let (dst, oif) = locate(input, to, v6);
        let p = if *proto == 1 || *proto == 58 {
            Packet::icmp(src, dst, *dport as u8, 0)
        } else {
            Packet::l4(*proto, src, dst, *dport)
        }
        .via(&iif, &oif);
        assert_eq!(evaluate(&rs, &p), *want, "case {i}: {from} -> {to} proto {proto} port {dport}\n{}", rs.to_nft());
    }
    rs
}

fn k8s(input: &mut PolicyInput, yaml: &str) {
    input.k8s_policies.extend(parse_k8s_network_policies(yaml, "test.yaml").unwrap());
}

fn calico(input: &mut PolicyInput, yaml: &str) {
    for r in parse_documents(yaml, "test.yaml").unwrap() {
        match r {
            Resource::GlobalNetworkPolicy(p) => input.global_policies.push(p),
            Resource::NetworkPolicy(p) => input.policies.push(p),
            Resource::Profile(p) => input.profiles.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn seed_defaults_block_other_orchestrators_and_outside() {
    check(&world(), &[
        ("fe", "db", 6, 6379, A),          // same orchestrator's pool: default profile allows
        ("remote-fe", "db", 6, 80, A),     // pod on another node, same pool
        ("fe#6", "db", 6, 80, A),          // IPv6 pool too
        ("nginx", "db", 6, 6379, D),       // DC/OS task -> Kubernetes pod: blocked by default
        ("db", "nginx", 6, 80, D),         // and the other way (nginx's own profile)
        ("192.0.2.1", "db", 6, 80, D),     // outside the orchestrators: blocked
        ("db", "192.0.2.1", 6, 443, A),    // egress to the outside is allowed
        ("nginx", "192.0.2.1", 17, 53, A),
        ("192.0.2.1", "198.51.100.1", 6, 80, A), // not workload traffic: untouched
    ]);
    // Replies of an allowed connection come back in.
    let input = world();
    let rs = compile(&input).unwrap();
    let (ext, db) = ("192.0.2.1".parse().unwrap(), "10.65.0.10".parse().unwrap());
    let reply = Packet::tcp(ext, db, 40000).via("eth0", "calidb");
    assert_eq!(evaluate(&rs, &reply), D);
    assert_eq!(evaluate(&rs, &reply.clone().state(CtState::Established)), A);
    assert_eq!(evaluate(&rs, &reply.state(CtState::Invalid)), D);
}

#[test]
fn seed_allow_all_policy_and_calico_open_profile_work_as_written() {
    // The experiment's v1 resources, as written in the seed.
    let allow_all = "apiVersion: v1\nkind: policy\nmetadata:\n  name: allow-all\nspec:\n  types:\n  - ingress\n  - egress\n  ingress:\n  - action: allow\n  egress:\n  - action: allow\n";
    let open = "apiVersion: v1\nkind: profile\nmetadata:\n  name: calico-open\nspec:\n  egress:\n  - action: allow\n  ingress:\n  - action: allow\n";
    let mut input = world();
    calico(&mut input, allow_all);
    check(&input, &[("nginx", "db", 6, 6379, A), ("192.0.2.1", "db", 6, 80, A), ("db", "nginx", 17, 53, A)]);

    let mut input = world();
    calico(&mut input, open);
    for e in &mut input.endpoints {
        e.profiles = vec!["calico-open".into()];
    }
    check(&input, &[("nginx", "db", 6, 6379, A), ("192.0.2.1", "db", 6, 80, A), ("db", "192.0.2.1", 6, 80, A)]);
}

const SEED_002: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: test-network-policy\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      role: db\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          project: myproject\n    - podSelector:\n        matchLabels:\n          role: frontend\n    ports:\n    - protocol: tcp\n      port: 6379\n";

#[test]
fn k8s_seed_002_db_accepts_redis_from_frontend_and_myproject_only() {
    let mut input = world();
    k8s(&mut input, SEED_002);
    check(&input, &[
        ("fe", "db", 6, 6379, A),
        ("fe#6", "db", 6, 6379, A),
        ("remote-fe", "db", 6, 6379, A),
        ("worker", "db", 6, 6379, A),   // any pod of a namespace labelled project=myproject
        ("fe", "db", 6, 6380, D),
        ("fe", "db", 17, 6379, D),
        ("other", "db", 6, 6379, D),    // same namespace, not frontend: isolated
        ("nginx", "db", 6, 6379, D),
        ("192.0.2.1", "db", 6, 6379, D),
        ("db", "fe", 6, 80, A),         // fe is not selected: not isolated
        ("db", "192.0.2.1", 6, 80, A),  // egress not isolated (no Egress type)
    ]);
}

#[test]
fn k8s_pod_and_namespace_selector_combined_in_one_peer() {
    let mut input = world();
    input.endpoints.push(ep("mp-fe", "myproject", "k8s", &[("role", "frontend")], "10.65.1.6/32", "calimpfe"));
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {project: myproject}}\n      podSelector: {matchExpressions: [{key: role, operator: In, values: [frontend]}]}\n");
    check(&input, &[("mp-fe", "db", 6, 1, A), ("worker", "db", 6, 1, D), ("fe", "db", 6, 1, D)]);
}

#[test]
fn k8s_ip_block_with_except() {
    let mut input = world();
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ext}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}\n    ports: [{port: 5432}]\n");
    check(&input, &[
        ("192.0.2.1", "db", 6, 5432, A),
        ("192.0.2.127", "db", 6, 5432, A),
        ("192.0.2.128", "db", 6, 5432, D),
        ("192.0.2.200", "db", 6, 5432, D),
        ("192.0.2.1", "db", 6, 5433, D),
        ("198.51.100.1", "db", 6, 5432, D),
        ("fe", "db", 6, 5432, D), // isolated now: the pool default no longer applies
    ]);
}

#[test]
fn k8s_end_port_ranges_and_named_ports() {
    let mut input = world();
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ranges}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress:\n  - ports:\n    - {protocol: TCP, port: 8000, endPort: 8080}\n    - {protocol: UDP, port: redis}\n    - {protocol: TCP, port: redis}\n");
    check(&input, &[
        ("nginx", "db", 6, 7999, D),
        ("nginx", "db", 6, 8000, A),
        ("nginx", "db", 6, 8042, A),
        ("nginx", "db", 6, 8080, A),
        ("nginx", "db", 6, 8081, D),
        ("nginx", "db", 6, 6379, A),  // "redis" resolves to db's TCP 6379
        ("fe#6", "db", 6, 6379, A),   // on both families
        ("nginx", "db", 17, 6379, D), // db has no UDP port named redis
        ("nginx", "db", 17, 8000, D),
    ]);
}

#[test]
fn k8s_egress_and_policy_types() {
    let mut input = world();
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: eg}\nspec:\n  podSelector: {matchLabels: {role: frontend}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {role: db}}}]\n    ports: [{port: 6379}]\n");
    check(&input, &[
        ("fe", "db", 6, 6379, A),
        ("fe", "db", 6, 22, D),
        ("fe", "other", 6, 6379, D),
        ("fe", "192.0.2.1", 6, 443, D),
        ("db", "fe", 6, 80, A), // ingress of fe: not isolated (policyTypes has only Egress)
    ]);
    // An empty ingress list with the Ingress type isolates completely.
    let mut input = world();
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n");
    check(&input, &[("fe", "db", 6, 1, D), ("db", "fe", 6, 1, D), ("worker", "db", 6, 1, D), ("db", "worker", 6, 1, A)]);
}

#[test]
fn selector_language_in_global_policies() {
    // Each: a source selector allowed into db by a global policy; which sources get in.
    // (selector, fe, other, worker, nginx)
    let cases: &[(&str, [Verdict; 4])] = &[
        ("role == 'frontend'", [A, D, D, D]),
        ("role != 'frontend'", [D, A, A, A]),
        ("has(tier)", [A, D, D, D]),
        ("!has(tier)", [D, A, A, A]),
        ("role in {'other', 'worker'}", [D, A, A, D]),
        ("role not in {'other', 'worker'}", [A, D, D, A]),
        ("role == 'frontend' || app == 'nginx'", [A, D, D, A]),
        ("role == 'frontend' && tier == 'web'", [A, D, D, D]),
        ("all()", [A, A, A, A]),
        ("projectcalico.org/namespace == 'myproject'", [D, D, A, D]),
        ("projectcalico.org/orchestrator == 'mesos'", [D, D, D, A]),
    ];
    for (sel, want) in cases {
        let mut input = world();
        calico(&mut input, &format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  selector: role == 'db'\n  ingress:\n  - action: Allow\n    source:\n      selector: \"{sel}\"\n"));
        let srcs = ["fe", "other", "worker", "nginx"];
        let cases: Vec<Case> = srcs.iter().zip(want).map(|(s, w)| (*s, "db", 6, 80, *w)).collect();
        check(&input, &cases);
    }
}

#[test]
fn deny_before_allow_by_order_and_name() {
    let pol = |name: &str, order: &str, body: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  {order}selector: role == 'db'\n  ingress:\n{body}---\n")
    };
    let deny_fe = "  - action: Deny\n    source: {selector: \"role == 'frontend'\"}\n";
    let allow = "  - action: Allow\n";
    // Deny first.
    let mut input = world();
    calico(&mut input, &(pol("b-deny", "order: 10\n  ", deny_fe) + &pol("a-allow", "order: 20\n  ", allow)));
    check(&input, &[("fe", "db", 6, 80, D), ("other", "db", 6, 80, A), ("nginx", "db", 6, 80, A)]);
    // Allow first: the deny is never reached.
    let mut input = world();
    calico(&mut input, &(pol("b-deny", "order: 20\n  ", deny_fe) + &pol("a-allow", "order: 10\n  ", allow)));
    check(&input, &[("fe", "db", 6, 80, A)]);
    // Same order: by name (a-allow before b-deny).
    let mut input = world();
    calico(&mut input, &(pol("b-deny", "order: 10\n  ", deny_fe) + &pol("a-allow", "order: 10\n  ", allow)));
    check(&input, &[("fe", "db", 6, 80, A)]);
    // No order = after every ordered policy.
    let mut input = world();
    calico(&mut input, &(pol("a-allow", "", allow) + &pol("b-deny", "order: 99999\n  ", deny_fe)));
    check(&input, &[("fe", "db", 6, 80, D), ("other", "db", 6, 80, A)]);
    // A policy applies but nothing matches: end-of-policies drop, profiles not consulted.
    let mut input = world();
    calico(&mut input, &pol("only-deny", "order: 1\n  ", deny_fe));
    check(&input, &[("fe", "db", 6, 80, D), ("other", "db", 6, 80, D), ("db", "fe", 6, 80, A)]);
}

#[test]
fn pass_goes_to_profiles_skipping_later_policies() {
    let mut input = world();
    calico(&mut input, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: pass-k8s}\nspec:\n  order: 10\n  selector: role == 'db'\n  ingress:\n  - action: Pass\n    source: {nets: [10.65.0.0/16]}\n  - action: Pass\n    source: {selector: \"app == 'nginx'\"}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: allow-later}\nspec:\n  order: 20\n  selector: role == 'db'\n  ingress:\n  - action: Allow\n");
    check(&input, &[
        ("fe", "db", 6, 80, A),          // Pass -> k8s default profile allows its pool
        ("nginx", "db", 6, 80, D),       // Pass -> profile drops; the later Allow is skipped
        ("192.0.2.1", "db", 6, 80, A),   // no Pass: the later policy allows
    ]);
}

#[test]
fn log_logs_and_continues() {
    let mut input = world();
    calico(&mut input, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: audit}\nspec:\n  order: 1\n  ingress:\n  - action: Log\n    protocol: TCP\n    destination: {ports: [22]}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: allow}\nspec:\n  order: 2\n  ingress:\n  - action: Allow\n");
    let rs = check(&input, &[("nginx", "db", 6, 22, A), ("nginx", "db", 6, 23, A)]);
    let (src, dst) = ("10.66.0.5".parse().unwrap(), "10.65.0.10".parse().unwrap());
    let t = trace(&rs, &Packet::tcp(src, dst, 22).via("calidcos", "calidb"));
    assert_eq!(t.verdict, A);
    assert_eq!(t.logs, vec!["seam audit".to_string()]);
    assert!(trace(&rs, &Packet::tcp(src, dst, 23).via("calidcos", "calidb")).logs.is_empty());
}

#[test]
fn egress_deny_namespaced_policy_nets_and_icmp() {
    let mut input = world();
    calico(&mut input, "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db-out, namespace: default}\nspec:\n  selector: role == 'db'\n  types: [Egress]\n  egress:\n  - action: Deny\n    destination: {nets: [10.66.0.0/16]}\n  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8}\n  - action: Allow\n    protocol: UDP\n    destination: {ports: [53], notNets: [192.0.2.0/24]}\n  - action: Allow\n    destination: {selector: \"role == 'frontend'\"}\n");
    check(&input, &[
        ("db", "nginx", 6, 80, D),
        ("db", "nginx", 1, 8, D),          // Deny comes first
        ("db", "192.0.2.1", 1, 8, A),      // echo request
        ("db", "192.0.2.1", 1, 13, D),
        ("db", "198.51.100.1", 17, 53, A),
        ("db", "192.0.2.1", 17, 53, D),    // notNets
        ("db", "fe", 6, 80, A),            // selector scoped to the namespace
        ("db", "fe#6", 6, 80, A),
        ("db", "worker", 6, 80, D),        // other namespace: not selected by role == 'frontend' there either
        ("fe", "db", 6, 80, A),            // ingress untouched
    ]);
}

#[test]
fn new_pod_with_known_policies_changes_only_elements() {
    let mut input = world();
    k8s(&mut input, SEED_002);
    let before = compile(&input).unwrap();
    input.endpoints.push(ep("fe2", "default", "k8s", &[("role", "frontend")], "10.65.0.20/32", "calife2"));
    let after = compile(&input).unwrap();
    assert_eq!(before.chains, after.chains, "a new pod must not change chains");
    let delta = endpoint_delta(&before, &after).expect("element-only change");
    assert!(delta.contains("add element inet seam to_wl { \"calife2\" : jump ep_"), "{delta}");
    assert!(delta.contains("10.65.0.20"), "{delta}");
    assert!(!delta.contains("delete"), "{delta}");
    assert_eq!(endpoint_delta(&after, &after).as_deref(), Some(""));
    // And back: removal deletes the elements.
    let back = endpoint_delta(&after, &before).unwrap();
    assert!(back.contains("delete element inet seam from_wl { \"calife2\" }"), "{back}");
    // The new pod is allowed in by the policy right away.
    let rs = check(&input, &[("fe2", "db", 6, 6379, A), ("fe2", "db", 6, 1, D)]);
    // A new policy changes chains: full replacement.
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n");
    assert_eq!(endpoint_delta(&rs, &compile(&input).unwrap()), None);
}

#[test]
fn bad_input_names_object_and_field() {
    let mut input = world();
    calico(&mut input, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: ports}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [80]}\n");
    // `apply` refuses this already; the compiler must too (it also reads the store).
    input.global_policies[0].spec.ingress[0].protocol = None;
    let e = compile(&input).unwrap_err().to_string();
    assert!(e.contains("GlobalNetworkPolicy ports") && e.contains("spec.ingress[0].protocol"), "{e}");

    let mut input = world();
    input.k8s_policies.extend(parse_k8s_network_policies("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Maybe}]}\n", "x").unwrap());
    let e = compile(&input).unwrap_err().to_string();
    assert!(e.contains("default/bad") && e.contains("operator") && e.contains("Maybe"), "{e}");

    let mut input = world();
    input.endpoints[1].interface = Some("calidb".into());
    let e = compile(&input).unwrap_err().to_string();
    assert!(e.contains("default/fe") && e.contains("interfaceName"), "{e}");
}

#[test]
fn rendered_table_passes_nft_check() {
    let mut input = world();
    k8s(&mut input, SEED_002);
    k8s(&mut input, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ranges}\nspec:\n  podSelector: {matchLabels: {role: other}}\n  ingress:\n  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]\n    ports: [{port: 8000, endPort: 8080}, {port: redis}]\n");
    calico(&mut input, "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: mix}\nspec:\n  order: 5\n  selector: app == 'nginx'\n  ingress:\n  - action: Log\n  - action: Pass\n    source: {notSelector: \"has(x)\"}\n  - action: Deny\n    protocol: ICMPv6\n    notICMP: {type: 128, code: 0}\n  egress:\n  - action: Allow\n    protocol: UDP\n    destination: {notPorts: [\"1:1023\"]}\n");
    let text = compile(&input).unwrap().to_nft();
    let mut child = std::process::Command::new("/usr/sbin/nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run /usr/sbin/nft");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft -c refused:\n{}\n{}", String::from_utf8_lossy(&out.stderr), text);
}
