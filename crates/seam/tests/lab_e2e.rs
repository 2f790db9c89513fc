//! End-to-end tests of issue 5 on `seam lab`: the seed's Kubernetes + DC/OS infrastructure in
//! network namespaces (route reflector, eight node agents, workloads attached with `seam-cni`),
//! driven through the `seam lab` subcommands exactly as a user would.
//!
//! Covered: cross-COE reachability in both directions; a workload's removal withdraws its
//! block's route once the block is empty and released; SIGKILL + restart of an agent keeps the
//! kernel routes and connectivity (packet loss of a ping stream measured and printed); podman
//! with the CNI backend puts a container on a lab node, with an address from that node's block,
//! reaching a container on another node; an agent that loses the store and the reflector keeps
//! its routes and reports its state; `seam lab` (the README's command) runs the whole seed.
//!
//! Needs root, iproute2, busybox-static, podman, runc, and the `seam-cni` binary next to `seam`
//! (built here if missing). Every lab has a unique name (`seam-lab-t<pid>n<k>`) and is removed
//! by `seam lab down` in `Drop`, also when a test fails. Labs run one at a time (each has eight
//! agents; the CI machine has two cores).
//!
//! Run: `cargo test -p seam --test lab_e2e`

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const SEAM: &str = env!("CARGO_BIN_EXE_seam");
const WAIT: Duration = Duration::from_secs(60);

/// One lab at a time (see the module comment).
static ONE_LAB: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `seam-cni` next to the `seam` under test; `cargo test -p seam` does not build other
/// packages' binaries, so build it once if it is missing.
fn cni_plugin() -> PathBuf {
    let path = Path::new(SEAM).parent().expect("target dir").join("seam-cni");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "cni", "--bin", "seam-cni"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for seam-cni");
        assert!(status.success(), "cargo build -p cni --bin seam-cni failed");
    }
    assert!(path.exists(), "{} is missing after building it", path.display());
    path
}

/// Runs a command, returning (success, stdout, stderr).
fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Polls `probe` until it returns `Ok`, panicking after `timeout` with its last reason.
fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) if start.elapsed() >= timeout => panic!("timed out after {timeout:?} waiting until {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A lab brought up with `seam lab up`, removed with `seam lab down` on drop.
struct Lab {
    name: String,
    run_dir: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    fn up() -> Lab {
        Lab::up_with(&[])
    }

    /// `seam lab up` with extra options (e.g. `--datastore etcd://…`).
    fn up_with(options: &[&str]) -> Lab {
        let turn = ONE_LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("seam-lab-t{}n{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let lab = Lab { run_dir: PathBuf::from("/run").join(&name), name, _turn: turn };
        let plugin = cni_plugin();
        let started = Instant::now();
        let mut args = vec!["up", "--cni-plugin", plugin.to_str().unwrap()];
        args.extend_from_slice(options);
        lab.seam_lab(&args);
        eprintln!("lab {} up in {:.1} s", lab.name, started.elapsed().as_secs_f64());
        lab
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SEAM);
        cmd.args(["lab", "--name", &self.name]).args(args);
        cmd
    }

    /// `seam lab --name NAME ARGS...`, which must succeed; returns stdout.
    fn seam_lab(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = output(&mut self.command(args));
        assert!(ok, "seam lab {} failed:\n{stderr}\n{stdout}", args.join(" "));
        stdout
    }

    /// `seam lab exec TARGET -- ARGS...`: Ok(stdout) or Err(stderr).
    fn exec(&self, target: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["exec", target, "--"];
        full.extend_from_slice(args);
        let (ok, stdout, stderr) = output(&mut self.command(&full));
        if ok {
            Ok(stdout)
        } else {
            Err(format!("{stderr}{stdout}"))
        }
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.seam_lab(&["status", "--json"])).expect("status --json is JSON")
    }

    fn member(&self, name: &str) -> Value {
        let status = self.status();
        status["members"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned().unwrap_or_else(|| panic!("no member {name} in {status}"))
    }

    fn ip(&self, name: &str) -> Ipv4Addr {
        self.member(name)["ip"].as_str().unwrap().parse().unwrap()
    }

    fn ns(&self, name: &str) -> String {
        self.member(name)["namespace"].as_str().unwrap().to_string()
    }

    /// `seam bgp global rib --json` of the reflector.
    fn reflector_rib(&self) -> Vec<(String, String)> {
        let out = self.exec("rr", &[SEAM, "bgp", "global", "rib", "--json"]).expect("reflector RIB");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("rib --json: {e}: {out}"));
        let routes = v.as_array().cloned().or_else(|| v["routes"].as_array().cloned()).unwrap_or_default();
        routes
            .iter()
            .map(|r| (r["prefix"].as_str().unwrap_or_default().to_string(), r["next_hop"].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// The route a node uses towards `ip` (`ip route get`): Ok(line) when it goes via a gateway.
    fn route_via(&self, node: &str, ip: Ipv4Addr) -> Result<String, String> {
        let out = self.exec(node, &["ip", "route", "get", &ip.to_string()])?;
        if out.contains(" via ") {
            Ok(out.trim().to_string())
        } else {
            Err(format!("no route via a gateway: {}", out.trim()))
        }
    }

    /// busybox wget from a workload, with an outer timeout (busybox 1.35's own `-T` crashes).
    fn wget(&self, from: &str, url: &str) -> Result<String, String> {
        self.exec(from, &["timeout", "5", "busybox", "wget", "-q", "-O", "-", url])
    }

    fn ping(&self, from: &str, to: Ipv4Addr) -> Result<String, String> {
        self.exec(from, &["ping", "-c", "1", "-W", "2", &to.to_string()])
    }

    /// Prints every log of the lab (on failure).
    fn dump(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.run_dir) else { return };
        let mut files: Vec<PathBuf> = Vec::new();
        for d in dirs.flatten() {
            let p = d.path();
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
            } else {
                files.push(p);
            }
        }
        files.sort();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "stderr")) {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- {}\n{}", f.display(), lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- lab {} failed; logs:", self.name);
            self.dump();
        }
        let (ok, stdout, stderr) = output(&mut self.command(&["down"]));
        if !ok {
            eprintln!("seam lab down failed: {stderr}{stdout}");
        }
        let left: Vec<String> = testbed::list_namespaces().into_iter().filter(|n| n.starts_with(&format!("{}-", self.name))).collect();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("namespaces left after seam lab down: {left:?}");
        }
    }
}

