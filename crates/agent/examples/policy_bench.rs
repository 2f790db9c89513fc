//! Issue 6's policy benchmarks, each next to its anchor in the same run (root; throwaway
//! network namespaces named `seam-pb-<pid>-*`, removed at the end, also on failure):
//!
//! 1. program time: compile 1,000 local endpoints × 100 policies and load the table with one
//!    `nft -f` in a fresh namespace; anchor: the same decisions written out as plain linear
//!    rules (one rule per endpoint × policy × allowed source address), loaded the same way;
//! 2. churn: with that table loaded, a new endpoint through `PolicySync::endpoint_added`
//!    (incremental element delta, loaded through the agent's long-lived `nft -i`), until its
//!    rules are in the kernel; anchor: the previous path (full recompile + element delta +
//!    one `nft -f` process);
//! 3. throughput: iperf3 between two "pods" on two "nodes" (namespaces, routed, no NAT), with
//!    no table, with Seam's compiled table holding 10,000 policy rules (100 policies × 100
//!    rules for other endpoints, plus the receiving pod's policy allowing a 10,000-address
//!    selector), and with 10,000 plain linear rules every packet walks (the anchor).
//!
//! Run: `cargo run --release -p agent --example policy_bench` (add `-- --quick` for a short run).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::policy::{NftLoader, PolicySync, PolicyWorld};
use dataplane::NetNs;
use resources::{GlobalNetworkPolicy, NetworkPolicy, Resource, WorkloadEndpoint, WorkloadEndpointSpec};

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
    }
}

fn nft_in(ns: &str, script: &str) -> Result<Duration, String> {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().unwrap().write_all(script.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("nft -f in {ns}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(started.elapsed())
}

/// Namespaces created by this run, deleted on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn add(&mut self, name: &str) -> String {
        let ns = format!("seam-pb-{}-{name}", std::process::id());
        sh(&["ip", "netns", "add", &ns]).unwrap();
        self.0.push(ns.clone());
        sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]).unwrap();
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = sh(&["ip", "netns", "delete", ns]);
        }
    }
}

fn wep(i: usize, node: &str, app: usize, role: usize) -> Resource {
    let ip = format!("10.{}.{}.{}/32", 64 + i / 65536, (i / 256) % 256, i % 256);
    Resource::WorkloadEndpoint(WorkloadEndpoint {
        namespace: "default".into(),
        name: format!("ep{i}"),
        labels: [("app".to_string(), format!("a{app}")), ("role".to_string(), format!("r{role}"))].into(),
        spec: WorkloadEndpointSpec {
            node: node.into(),
            orchestrator: "k8s".into(),
            interface_name: format!("seamb{i:010}"),
            ip_networks: vec![ip.parse().unwrap()],
            ..Default::default()
        },
    })
}

fn policy(i: usize, rules: usize) -> Resource {
    let mut yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p{i}\n  namespace: default\nspec:\n  selector: app == 'a{i}'\n  ingress:\n"
    );
    for r in 0..rules {
        yaml.push_str(&format!(
            "  - action: Allow\n    protocol: TCP\n    source:\n      selector: role == 'r{}'\n    destination:\n      ports: [{}]\n",
            (i + r) % 100,
            1000 + r
        ));
    }
    resources::parse_documents(&yaml, "bench").unwrap().remove(0)
}

/// 1,000 local endpoints (10 per app, roles spread) and 100 policies of `rules` rules each.
fn world(endpoints: usize, policies: usize, rules: usize) -> Vec<Resource> {
    let mut out: Vec<Resource> = (0..endpoints).map(|i| wep(i, "bench", i % policies.max(1), (i / 7) % 100)).collect();
    out.extend((0..policies).map(|i| policy(i, rules)));
    out
}

