//! `seam agent` end to end, on a real kernel (needs root): a route reflector (`seam bgpd`) and
//! two node agents, each in its own network namespace on one bridge, sharing one embedded
//! datastore through `seam datastore serve` (a Unix socket, reachable from every namespace).
//!
//! Checked: node registration; the global peer (the reflector) and, once enabled, the
//! node-to-node mesh come up with the right peer types; a block allocated on node A is
//! announced and installed in node B's kernel with Seam's protocol, and withdrawn once its
//! last address is released; routes of other protocols are untouched; a SIGKILLed and
//! restarted agent keeps its routes throughout and drops stale ones once the reflector's
//! End-of-RIB arrived; a live BGPPeer change does not reset the other sessions; `seam node
//! status` adds the agent's policy and route state from its status file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testbed::{wait_until, Daemon, DaemonSpec, Network, Poll};

const SEAM: &str = env!("CARGO_BIN_EXE_seam");
/// Seam's route protocol number (dataplane::SEAM_ROUTE_PROTOCOL).
const PROTO: &str = "94";

/// Everything one test built; namespaces and processes go away on drop (processes first).
struct Lab {
    dir: PathBuf,
    socket: String,
    agents: Vec<(String, Daemon)>,
    rr: Option<Daemon>,
    store: Option<Daemon>,
    net: Option<Network>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (_, agent) in &self.agents {
                agent.dump();
            }
            if let Some(rr) = &self.rr {
                rr.dump();
            }
        }
        self.agents.clear();
        self.rr = None;
        self.store = None;
        self.net = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec(name: &str, ns: Option<&str>, argv: Vec<String>, dir: &Path) -> DaemonSpec {
    DaemonSpec {
        name: name.to_string(),
        ns: ns.map(str::to_string),
        argv,
        env: vec![("RUST_LOG".into(), "info".into())],
        stdout: dir.join(format!("{name}.out")),
        stderr: dir.join(format!("{name}.err")),
        logs: Vec::new(),
        detach: false,
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Lab {
    fn seam(&self, list: &[&str]) -> String {
        let mut full = list.to_vec();
        let ds = format!("unix:{}", self.socket);
        if matches!(list[0], "apply" | "get" | "delete" | "ipam") {
            full.extend(["--datastore", &ds]);
        }
        testbed::run(SEAM, &full).unwrap_or_else(|e| panic!("seam {}: {e}", list.join(" ")))
    }

    fn apply(&self, name: &str, yaml: &str) {
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        self.seam(&["apply", "-f", file.to_str().unwrap()]);
    }

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.net.as_ref().unwrap().prefix)
    }

    fn start_agent(&mut self, node: &str, index: u8) {
        let ns = self.ns(node);
        let argv = args(&[
            SEAM,
            "agent",
            "--node",
            node,
            "--address",
            &format!("172.16.18.{index}/24"),
            "--datastore",
            &format!("unix:{}", self.socket),
            "--orchestrator",
            "kubernetes",
            "--cni-socket",
            self.dir.join(format!("{node}.sock")).to_str().unwrap(),
            "--api-hosts",
            "127.0.0.1:50051",
            "--convergence-grace",
            "15",
        ]);
        let agent = Daemon::start(spec(&format!("agent-{node}"), Some(&ns), argv, &self.dir)).expect("agent starts");
        self.agents.push((node.to_string(), agent));
    }

    fn agent(&self, node: &str) -> &Daemon {
        &self.agents.iter().find(|(n, _)| n == node).expect("agent exists").1
    }

    /// The agent's status file (next to its CNI socket).
    fn status_file(&self, node: &str) -> String {
        self.dir.join(format!("{node}.status.json")).to_str().unwrap().to_string()
    }

    /// `seam node status --json` inside a node's namespace.
    fn status(&self, node: &str) -> Result<serde_json::Value, String> {
        let file = self.status_file(node);
        let text = testbed::run_in(&self.ns(node), SEAM, &["node", "status", "--json", "--status-file", &file]).map_err(|e| e.0)?;
        serde_json::from_str(&text).map_err(|e| format!("bad JSON {text:?}: {e}"))
    }

    /// Seam routes with a gateway in a node's kernel: (dst, gateway).
    fn seam_routes(&self, node: &str) -> Vec<(String, String)> {
        routes(&self.ns(node), &["proto", PROTO])
    }
}