/// The /26 block (the pools' block size) holding `ip`.
fn block_of(ip: Ipv4Addr) -> String {
    let bits = u32::from(ip) & !0x3f;
    format!("{}/26", Ipv4Addr::from(bits))
}

fn in_prefix(ip: Ipv4Addr, prefix: &str) -> bool {
    let (net, len) = prefix.split_once('/').unwrap();
    let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net)
}

/// Cross-COE reachability both ways; a workload's removal withdraws its block; an agent's
/// SIGKILL + restart keeps routes and connectivity (ping loss measured); losing the store and
/// the reflector keeps the routes and shows in the node status.
#[test]
fn seed_lab_reachability_withdrawal_restart_and_outage() {
    let lab = Lab::up_with(&["--no-policy"]);
    let nginx = lab.ip("nginx");
    let client = lab.ip("client");
    assert!(in_prefix(nginx, "192.168.128.0/17"), "nginx on DC/OS got {nginx}, outside the DC/OS pool");
    assert!(in_prefix(client, "192.168.0.0/17"), "the Kubernetes pod got {client}, outside the Kubernetes pool");
    let status = lab.status();
    assert_eq!(status["members"].as_array().unwrap().len(), 1 + 8 + 2, "reflector, 8 nodes, 2 workloads: {status}");
    assert_eq!(lab.member("dcos-private2")["ip"], "172.16.18.45");
    assert_eq!(lab.member("k8s-worker1")["ip"], "172.16.18.34");

    // --- Cross-COE reachability, both directions, through routes learned from the reflector.
    let via = wait_until("k8s-worker1 routes to nginx's block via dcos-private2", WAIT, || lab.route_via("k8s-worker1", nginx));
    assert!(via.contains("via 172.16.18.45"), "{via}");
    let via = wait_until("dcos-private2 routes to the client's block via k8s-worker1", WAIT, || lab.route_via("dcos-private2", client));
    assert!(via.contains("via 172.16.18.34"), "{via}");
    // As in the seed, routes alone are not enough: the default profiles admit only traffic
    // from the workload's own orchestrator's pool until the seed's policy is applied.
    assert!(lab.ping("client", nginx).is_err(), "Kubernetes reached DC/OS before the seed's policy was applied");
    let datastore = lab_env_datastore(&lab);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed-policy.yaml");
    let (ok, out, err) = output(Command::new(SEAM).args(["apply", "-f", policy.to_str().unwrap()]).env("SEAM_DATASTORE", &datastore));
    assert!(ok && out.contains("allow-all") && out.contains("calico-open"), "seam apply the seed's policy on the lab: {err}{out}");
    let page = wait_until("the Kubernetes pod fetches nginx's page", WAIT, || lab.wget("client", &format!("http://{nginx}/")));
    assert!(page.contains("Welcome to nginx on DC/OS"), "{page}");
    wait_until("nginx (DC/OS) pings the Kubernetes pod", WAIT, || lab.ping("nginx", client));
    // And TCP from DC/OS to Kubernetes: a server in a new Kubernetes pod, fetched from nginx.
    let k8s_web = lab.seam_lab(&["add-pod", "web", "--node", "k8s-worker2"]);
    let web: Ipv4Addr = k8s_web.split_whitespace().nth(1).expect("add-pod prints NAME IP").parse().unwrap();
    assert!(in_prefix(web, "192.168.0.0/17"), "{web}");
    let www = lab.run_dir.join("web-www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from kubernetes\n").unwrap();
    let mut httpd = Command::new("ip")
        .args(["netns", "exec", &lab.ns("web"), "busybox", "httpd", "-f", "-p", "80", "-h", www.to_str().unwrap()])
        .spawn()
        .expect("start httpd in the web pod");
    let page = wait_until("nginx (DC/OS) fetches from the Kubernetes pod", WAIT, || lab.wget("nginx", &format!("http://{web}/")));
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert_eq!(page, "hello from kubernetes\n");

    // --- Removal: a workload alone in its block; removing it releases the block and the
    // reflector and the other nodes lose the route.
    let extra: Ipv4Addr = lab.seam_lab(&["add-pod", "extra", "--node", "k8s-worker3"]).split_whitespace().nth(1).unwrap().parse().unwrap();
    let block = block_of(extra);
    wait_until("the reflector has the new block from k8s-worker3", WAIT, || {
        let rib = lab.reflector_rib();
        if rib.iter().any(|(p, nh)| *p == block && nh == "172.16.18.36") {
            Ok(())
        } else {
            Err(format!("rib: {rib:?}"))
        }
    });
    wait_until("dcos-private2 installs the new block", WAIT, || lab.route_via("dcos-private2", extra));
    assert!(affine_blocks(&lab, "k8s-worker3").contains(&block), "the new block is affine to k8s-worker3");
    lab.seam_lab(&["remove-pod", "extra"]);
    wait_until("the reflector withdraws the emptied block", WAIT, || {
        let rib = lab.reflector_rib();
        if rib.iter().any(|(p, _)| *p == block) {
            Err(format!("still there: {rib:?}"))
        } else {
            Ok(())
        }
    });
    wait_until("dcos-private2 removes the route to the emptied block", WAIT, || match lab.route_via("dcos-private2", extra) {
        Ok(route) => Err(format!("still routed: {route}")),
        Err(_) => Ok(()),
    });
    let affine = affine_blocks(&lab, "k8s-worker3");
    assert!(!affine.contains(&block), "block {block} still affine to k8s-worker3 after release: {affine:?}");

    // --- SIGKILL the client node's agent and restart it half a second later (as a service
    // manager would), with a ping stream from the client pod to nginx running throughout.
    let interval = 0.05;
    let count = 120; // 6 s of pings
    let ping = Command::new("ip")
        .args(["netns", "exec", &lab.ns("client"), "ping", "-n", "-i", &interval.to_string(), "-c", &count.to_string(), "-W", "1", &nginx.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the ping stream");
    std::thread::sleep(Duration::from_millis(1000));
    lab.seam_lab(&["kill", "k8s-worker1"]);
    assert_eq!(lab.member("k8s-worker1")["process"], "stopped");
    // The kernel keeps the agent's routes while it is down.
    let kept = lab.route_via("k8s-worker1", nginx).expect("the route to nginx survives the agent's death");
    assert!(kept.contains("via 172.16.18.45"), "{kept}");
    std::thread::sleep(Duration::from_millis(500));
    lab.seam_lab(&["start", "k8s-worker1"]);
    let restarted = Instant::now();
    wait_until("the restarted agent's session is established", WAIT, || {
        let out = lab.exec("k8s-worker1", &[SEAM, "node", "status"])?;
        if out.contains("Established") {
            Ok(())
        } else {
            Err(out)
        }
    });
    eprintln!("agent back in session {:.1} s after restart", restarted.elapsed().as_secs_f64());
    let kept = lab.route_via("k8s-worker1", nginx).expect("the route to nginx survives the restart");
    assert!(kept.contains("via 172.16.18.45"), "{kept}");
    let out = ping.wait_with_output().expect("ping stream");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let (sent, received) = ping_counts(&summary);
    let lost = sent - received;
    let gap = lost as f64 * interval;
    eprintln!(
        "PACKET LOSS during agent SIGKILL + restart: {lost}/{sent} ({:.1}%) at {interval} s intervals = {gap:.2} s without replies",
        100.0 * lost as f64 / sent as f64
    );
    assert!(sent >= 100, "the ping stream ended early: {summary}");
    // The killed agent's own routes stay in its kernel, and the reflector (Graceful Restart
    // helper) keeps advertising its block to the other nodes until it is back: no gap beyond
    // scheduling noise. Without the helper the block is withdrawn until the agent reconnects.
    assert!(lost <= 10, "{gap:.2} s without replies during the agent restart: {summary}");
    let page = wait_until("wget still works after the restart", WAIT, || lab.wget("client", &format!("http://{nginx}/")));
    assert!(page.contains("Welcome to nginx"));

    // --- Store and reflector unreachable: routes stay, connectivity stays, the state shows.
    lab.seam_lab(&["kill", "store"]);
    lab.seam_lab(&["kill", "rr"]);
    let status = wait_until("k8s-worker1 reports its reflector session down", WAIT, || {
        let out = lab.exec("k8s-worker1", &[SEAM, "node", "status"])?;
        if out.contains("172.16.18.32") && !out.contains("Established") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    eprintln!("node status with the reflector and the store down:\n{status}");
    // A new workload cannot get an address without the store: the CNI error says why.
    let (ok, out, err) = output(&mut lab.command(&["add-pod", "late", "--node", "k8s-worker2"]));
    assert!(!ok, "a workload was attached without a store: {out}");
    assert!(err.contains("store") && err.contains("unreachable"), "the CNI error does not name the store: {err}");
    assert!(lab.status()["members"].as_array().unwrap().iter().all(|m| m["name"] != "late"), "the failed workload is forgotten");
    assert_eq!(lab.member("k8s-worker1")["process"], "running", "the agent survives the outage");
    lab.route_via("k8s-worker1", nginx).expect("routes stay while the reflector and store are down");
    lab.route_via("dcos-private2", client).expect("routes stay on the other side too");
    let page = lab.wget("client", &format!("http://{nginx}/")).expect("connectivity stays during the outage");
    assert!(page.contains("Welcome to nginx"));
    lab.seam_lab(&["start", "store"]);
    lab.seam_lab(&["start", "rr"]);
    wait_until("k8s-worker1 is back in session with the reflector", WAIT, || {
        let out = lab.exec("k8s-worker1", &[SEAM, "node", "status"])?;
        if out.contains("Established") {
            Ok(())
        } else {
            Err(out)
        }
    });
    wait_until("wget after the outage", WAIT, || lab.wget("client", &format!("http://{nginx}/")));
}

/// The blocks `seam ipam show` lists as affine to `node` (run in the lab's environment).
fn affine_blocks(lab: &Lab, node: &str) -> Vec<String> {
    let out = lab.exec(node, &[SEAM, "ipam", "show"]).expect("seam ipam show");
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(node))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}

/// (transmitted, received) from ping's summary line.
fn ping_counts(summary: &str) -> (u64, u64) {
    let line = summary.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("no ping summary in {summary:?}"));
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
    (numbers[0], numbers[1])
}

/// The `seam` CLI on the lab after `eval "$(seam lab env)"`: the store is shared with the
/// running agents through the lab's store server.
fn lab_env_datastore(lab: &Lab) -> String {
    let env = lab.seam_lab(&["env"]);
    let line = env.lines().find(|l| l.starts_with("export SEAM_DATASTORE=")).unwrap_or_else(|| panic!("no SEAM_DATASTORE in {env}"));
    line.trim_start_matches("export SEAM_DATASTORE=").to_string()
}

/// podman 4 with the CNI backend on a lab node: its container gets an address from that
/// node's block and reaches a podman container on a node of the other orchestrator. Also
/// checks that the CLI acts on the running lab through `seam lab env`.
#[test]
fn podman_containers_on_lab_nodes_reach_each_other() {
    let lab = Lab::up();
    let datastore = lab_env_datastore(&lab);
    let (ok, nodes, err) = output(Command::new(SEAM).args(["get", "nodes"]).env("SEAM_DATASTORE", &datastore));
    assert!(ok, "seam get nodes on the lab: {err}");
    for node in ["k8s-controller", "k8s-worker3", "dcos-master", "dcos-public1"] {
        assert!(nodes.contains(node), "node {node} is not registered:\n{nodes}");
    }
    let (ok, pools, err) = output(Command::new(SEAM).args(["get", "ippools"]).env("SEAM_DATASTORE", &datastore));
    assert!(ok && pools.contains("192.168.0.0/17") && pools.contains("192.168.128.0/17"), "{err}{pools}");

    // A rootfs from Debian's static busybox (no image registry is reachable).
    let rootfs = lab.run_dir.join("rootfs");
    for dir in ["bin", "www", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox (package busybox-static)");
    std::fs::write(rootfs.join("www/index.html"), "hello from a podman container\n").unwrap();
    // `seam lab podman NODE -- ARGS` runs `podman --network-backend cni --runtime runc
    // --cgroup-manager cgroupfs ARGS` in NODE's network namespace, with the lab's CNI config dir
    // for that node (network `seam`, the node's agent socket) and storage under the run dir.
    let podman = |node: &str, entry: &[&str], args: &[&str]| -> (bool, String, String) {
        let mut full = vec!["podman", node];
        full.extend_from_slice(entry);
        full.push("--");
        full.extend_from_slice(args);
        output(&mut lab.command(&full))
    };
    let rootfs_arg = rootfs.to_str().unwrap().to_string();
    let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    // The server on DC/OS private agent 1 (detached, so entered with nsenter --net).
    let mut args = vec!["run", "-d", "--name", "web", "--network", "seam"];
    args.extend(limits);
    args.extend(["--rootfs", &rootfs_arg, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]);
    let (ok, _, err) = podman("dcos-private1", &[], &args);
    assert!(ok, "podman run on dcos-private1 failed: {err}");
    let (ok, ip, err) = podman("dcos-private1", &[], &["inspect", "-f", "{{.NetworkSettings.Networks.seam.IPAddress}}", "web"]);
    assert!(ok, "podman inspect: {err}");
    let web: Ipv4Addr = ip.trim().parse().unwrap_or_else(|e| panic!("container address {ip:?}: {e}"));
    assert!(in_prefix(web, "192.168.128.0/17"), "a DC/OS node's container got {web}");
    // From that node's block: the reflector learns the block from dcos-private1 (.44).
    let block = block_of(web);
    wait_until("the reflector has the container's block from dcos-private1", WAIT, || {
        let rib = lab.reflector_rib();
        if rib.iter().any(|(p, nh)| *p == block && nh == "172.16.18.44") {
            Ok(())
        } else {
            Err(format!("rib: {rib:?}"))
        }
    });
    assert!(affine_blocks(&lab, "dcos-private1").contains(&block), "{block} is dcos-private1's block");
    // The client on Kubernetes worker 3, exactly as the issue writes it: a foreground
    // `ip netns exec NODE podman ... run --network seam` that prints its address and fetches.
    let url = format!("http://{web}:8080/");
    let script = format!(
        "busybox ip -4 -o addr show dev eth0; for i in 1 2 3 4 5 6 7 8 9 10; do busybox timeout 3 busybox wget -q -O - {url} && exit 0; sleep 1; done; exit 1"
    );
    let mut args = vec!["run", "--rm", "--name", "fetch", "--network", "seam"];
    args.extend(limits);
    args.extend(["--rootfs", &rootfs_arg, "/bin/busybox", "sh", "-c", &script]);
    let (ok, out, err) = podman("k8s-worker3", &["--ip-netns-exec"], &args);
    assert!(ok, "the Kubernetes container could not fetch {url}: {err}{out}");
    let address = out.split_whitespace().find(|w| w.contains('/')).unwrap_or_else(|| panic!("no address printed: {out}"));
    let fetcher: Ipv4Addr = address.split('/').next().unwrap().parse().unwrap_or_else(|e| panic!("{address}: {e}"));
    assert!(in_prefix(fetcher, "192.168.0.0/17"), "a Kubernetes node's container got {fetcher}");
    assert!(out.ends_with("hello from a podman container\n"), "{out}");
    let (ok, _, err) = podman("dcos-private1", &[], &["rm", "-f", "-t", "0", "web"]);
    assert!(ok, "podman rm web: {err}");
}

/// `seam lab` itself (the README's command): up, the seed's steps, a summary, down; exit 0.
#[test]
fn seam_lab_runs_the_seed_experiment_and_cleans_up() {
    let _turn = ONE_LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("seam-lab-t{}n{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let plugin = cni_plugin();
    let (ok, stdout, stderr) = output(Command::new(SEAM).args(["lab", "--name", &name, "--cni-plugin", plugin.to_str().unwrap()]));
    let left: Vec<String> = testbed::list_namespaces().into_iter().filter(|n| n.starts_with(&format!("{name}-"))).collect();
    if !left.is_empty() {
        let _ = output(Command::new(SEAM).args(["lab", "--name", &name, "down"]));
    }
    assert!(ok, "seam lab failed:\n{stderr}\n{stdout}");
    assert!(left.is_empty(), "namespaces left after seam lab: {left:?}");
    assert!(!Path::new("/run").join(&name).exists(), "the run dir is left behind");
    // The reflector's neighbour table lists the seven seed neighbours and the public agent.
    for peer in ["172.16.18.33", "172.16.18.36", "172.16.18.43", "172.16.18.45", "172.16.18.46"] {
        assert!(stdout.lines().any(|l| l.starts_with(peer) && l.contains("Establ")), "{peer} not established in:\n{stdout}");
    }
    // Its RIB has both workloads' blocks, each via its node.
    assert!(stdout.lines().any(|l| l.contains("192.168.128.") && l.contains("172.16.18.45")), "nginx's block:\n{stdout}");
    assert!(stdout.lines().any(|l| l.contains("192.168.") && l.contains("172.16.18.34")), "the client's block:\n{stdout}");
    assert!(stdout.contains("allow-all") || stdout.contains("GlobalNetworkPolicy"), "policy applied:\n{stdout}");
    assert!(stdout.contains("Welcome to nginx on DC/OS"), "the page:\n{stdout}");
}

/// One etcd member on loopback ports (Debian's etcd-server), for the lab's etcd mode.
#[cfg(feature = "etcd")]
struct Etcd {
    child: std::process::Child,
    client: String,
    _dir: tempfile::TempDir,
}

#[cfg(feature = "etcd")]
impl Etcd {
    fn start() -> Etcd {
        let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", "lab"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("lab={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (Debian package etcd-server)");
        let etcd = Etcd { child, client: client.trim_start_matches("http://").to_string(), _dir: dir };
        wait_until("etcd answers", WAIT, || {
            let (ok, _, err) = output(Command::new("etcdctl").args(["--endpoints", &etcd.client, "endpoint", "health"]).env("ETCDCTL_API", "3"));
            if ok {
                Ok(())
            } else {
                Err(err)
            }
        });
        etcd
    }
}

#[cfg(feature = "etcd")]
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--datastore etcd://…`: the store server fronts etcd; the agents, the CLI and the workloads
/// work as with the embedded store, and the lab's resources are in etcd.
#[cfg(feature = "etcd")]
#[test]
fn lab_on_etcd() {
    let etcd = Etcd::start();
    let spec = format!("etcd://{}", etcd.client);
    let lab = Lab::up_with(&["--datastore", &spec]);
    assert_eq!(lab.status()["backend"], spec.as_str());
    let nginx = lab.ip("nginx");
    let page = wait_until("the Kubernetes pod fetches nginx's page", WAIT, || lab.wget("client", &format!("http://{nginx}/")));
    assert!(page.contains("Welcome to nginx on DC/OS"), "{page}");
    let (ok, nodes, err) = output(Command::new(SEAM).args(["get", "nodes"]).env("SEAM_DATASTORE", &spec));
    assert!(ok && nodes.contains("dcos-private2"), "the nodes are registered in etcd itself: {err}{nodes}");
    drop(lab);
}