/// The anchor: every decision of `world` as one flat chain, no sets, no maps.
fn linear(world: &[Resource]) -> String {
    let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut eps = Vec::new();
    for r in world {
        if let Resource::WorkloadEndpoint(w) = r {
            by_role.entry(w.labels["role"].clone()).or_default().push(w.spec.ip_networks[0].addr().to_string());
            eps.push(w);
        }
    }
    let mut out = String::from("table inet lin {}\ndelete table inet lin\ntable inet lin {\n\tchain lin_fwd {\n\t\ttype filter hook forward priority 0; policy accept;\n");
    for r in world {
        let Resource::NetworkPolicy(p) = r else { continue };
        let app = p.spec.selector.split('\'').nth(1).unwrap();
        for w in eps.iter().filter(|w| w.labels["app"] == app) {
            for rule in &p.spec.ingress {
                let role = rule.source.selector.split('\'').nth(1).unwrap();
                let port = match &rule.destination.ports[0] {
                    resources::Port::Number(n) => *n,
                    _ => unreachable!(),
                };
                for src in by_role.get(role).into_iter().flatten() {
                    out.push_str(&format!("\t\toifname \"{}\" ip saddr {src} tcp dport {port} accept\n", w.spec.interface_name));
                }
            }
            out.push_str(&format!("\t\toifname \"{}\" drop\n", w.spec.interface_name));
        }
    }
    out.push_str("\t}\n}\n");
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut spaces = Namespaces(Vec::new());

    // --- 1. Program time.
    let (n_ep, n_pol) = (1000, 100);
    let resources = world(n_ep, n_pol, 1);
    let runs = if quick { 3 } else { 7 };
    let mut seam_times = Vec::new();
    let mut compile_times = Vec::new();
    let mut linear_times = Vec::new();
    let mut linear_rules = 0;
    let mut seam_rules = 0;
    for run in 0..runs {
        let ns = spaces.add(&format!("prog{run}"));
        let started = Instant::now();
        let input = PolicyWorld::from_resources(resources.clone()).input("bench");
        let rs = policy::compile(&input).unwrap();
        let script = rs.to_nft();
        compile_times.push(started.elapsed());
        nft_in(&ns, &script).unwrap();
        seam_times.push(started.elapsed());
        seam_rules = rs.chains.values().map(|c| c.rules.len()).sum();
        let lin = linear(&resources);
        linear_rules = lin.lines().filter(|l| l.contains(" accept") || l.ends_with(" drop")).count();
        linear_times.push(nft_in(&ns, &lin).unwrap());
    }
    let (seam_t, lin_t) = (median(seam_times), median(linear_times));
    println!("program time, {n_ep} endpoints x {n_pol} policies (median of {runs}, fresh netns each):");
    println!("  seam (compile {:.1} ms + nft -f): {:.1} ms, {seam_rules} rules in chains + sets/maps", ms(median(compile_times)), ms(seam_t));
    println!("  anchor, plain linear rules ({linear_rules} rules, nft -f only): {:.1} ms", ms(lin_t));
    println!("  ratio seam / linear: {:.2}x  (target: seam under 100 ms)", ms(seam_t) / ms(lin_t));

    // --- 2. Churn: endpoint_added on the loaded table (incremental element delta through the
    // long-lived `nft -i`), next to the previous path (full recompile + element delta + one
    // `nft -f` process) as the anchor, and the two halves of each measured alone.
    let ns = spaces.add("churn");
    let sync = Arc::new(PolicySync::new("bench", Box::new(NftLoader::new(Some(NetNs::open_named(&ns).unwrap())))));
    let adds = if quick { 20 } else { 200 };
    let mut churn = Vec::new();
    let mut world_now = resources.clone();
    rt.block_on(async {
        sync.replace_world(PolicyWorld::from_resources(resources.clone())).await.unwrap();
        for i in 0..adds {
            let r = wep(n_ep + i, "bench", i % n_pol, i % 100);
            let Resource::WorkloadEndpoint(w) = r.clone() else { unreachable!() };
            let started = Instant::now();
            let applied = sync.endpoint_added(&w).await.unwrap();
            churn.push(started.elapsed());
            assert_eq!(applied, agent::policy::Applied::Elements, "a new endpoint must be an element delta");
            world_now.push(r);
        }
    });
    let listed = sh(&["ip", "netns", "exec", &ns, "nft", "list", "map", "inet", "seam", "to_wl"]).unwrap();
    for i in [0, adds - 1] {
        assert!(listed.contains(&format!("seamb{:010}", n_ep + i)), "new endpoint {i} is in the kernel's map");
    }
    let loaded = rt.block_on(sync.loaded()).unwrap();
    let full = policy::compile(&PolicyWorld::from_resources(world_now.clone()).input("bench")).unwrap();
    assert!(loaded == full, "after {adds} incremental adds the table equals a full compile");
    let pct = |v: &[Duration], p: usize| {
        let mut s = v.to_vec();
        s.sort();
        s[(s.len() * p / 100).min(s.len() - 1)]
    };
    println!("churn, new endpoint -> its rules in the kernel ({adds} adds via PolicySync::endpoint_added, {n_ep}+ endpoints x {n_pol} policies):");
    println!(
        "  seam (incremental delta + nft -i): median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target: under 5 ms)",
        ms(pct(&churn, 50)),
        ms(pct(&churn, 90)),
        ms(pct(&churn, 99)),
        ms(*churn.iter().max().unwrap())
    );
    // Halves: the delta computation alone, and loading one such element batch with a fresh
    // `nft -f` process instead of the session.
    let (mut rs, mut index) = policy::compile_indexed(&PolicyWorld::from_resources(world_now.clone()).input("bench")).unwrap();
    let mut compute = Vec::new();
    let mut spawn = Vec::new();
    for i in 0..(if quick { 10 } else { 50 }) {
        let Resource::WorkloadEndpoint(w) = wep(n_ep + adds + i, "bench", i % n_pol, i % 100) else { unreachable!() };
        let e = agent::policy::endpoint(&w, "bench");
        let started = Instant::now();
        let script = rs.endpoint_added(&mut index, &e).expect("known combination");
        compute.push(started.elapsed());
        spawn.push(nft_in(&ns, &script).unwrap());
    }
    println!(
        "  of which: delta computation median {:.3} ms; the same batches with one `nft -f` process each: median {:.2} ms",
        ms(median(compute)),
        ms(median(spawn))
    );
    // Anchor: the previous path, full recompile + endpoint_delta + nft -f.
    let mut prev = Vec::new();
    let mut world_prev = PolicyWorld::from_resources(world_now.clone());
    let mut before = policy::compile(&world_prev.input("bench")).unwrap();
    for i in 0..(if quick { 5 } else { 20 }) {
        let r = wep(n_ep + 10_000 + i, "bench", i % n_pol, i % 100);
        let started = Instant::now();
        world_prev.put(r);
        let after = policy::compile(&world_prev.input("bench")).unwrap();
        let script = policy::endpoint_delta(&before, &after).expect("element delta");
        nft_in(&ns, &script).unwrap();
        prev.push(started.elapsed());
        before = after;
    }
    println!("  anchor, previous path (full recompile + endpoint_delta + nft -f): median {:.2} ms", ms(median(prev)));

    // --- 3. Throughput, pod-to-pod across two nodes.
    let secs = if quick { "2" } else { "5" };
    let (a, b, pa, pb) = (spaces.add("nodea"), spaces.add("nodeb"), spaces.add("poda"), spaces.add("podb"));
    let ip = |ns: &str, args: &str| {
        let mut v = vec!["ip", "netns", "exec", ns, "ip"];
        v.extend(args.split_whitespace());
        sh(&v).unwrap();
    };
    sh(&["ip", "link", "add", "pbu0", "netns", &a, "type", "veth", "peer", "name", "pbu1", "netns", &b]).unwrap();
    sh(&["ip", "link", "add", "seamaaaaaaaaaaa", "netns", &a, "type", "veth", "peer", "name", "eth0", "netns", &pa]).unwrap();
    sh(&["ip", "link", "add", "seambbbbbbbbbbb", "netns", &b, "type", "veth", "peer", "name", "eth0", "netns", &pb]).unwrap();
    ip(&a, "addr add 172.31.0.1/24 dev pbu0");
    ip(&b, "addr add 172.31.0.2/24 dev pbu1");
    ip(&pa, "addr add 10.250.0.1/32 dev eth0");
    ip(&pb, "addr add 10.250.1.1/32 dev eth0");
    for (ns, dev) in [(&a, "pbu0"), (&a, "seamaaaaaaaaaaa"), (&b, "pbu1"), (&b, "seambbbbbbbbbbb"), (&pa, "eth0"), (&pb, "eth0")] {
        ip(ns, &format!("link set {dev} up"));
    }
    ip(&a, "addr add 169.254.1.1/32 dev seamaaaaaaaaaaa");
    ip(&b, "addr add 169.254.1.1/32 dev seambbbbbbbbbbb");
    ip(&pa, "route add 169.254.1.1 dev eth0");
    ip(&pa, "route add default via 169.254.1.1 dev eth0");
    ip(&pb, "route add 169.254.1.1 dev eth0");
    ip(&pb, "route add default via 169.254.1.1 dev eth0");
    ip(&a, "route add 10.250.0.1/32 dev seamaaaaaaaaaaa");
    ip(&b, "route add 10.250.1.1/32 dev seambbbbbbbbbbb");
    ip(&a, "route add 10.250.1.0/24 via 172.31.0.2");
    ip(&b, "route add 10.250.0.0/24 via 172.31.0.1");
    for ns in [&a, &b] {
        sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    }
    let iperf = || -> f64 {
        let mut server =
            Command::new("ip").args(["netns", "exec", &pb, "iperf3", "-s", "-1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let out = sh(&["ip", "netns", "exec", &pa, "iperf3", "-c", "10.250.1.1", "-t", secs, "-J"]).unwrap();
        let _ = server.wait();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap()
    };
    // Seam's table on node b: 100 policies x 100 rules for 1,000 other endpoints, and the
    // receiving pod's own policy allowing TCP from a 10,000-address selector that includes pod a.
    let mut tp = world(1000, 100, 100);
    for i in 0..10_000 {
        let ip = format!("10.{}.{}.{}/32", 100 + i / 65536, (i / 256) % 256, i % 256);
        tp.push(Resource::WorkloadEndpoint(WorkloadEndpoint {
            namespace: "default".into(),
            name: format!("client{i}"),
            labels: [("role".to_string(), "client".to_string())].into(),
            spec: WorkloadEndpointSpec { node: "elsewhere".into(), orchestrator: "k8s".into(), ip_networks: vec![ip.parse().unwrap()], ..Default::default() },
        }));
    }
    tp.push(Resource::WorkloadEndpoint(WorkloadEndpoint {
        namespace: "default".into(),
        name: "pod-a".into(),
        labels: [("role".to_string(), "client".to_string())].into(),
        spec: WorkloadEndpointSpec { node: "a".into(), orchestrator: "k8s".into(), ip_networks: vec!["10.250.0.1/32".parse().unwrap()], ..Default::default() },
    }));
    tp.push(Resource::WorkloadEndpoint(WorkloadEndpoint {
        namespace: "default".into(),
        name: "pod-b".into(),
        labels: [("app".to_string(), "server".to_string())].into(),
        spec: WorkloadEndpointSpec {
            node: "bench".into(),
            orchestrator: "k8s".into(),
            interface_name: "seambbbbbbbbbbb".into(),
            ip_networks: vec!["10.250.1.1/32".parse().unwrap()],
            ..Default::default()
        },
    }));
    let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: server\nspec:\n  selector: app == 'server'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      selector: role == 'client'\n";
    let Resource::GlobalNetworkPolicy(g) = resources::parse_documents(gnp, "bench").unwrap().remove(0) else { unreachable!() };
    tp.push(Resource::GlobalNetworkPolicy(GlobalNetworkPolicy { ..g }));
    let rs = policy::compile(&PolicyWorld::from_resources(tp.clone()).input("bench")).unwrap();
    let policy_rules: usize = tp
        .iter()
        .map(|r| match r {
            Resource::NetworkPolicy(NetworkPolicy { spec, .. }) => spec.ingress.len(),
            Resource::GlobalNetworkPolicy(g) => g.spec.ingress.len(),
            _ => 0,
        })
        .sum();
    let largest_set = rs.sets.values().map(|s| s.elements.len()).max().unwrap_or(0);

    let none = iperf();
    nft_in(&b, &rs.to_nft()).unwrap();
    let seam = iperf();
    sh(&["ip", "netns", "exec", &b, "nft", "delete", "table", "inet", "seam"]).unwrap();
    // The anchor: 10,000 rules that every packet of the stream walks before its accept.
    let mut lin = String::from("table inet lin {}\ndelete table inet lin\ntable inet lin {\n\tchain lin_fwd {\n\t\ttype filter hook forward priority 0; policy accept;\n");
    for i in 0..10_000 {
        lin.push_str(&format!("\t\tip saddr 10.{}.{}.{} tcp dport {} accept\n", 100 + i / 65536, (i / 256) % 256, i % 256, 1000 + i % 100));
    }
    lin.push_str("\t\tip saddr 10.250.0.1 accept\n\t}\n}\n");
    nft_in(&b, &lin).unwrap();
    let linear_tp = iperf();
    println!("throughput, iperf3 pod a (node a) -> pod b (node b), routed, {secs} s each:");
    println!("  no policy: {:.2} Gbit/s", none / 1e9);
    println!(
        "  seam, {policy_rules} policy rules in force ({} rules in chains, largest set {largest_set} elements): {:.2} Gbit/s = {:.2}x  (target >= 0.95)",
        rs.chains.values().map(|c| c.rules.len()).sum::<usize>(),
        seam / 1e9,
        seam / none
    );
    println!("  anchor, 10,000 plain linear rules walked per packet: {:.2} Gbit/s = {:.2}x", linear_tp / 1e9, linear_tp / none);
}