fn routes(ns: &str, filter: &[&str]) -> Vec<(String, String)> {
    let mut a = vec!["-n", ns, "-j", "-4", "route", "show"];
    a.extend_from_slice(filter);
    let text = testbed::run("ip", &a).expect("ip route show");
    let list: Vec<serde_json::Value> = if text.trim().is_empty() { Vec::new() } else { serde_json::from_str(&text).unwrap() };
    list.iter()
        .filter_map(|r| Some((r["dst"].as_str()?.to_string(), r["gateway"].as_str().unwrap_or("").to_string())))
        .collect()
}

/// The peer row for `address` in a status, if present.
fn peer<'a>(status: &'a serde_json::Value, address: &str) -> Option<&'a serde_json::Value> {
    status["ipv4"].as_array()?.iter().find(|p| p["peerAddress"] == address)
}

fn established(lab: &Lab, node: &str, address: &str, peer_type: &str) -> Result<String, Poll> {
    lab.agent(node).check_alive()?;
    let status = lab.status(node)?;
    let row = peer(&status, address).ok_or_else(|| format!("{node}: no peer {address} in {status}"))?;
    if row["info"] != "Established" || row["peerType"] != peer_type {
        return Err(Poll::NotYet(format!("{node}: {row}")));
    }
    Ok(row["since"].as_str().unwrap_or_default().to_string())
}

const RR_TOML: &str = r#"
[global.config]
as = 64512
router-id = "172.16.18.32"
local-address-list = ["172.16.18.32"]

[[peer-groups]]
[peer-groups.config]
peer-group-name = "nodes"
peer-as = 64512
[peer-groups.route-reflector.config]
route-reflector-client = true
[[peer-groups.afi-safis]]
[peer-groups.afi-safis.config]
afi-safi-name = "ipv4-unicast"

[[dynamic-neighbors]]
[dynamic-neighbors.config]
prefix = "172.16.18.0/24"
peer-group = "nodes"
"#;

const RESOURCES: &str = r#"
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: route-reflector
spec:
  peerIP: 172.16.18.32
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: k8s
spec:
  cidr: 10.244.0.0/16
  blockSize: 26
  nodeSelector: coe == 'kubernetes'
"#;

fn build(tag: &str) -> Lab {
    let id = format!("{tag}{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("seam-agent-e2e-{id}"));
    testbed::create_dir(&dir).unwrap();
    let socket = dir.join("store.sock").to_str().unwrap().to_string();
    let net = Network::create(&format!("sa{id}")).expect("network (needs root)");
    for (name, index) in [("rr", 32), ("a", 33), ("b", 34)] {
        net.add_host(name, index, &dir.join(name)).unwrap();
    }
    let mut lab = Lab { dir: dir.clone(), socket: socket.clone(), agents: Vec::new(), rr: None, store: None, net: Some(net) };
    let store_file = format!("file:{}", dir.join("seam.redb").display());
    let store =
        Daemon::start(spec("store", None, args(&[SEAM, "datastore", "serve", "--datastore", &store_file, "--listen", &format!("unix:{socket}")]), &dir))
            .unwrap();
    lab.store = Some(store);
    wait_until("the store socket exists", Duration::from_secs(10), || {
        lab.store.as_ref().unwrap().check_alive()?;
        if Path::new(&socket).exists() { Ok(()) } else { Err(Poll::NotYet("no socket yet".into())) }
    })
    .unwrap();
    let rr_conf = dir.join("rr.toml");
    std::fs::write(&rr_conf, RR_TOML).unwrap();
    let rr_ns = lab.ns("rr");
    lab.rr = Some(
        Daemon::start(spec("rr", Some(&rr_ns), args(&[SEAM, "bgpd", "-f", rr_conf.to_str().unwrap(), "--api-hosts", "127.0.0.1:50051"]), &dir))
            .unwrap(),
    );
    lab.apply("base", RESOURCES);
    lab
}

#[test]
fn agents_peer_announce_install_and_survive_restarts() {
    let mut lab = build("x");
    lab.start_agent("a", 33);
    lab.start_agent("b", 34);

    // Registration: both nodes with the coe label and their BGP address.
    let nodes = wait_until("both nodes are registered", Duration::from_secs(15), || {
        let nodes = lab.seam(&["get", "nodes", "-o", "json"]);
        if nodes.contains("172.16.18.33/24") && nodes.contains("172.16.18.34/24") { Ok(nodes) } else { Err(Poll::NotYet(nodes)) }
    })
    .unwrap();
    assert!(nodes.contains("\"coe\": \"kubernetes\""), "{nodes}");

    // The global peer (the reflector) comes up on both.
    for node in ["a", "b"] {
        wait_until(&format!("{node} peers with the reflector"), Duration::from_secs(30), || {
            established(&lab, node, "172.16.18.32", "global")
        })
        .unwrap();
    }

    // A foreign route in B must survive everything below.
    testbed::run("ip", &["-n", &lab.ns("b"), "route", "add", "10.99.0.0/24", "via", "172.16.18.40", "proto", "static"]).unwrap();

    // A block allocated on A reaches B's kernel through the reflector.
    let out = lab.seam(&["ipam", "allocate", "--node", "a", "--handle", "c1"]);
    assert!(out.contains("10.244."), "{out}");
    let block = wait_until("A's block is installed in B", Duration::from_secs(10), || {
        let r = lab.seam_routes("b");
        r.iter().find(|(_, gw)| gw == "172.16.18.33").map(|(dst, _)| dst.clone()).ok_or_else(|| Poll::NotYet(format!("{r:?}")))
    })
    .unwrap();
    assert!(block.starts_with("10.244.") && block.ends_with("/26"), "{block}");
    // A does not install a route for its own block.
    assert!(lab.seam_routes("a").is_empty(), "{:?}", lab.seam_routes("a"));

    // Releasing the last address empties the block: its affinity goes and the route with it.
    lab.seam(&["ipam", "release", "--handle", "c1"]);
    wait_until("the emptied block is withdrawn from B", Duration::from_secs(15), || {
        let r = lab.seam_routes("b");
        if r.is_empty() { Ok(()) } else { Err(Poll::NotYet(format!("{r:?}"))) }
    })
    .unwrap();

    // Allocate again and keep it, for the restart checks.
    lab.seam(&["ipam", "allocate", "--node", "a", "--handle", "c2"]);
    let block = wait_until("A's block is installed in B again", Duration::from_secs(10), || {
        let r = lab.seam_routes("b");
        r.iter().find(|(_, gw)| gw == "172.16.18.33").map(|(dst, _)| dst.clone()).ok_or_else(|| Poll::NotYet(format!("{r:?}")))
    })
    .unwrap();

    // SIGKILL B's agent; plant a stale Seam route; restart. The valid route never disappears,
    // the stale one goes once BGP has converged.
    lab.agent("b").kill();
    testbed::run("ip", &["-n", &lab.ns("b"), "route", "add", "10.250.0.0/26", "via", "172.16.18.33", "proto", PROTO]).unwrap();
    lab.agent("b").restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut stale_gone = false;
    while Instant::now() < deadline {
        let r = lab.seam_routes("b");
        assert!(r.iter().any(|(dst, _)| *dst == block), "route {block} vanished during the restart: {r:?}");
        if !r.iter().any(|(dst, _)| dst == "10.250.0.0/26") {
            stale_gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stale_gone, "the stale route was not removed after convergence: {:?}", lab.seam_routes("b"));
    // Converged because the reflector sent End-of-RIB, not because the grace ran out.
    let agent = wait_until("B reports converged routes", Duration::from_secs(10), || {
        let status = lab.status("b")?;
        let agent = status["agent"].clone();
        if agent["routes"]["converged"] == true { Ok(agent) } else { Err(Poll::NotYet(format!("{status}"))) }
    })
    .unwrap();
    assert_eq!(agent["routes"]["convergedBy"], "endOfRib", "{agent}");
    assert_eq!(agent["node"], "b", "{agent}");
    assert!(lab.seam_routes("b").iter().any(|(dst, _)| *dst == block));
    let foreign = routes(&lab.ns("b"), &["proto", "static"]);
    assert_eq!(foreign, vec![("10.99.0.0/24".to_string(), "172.16.18.40".to_string())], "foreign route touched");

    // Live peering changes: a node-specific peer for A, then the mesh. The reflector session
    // is not reset by either.
    let rr_since = wait_until("A still peers with the reflector", Duration::from_secs(30), || {
        established(&lab, "a", "172.16.18.32", "global")
    })
    .unwrap();
    lab.apply(
        "extra",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: a-extra\nspec:\n  node: a\n  peerIP: 172.16.18.50\n  asNumber: 64999\n",
    );
    wait_until("A has the node-specific peer", Duration::from_secs(10), || {
        let status = lab.status("a")?;
        let row = peer(&status, "172.16.18.50").ok_or_else(|| format!("{status}"))?;
        if row["peerType"] == "node specific" { Ok(()) } else { Err(Poll::NotYet(format!("{row}"))) }
    })
    .unwrap();
    assert!(lab.status("b").map(|s| peer(&s, "172.16.18.50").is_none()).unwrap(), "B must not get A's peer");
    lab.apply(
        "mesh",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: true\n  asNumber: 64512\n",
    );
    for (node, other) in [("a", "172.16.18.34"), ("b", "172.16.18.33")] {
        wait_until(&format!("{node} meshes with {other}"), Duration::from_secs(30), || {
            established(&lab, node, other, "node-to-node mesh")
        })
        .unwrap();
    }
    let since_now = established(&lab, "a", "172.16.18.32", "global").unwrap();
    assert_eq!(since_now, rr_since, "the reflector session was reset by unrelated peer changes");
    lab.seam(&["delete", "bgppeer", "a-extra"]);
    wait_until("A drops the removed peer", Duration::from_secs(10), || {
        let status = lab.status("a")?;
        if peer(&status, "172.16.18.50").is_none() { Ok(()) } else { Err(Poll::NotYet(format!("{status}"))) }
    })
    .unwrap();

    // The text table, as calicoctl prints it.
    let text = testbed::run_in(&lab.ns("a"), SEAM, &["node", "status", "--status-file", &lab.status_file("a")]).unwrap();
    assert!(text.starts_with("Seam process is running.\n\nIPv4 BGP status\n"), "{text}");
    assert!(text.contains("| 172.16.18.32 | global            | up    |"), "{text}");
    assert!(text.contains("| 172.16.18.34 | node-to-node mesh | up    |"), "{text}");
    assert!(text.contains("No IPv6 peers found.\n\nPolicy status\n"), "{text}");
    assert!(text.contains(" LOADED ") && text.contains("Kernel routes: converged"), "{text}");
    // Without a status file the BGP part is unchanged and the policy state is "unknown".
    let missing = lab.dir.join("none.status.json");
    let text = testbed::run_in(&lab.ns("a"), SEAM, &["node", "status", "--status-file", missing.to_str().unwrap()]).unwrap();
    assert!(text.contains("| 172.16.18.32 | global            | up    |"), "{text}");
    assert!(text.contains("Policy status\nUnknown: cannot read the agent status file"), "{text}");
}

/// Propagation from an allocation that claims a new block on node A to the route in node B's
/// kernel, through the reflector. Every allocation claims a new block here (blockSize 32), and
/// the clock runs from the start of `seam ipam allocate` (a process start and a datastore
/// round trip included) to the moment B's kernel has the route.
#[test]
fn new_block_reaches_the_other_kernel_quickly() {
    let mut lab = build("p");
    lab.apply(
        "fast",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: fast\nspec:\n  cidr: 10.10.0.0/24\n  blockSize: 32\n",
    );
    lab.start_agent("a", 33);
    lab.start_agent("b", 34);
    for node in ["a", "b"] {
        wait_until(&format!("{node} peers with the reflector"), Duration::from_secs(30), || {
            established(&lab, node, "172.16.18.32", "global")
        })
        .unwrap();
    }
    let b_ns = lab.ns("b");
    let mut samples = Vec::new();
    for i in 0..30 {
        let start = Instant::now();
        let out = lab.seam(&["ipam", "allocate", "--node", "a", "--handle", &format!("p{i}")]);
        let ip = out.split_whitespace().nth(1).unwrap_or_else(|| panic!("allocate printed {out:?}")).split(',').next().unwrap().to_string();
        assert!(ip.starts_with("10.10.0."), "{out}");
        let prefix = format!("{ip}/32");
        loop {
            let text = testbed::run("ip", &["-n", &b_ns, "route", "show", "exact", &prefix, "proto", PROTO]).unwrap();
            if text.contains("via 172.16.18.33") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{prefix} never reached B");
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    eprintln!("propagation allocate(A) -> kernel(B): p50 {p50:?}, p99 {p99:?}, max {:?}", samples.last().unwrap());
    assert!(p99 < Duration::from_millis(500), "propagation p99 {p99:?}");
}

/// A learned route's output device (`dev`) in a node's kernel.
fn route_dev(ns: &str, prefix: &str) -> Option<(String, String, bool)> {
    let text = testbed::run("ip", &["-n", ns, "-j", "route", "show", "exact", prefix, "proto", PROTO]).ok()?;
    let list: Vec<serde_json::Value> = serde_json::from_str(text.trim()).ok()?;
    let r = list.first()?;
    let onlink = r["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "onlink"));
    Some((r["dev"].as_str()?.to_string(), r["gateway"].as_str()?.to_string(), onlink))
}

fn vxlan_tx_packets(ns: &str) -> u64 {
    let text = testbed::run("ip", &["-n", ns, "-s", "-j", "link", "show", "vxlan.seam"]).expect("vxlan.seam exists");
    let list: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap();
    list[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
}

/// `vxlanMode: Always`: remote blocks are routed through `vxlan.seam` (onlink via the remote
/// node), traffic really crosses the tunnel, and switching the pool to Never re-targets the
/// route live.
#[test]
fn vxlan_pool_routes_through_the_tunnel() {
    let mut lab = build("v");
    lab.apply(
        "vx",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: vx\nspec:\n  cidr: 10.20.0.0/24\n  blockSize: 26\n  vxlanMode: Always\n",
    );
    lab.start_agent("a", 33);
    lab.start_agent("b", 34);
    for node in ["a", "b"] {
        wait_until(&format!("{node} peers with the reflector"), Duration::from_secs(30), || {
            established(&lab, node, "172.16.18.32", "global")
        })
        .unwrap();
    }
    let out = lab.seam(&["ipam", "allocate", "--node", "a", "--handle", "w1"]);
    let ip = out.split_whitespace().nth(1).unwrap().split(',').next().unwrap().to_string();
    assert!(ip.starts_with("10.20.0."), "{out}");
    let block = "10.20.0.0/26";
    let b_ns = lab.ns("b");
    wait_until("B routes A's block through vxlan.seam", Duration::from_secs(10), || match route_dev(&b_ns, block) {
        Some((dev, gw, true)) if dev == "vxlan.seam" && gw == "172.16.18.33" => Ok(()),
        other => Err(Poll::NotYet(format!("{other:?}"))),
    })
    .unwrap();
    // A stand-in workload on A: the address on A's loopback. B reaches it through the tunnel.
    testbed::run("ip", &["-n", &lab.ns("a"), "addr", "add", &format!("{ip}/32"), "dev", "lo"]).unwrap();
    let before = vxlan_tx_packets(&b_ns);
    testbed::run_in(&b_ns, "ping", &["-c", "2", "-W", "3", &ip]).expect("B reaches A's workload address over VXLAN");
    assert!(vxlan_tx_packets(&b_ns) >= before + 2, "the pings did not go through vxlan.seam");

    // vxlanMode Never: the same route, now plain.
    lab.apply(
        "vx",
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: vx\nspec:\n  cidr: 10.20.0.0/24\n  blockSize: 26\n  vxlanMode: Never\n",
    );
    wait_until("B routes A's block directly", Duration::from_secs(10), || match route_dev(&b_ns, block) {
        Some((dev, gw, false)) if dev == "eth0" && gw == "172.16.18.33" => Ok(()),
        other => Err(Poll::NotYet(format!("{other:?}"))),
    })
    .unwrap();
    testbed::run_in(&b_ns, "ping", &["-c", "1", "-W", "3", &ip]).expect("B reaches A's workload address directly");
}

/// The reflector dies (SIGKILL): every session drops and BGP withdraws everything, but the
/// nodes keep their kernel routes; when it is back, the routes are learned again and later
/// changes flow as before.
#[test]
fn reflector_outage_keeps_kernel_routes() {
    let mut lab = build("o");
    lab.start_agent("a", 33);
    lab.start_agent("b", 34);
    for node in ["a", "b"] {
        wait_until(&format!("{node} peers with the reflector"), Duration::from_secs(30), || {
            established(&lab, node, "172.16.18.32", "global")
        })
        .unwrap();
    }
    lab.seam(&["ipam", "allocate", "--node", "a", "--handle", "o1"]);
    let block = wait_until("A's block is installed in B", Duration::from_secs(10), || {
        let r = lab.seam_routes("b");
        r.iter().find(|(_, gw)| gw == "172.16.18.33").map(|(dst, _)| dst.clone()).ok_or_else(|| Poll::NotYet(format!("{r:?}")))
    })
    .unwrap();
    // Let B converge first (all sessions up for a while), so the hold below is the outage's.
    std::thread::sleep(Duration::from_secs(3));

    lab.rr.as_ref().unwrap().kill();
    wait_until("B sees the reflector down", Duration::from_secs(10), || match lab.status("b") {
        Ok(s) if peer(&s, "172.16.18.32").is_some_and(|p| p["info"] != "Established") => Ok(()),
        other => Err(Poll::NotYet(format!("{other:?}"))),
    })
    .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let r = lab.seam_routes("b");
        assert!(r.iter().any(|(dst, _)| *dst == block), "route {block} removed during the outage: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    lab.rr.as_ref().unwrap().restart().unwrap();
    for node in ["a", "b"] {
        wait_until(&format!("{node} peers with the reflector again"), Duration::from_secs(30), || {
            established(&lab, node, "172.16.18.32", "global")
        })
        .unwrap();
    }
    assert!(lab.seam_routes("b").iter().any(|(dst, _)| *dst == block));
    // Withdrawals work again once converged.
    std::thread::sleep(Duration::from_secs(3));
    lab.seam(&["ipam", "release", "--handle", "o1"]);
    wait_until("the released block is withdrawn from B", Duration::from_secs(15), || {
        let r = lab.seam_routes("b");
        if r.is_empty() { Ok(()) } else { Err(Poll::NotYet(format!("{r:?}"))) }
    })
    .unwrap();
}
