//! `seam lab`: the seed experiment's infrastructure on one machine, in network namespaces.
//!
//! Topology (all namespaces are named `<lab>-*`, default lab name `seam-lab`):
//! - `<lab>-sw`: the underlay switch, a bridge for 172.16.18.0/24 (the root namespace is not
//!   touched: no links, addresses or routes are created there);
//! - `<lab>-rr`: the route reflector 172.16.18.32, `seam bgpd` with the seed's config;
//! - one namespace per node, each running `seam agent`: Kubernetes (controller .33, workers
//!   .34–.36, pool 192.168.0.0/17) and DC/OS (master .43, private agents .44–.45, public agent
//!   .46, pool 192.168.128.0/17), AS 64511;
//! - `<lab>-pod-*`: workloads, attached by `seam-cni` exactly as a kubelet would call it.
//!
//! Store sharing: the embedded store file can be opened by one process only, so the lab runs
//! one store server (`seam datastore serve`, in the root namespace) that owns the backend
//! (`file:` by default, or the `--datastore etcd://…` given), and every agent and CLI command
//! uses `unix:<run dir>/store.sock`. A Unix socket is a file, so processes in every namespace
//! reach it; the etcd endpoints need only be reachable from the root namespace.
//!
//! Everything the lab starts is recorded (PID + kernel start time) in `<run dir>/state.json`
//! as soon as it exists, so `seam lab down` cleans up after a crash too, and never signals a
//! process it did not start.

pub mod config;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use testbed::{DaemonSpec, Poll, Recorded};

/// The lab name used when none is given; also the prefix every lab name must start with.
pub const DEFAULT_NAME: &str = "seam-lab";
/// The seed's AS: the reflector and every node share it.
pub const AS: u32 = 64511;
/// Host number of the route reflector on 172.16.18.0/24.
pub const REFLECTOR_INDEX: u8 = 32;
/// Member name of the reflector (for `exec`, `kill`, `start`).
pub const REFLECTOR: &str = "rr";
/// Member name of the store server process (for `kill`, `start`).
pub const STORE: &str = "store";
/// Where every agent and the reflector serve their GoBGP-style API, inside their namespace.
pub const API_HOST: &str = "127.0.0.1:50051";
/// How long a lab step may take before it fails (eight agents start on two cores).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(90);
/// The seed's workloads: its "nginx" service on DC/OS private agent 2, and a client pod on a
/// Kubernetes worker that fetches the page.
pub const NGINX: (&str, &str) = ("nginx", "dcos-private2");
pub const CLIENT: (&str, &str) = ("client", "k8s-worker1");

/// Which container orchestrator a node belongs to; its label value selects the IP pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coe {
    Kubernetes,
    Dcos,
}

impl Coe {
    /// The `coe` label value (the pools' node selectors use it).
    pub fn label(self) -> &'static str {
        match self {
            Coe::Kubernetes => "kubernetes",
            Coe::Dcos => "dcos",
        }
    }

    /// The name people use.
    pub fn display(self) -> &'static str {
        match self {
            Coe::Kubernetes => "Kubernetes",
            Coe::Dcos => "DC/OS",
        }
    }
}

/// One node of the seed's infrastructure (fixed: the lab reproduces the seed).
#[derive(Clone, Copy, Debug)]
pub struct NodeDef {
    pub name: &'static str,
    pub coe: Coe,
    pub role: &'static str,
    /// Host number on 172.16.18.0/24 (the seed's addresses where it gives them).
    pub index: u8,
}

/// The seed's nodes: the reflector's neighbors .33–.36 and .43–.45, plus the public agent .46.
pub const NODES: &[NodeDef] = &[
    NodeDef { name: "k8s-controller", coe: Coe::Kubernetes, role: "controller", index: 33 },
    NodeDef { name: "k8s-worker1", coe: Coe::Kubernetes, role: "worker", index: 34 },
    NodeDef { name: "k8s-worker2", coe: Coe::Kubernetes, role: "worker", index: 35 },
    NodeDef { name: "k8s-worker3", coe: Coe::Kubernetes, role: "worker", index: 36 },
    NodeDef { name: "dcos-master", coe: Coe::Dcos, role: "master", index: 43 },
    NodeDef { name: "dcos-private1", coe: Coe::Dcos, role: "private agent", index: 44 },
    NodeDef { name: "dcos-private2", coe: Coe::Dcos, role: "private agent", index: 45 },
    NodeDef { name: "dcos-public1", coe: Coe::Dcos, role: "public agent", index: 46 },
];

/// Looks a node up by name.
pub fn node_def(name: &str) -> Option<&'static NodeDef> {
    NODES.iter().find(|n| n.name == name)
}

/// A lab name is `seam-lab` or `seam-lab-<letters/digits>`: every namespace then starts with
/// `seam-lab-`, and the names `down` sweeps after a crash cannot belong to another lab.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if name == DEFAULT_NAME {
        return Ok(());
    }
    let Some(suffix) = name.strip_prefix("seam-lab-") else {
        bail!("--name {name:?}: a lab name is `seam-lab` or `seam-lab-<letters and digits>`");
    };
    if suffix.is_empty() || suffix.len() > 24 || !suffix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        bail!("--name {name:?}: after `seam-lab-` use 1 to 24 lowercase letters and digits");
    }
    if suffix.starts_with("pod") {
        bail!("--name {name:?}: `seam-lab-pod…` is reserved for the default lab's workloads");
    }
    Ok(())
}

/// Where a lab keeps its state file, store, sockets, configs and logs.
pub fn default_run_dir(name: &str) -> PathBuf {
    PathBuf::from("/run").join(name)
}

/// What a lab member is, for `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Name used by `exec`, `kill`, `start` (node name, `rr`, workload name).
    pub name: String,
    /// `None` for the reflector, which belongs to no orchestrator.
    pub coe: Option<Coe>,
    pub role: String,
    pub ip: Option<IpAddr>,
    pub namespace: String,
    /// For a workload: the node it runs on.
    pub node: Option<String>,
    /// For a workload: the CNI container id (needed for CNI DEL).
    pub container_id: Option<String>,
}

/// A process the lab started, with what is needed to signal it (from any later invocation)
/// and to start it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Process {
    /// The member it belongs to (`store` for the store server).
    pub owner: String,
    pub spec: DaemonSpec,
    /// `None` while stopped (`seam lab kill`).
    pub record: Option<Recorded>,
}

/// The state file: everything `status`, `exec`, `env`, `kill`, `start` and `down` need.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub run_dir: PathBuf,
    /// The store server's backend (`file:<run dir>/seam.redb` or the etcd spec given).
    pub backend: String,
    /// What every other process uses: `unix:<run dir>/store.sock`.
    pub datastore: String,
    /// The `seam` binary the lab runs.
    pub seam: PathBuf,
    /// The `seam-cni` binary workloads are attached with.
    pub cni_plugin: PathBuf,
    /// Namespaces created, in order.
    pub namespaces: Vec<String>,
    pub processes: Vec<Process>,
    pub members: Vec<Member>,
}

/// Options of `seam lab up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: String,
    pub run_dir: PathBuf,
    /// `None`: embedded store in the run dir.
    pub datastore: Option<String>,
    pub seam: PathBuf,
    pub cni_plugin: PathBuf,
    /// Apply the seed's `allow-all` policy and `calico-open` profile at the end of `up`.
    /// Without them the default profiles admit only traffic from the workload's own
    /// orchestrator's pool ("Calico's default policies block all traffic from outside the COE").
    pub policy: bool,
}

impl State {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("state.json")
    }

    /// Reads a lab's state; `Ok(None)` when there is no state file.
    pub fn load(run_dir: &Path) -> anyhow::Result<Option<State>> {
        let path = State::path(run_dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        serde_json::from_str(&text).map(Some).with_context(|| format!("{}: not a lab state file", path.display()))
    }

    /// Loads a lab that must exist.
    pub fn load_existing(name: &str, run_dir: &Path) -> anyhow::Result<State> {
        State::load(run_dir)?.ok_or_else(|| anyhow!("lab {name} is not up (no {})", State::path(run_dir).display()))
    }

    /// Writes the state atomically (a crash never leaves half a file).
    pub fn save(&self) -> anyhow::Result<()> {
        let path = State::path(&self.run_dir);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_string_pretty(self)?).with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> anyhow::Result<&Member> {
        self.members.iter().find(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
            anyhow!("lab {} has no member {name:?}; members: {}", self.name, known.join(", "))
        })
    }

    /// The namespace of a node or workload.
    pub fn namespace_of(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.member(name)?.namespace.clone())
    }

    /// The directory of a member's files.
    pub fn member_dir(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    /// A node's CNI socket (the agent serves `seam-cni` there).
    pub fn agent_socket(&self, node: &str) -> PathBuf {
        self.member_dir(node).join("agent.sock")
    }

    /// The directory holding a node's CNI network config (`seam.conflist`), for podman's
    /// `--network-config-dir`.
    pub fn cni_config_dir(&self, node: &str) -> PathBuf {
        self.member_dir(node).join("cni")
    }

    /// `containers.conf` whose `cni_plugin_dirs` includes `seam-cni`, for podman.
    pub fn containers_conf(&self) -> PathBuf {
        self.run_dir.join("containers.conf")
    }

    /// Runs the lab's `seam` binary with `SEAM_DATASTORE` set to the lab's store, in the
    /// namespace `ns` if given; `stdin` is fed to it. Returns stdout.
    pub fn seam(&self, ns: Option<&str>, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let seam = self.seam.display().to_string();
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &seam]);
                c
            }
            None => Command::new(&seam),
        };
        cmd.args(args).env(store::DATASTORE_ENV, &self.datastore);
        run_with_stdin(cmd, stdin, &format!("seam {}", args.join(" ")))
    }

    /// Whether a member's process(es) run.
    pub fn process_state(&self, owner: &str) -> &'static str {
        let procs: Vec<&Process> = self.processes.iter().filter(|p| p.owner == owner).collect();
        if procs.is_empty() {
            "-"
        } else if procs.iter().all(|p| p.record.is_some_and(|r| r.is_running())) {
            "running"
        } else {
            "stopped"
        }
    }

    /// Starts a process, records it at once (so `down` finds it even if `up` crashes next).
    fn start_process(&mut self, owner: &str, spec: DaemonSpec) -> anyhow::Result<()> {
        let daemon = testbed::Daemon::start(spec.clone())?;
        let record = daemon.detach().ok_or_else(|| anyhow!("{} exited at once; see {}", spec.name, spec.stderr.display()))?;
        self.processes.push(Process { owner: owner.to_string(), spec, record: Some(record) });
        self.save()
    }

    /// Waits until a recorded process is up according to `ready`, failing early (with its
    /// stderr) if it exits.
    fn wait_ready<T>(&self, owner: &str, what: &str, mut ready: impl FnMut() -> Result<T, Poll>) -> anyhow::Result<T> {
        let procs: Vec<Process> = self.processes.iter().filter(|p| p.owner == owner).cloned().collect();
        Ok(testbed::wait_until(what, STEP_TIMEOUT, || {
            for p in &procs {
                if !p.record.is_some_and(|r| r.is_running()) {
                    return Err(Poll::Fatal(format!(
                        "{} exited; its stderr ({}):\n{}",
                        p.spec.name,
                        p.spec.stderr.display(),
                        testbed::tail(&p.spec.stderr, 20)
                    )));
                }
            }
            ready()
        })?)
    }
}

/// Runs a command, feeding `stdin`, and returns stdout or an error with stderr.
fn run_with_stdin(mut cmd: Command, stdin: Option<&str>, what: &str) -> anyhow::Result<String> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot run {what}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes()).with_context(|| format!("{what}: write stdin"))?;
    }
    let out = child.wait_with_output().with_context(|| format!("{what}: wait"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            if stdout.trim().is_empty() { String::new() } else { format!(" / stdout: {}", stdout.trim()) }
        );
    }
    Ok(stdout)
}

/// Finds busybox (Debian's `busybox-static` or `busybox`), which plays nginx and the client.
pub fn busybox() -> anyhow::Result<PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("busybox is missing: install the Debian package `busybox-static` (scripts/lab.sh does)"))
}

/// Builds the lab: switch, store server, seed resources, reflector, agents, and the two
/// workloads ("nginx" serving a page on DC/OS private agent 2, a client pod on Kubernetes
/// worker 1). Returns the state (also saved in the run dir). On failure everything started so
/// far is removed again.
pub fn up(options: &UpOptions, log: &mut dyn FnMut(&str)) -> anyhow::Result<State> {
    validate_name(&options.name)?;
    if let Some(existing) = State::load(&options.run_dir)? {
        bail!(
            "lab {} is already up (state in {}); run `seam lab down --name {}` first",
            existing.name,
            State::path(&options.run_dir).display(),
            existing.name
        );
    }
    let leftovers: Vec<String> = sweep_names(&options.name);
    if !leftovers.is_empty() {
        bail!("namespaces of lab {} exist without a state file ({}); run `seam lab down --name {}` first", options.name, leftovers.join(", "), options.name);
    }
    if !options.seam.exists() {
        bail!("{}: the seam binary is missing", options.seam.display());
    }
    if !options.cni_plugin.exists() {
        bail!(
            "{} is missing: build the CNI plugin with `cargo build --bin seam-cni` (scripts/lab.sh does), or pass --cni-plugin PATH",
            options.cni_plugin.display()
        );
    }
    busybox()?;
    testbed::create_dir(&options.run_dir)?;
    let backend = options.datastore.clone().unwrap_or_else(|| format!("file:{}", options.run_dir.join("seam.redb").display()));
    let mut state = State {
        name: options.name.clone(),
        run_dir: options.run_dir.clone(),
        backend,
        datastore: format!("unix:{}", options.run_dir.join("store.sock").display()),
        seam: options.seam.clone(),
        cni_plugin: options.cni_plugin.clone(),
        namespaces: Vec::new(),
        processes: Vec::new(),
        members: Vec::new(),
    };
    state.save()?;
    let built = build(&mut state, log).and_then(|()| {
        if options.policy {
            apply_seed_policy(&state)?;
            log("applied examples/seed-policy.yaml: allow-all policy, then calico-open profile (the seed's order)");
        }
        Ok(())
    });
    match built {
        Ok(()) => Ok(state),
        Err(e) => {
            log(&format!("lab {} failed to come up; removing it", state.name));
            dump_logs(&state);
            let _ = down(&state.name, &state.run_dir);
            Err(e)
        }
    }
}

/// Prints the tail of every process's stderr (when `up` failed).
fn dump_logs(state: &State) {
    for p in &state.processes {
        eprintln!("----- {} ({})", p.spec.name, p.spec.stderr.display());
        eprintln!("{}", testbed::tail(&p.spec.stderr, 15));
    }
}

/// Copies the network's namespaces into the state file (right after each is created).
fn record_ns(state: &mut State, network: &testbed::Network) -> anyhow::Result<()> {
    state.namespaces = network.namespaces();
    state.save()
}

fn build(state: &mut State, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    // The underlay switch. Namespaces are recorded as soon as they exist.
    let network = testbed::Network::create(&state.name)?;
    record_ns(state, &network)?;
    log(&format!("underlay switch {} (bridge br0 for 172.16.18.0/24)", network.switch()));

    // The store server: the one process that opens the backend.
    let socket = state.run_dir.join("store.sock");
    let seam = state.seam.display().to_string();
    let spec = DaemonSpec {
        name: "store server".into(),
        ns: None,
        argv: vec![seam.clone(), "datastore".into(), "serve".into(), "--datastore".into(), state.backend.clone(), "--listen".into(), format!("unix:{}", socket.display())],
        env: Vec::new(),
        stdout: state.run_dir.join("store.stdout"),
        stderr: state.run_dir.join("store.stderr"),
        logs: Vec::new(),
        detach: true,
    };
    state.start_process(STORE, spec)?;
    state.wait_ready(STORE, "the store server answers", || {
        state.seam(None, &["datastore", "status"], None).map_err(|e| Poll::NotYet(format!("{e:#}")))
    })?;
    log(&format!("store server: {} on {}", state.backend, state.datastore));
    state.seam(None, &["apply", "-f", "-"], Some(config::SEED_CALICO)).context("apply examples/seed-calico.yaml")?;
    log("applied examples/seed-calico.yaml: pools 192.168.0.0/17 (coe == 'kubernetes') and 192.168.128.0/17 (coe == 'dcos'), global peer 172.16.18.32 AS 64511, mesh off");

    // The route reflector, with the seed's config and one neighbor entry per node.
    let rr_dir = state.member_dir(REFLECTOR);
    let rr = network.add_host(REFLECTOR, REFLECTOR_INDEX, &rr_dir)?;
    record_ns(state, &network)?;
    state.members.push(Member {
        name: REFLECTOR.into(),
        coe: None,
        role: "route reflector".into(),
        ip: Some(rr.v4.into()),
        namespace: rr.ns.clone(),
        node: None,
        container_id: None,
    });
    let node_addresses: Vec<Ipv4Addr> = NODES.iter().map(|n| testbed::v4(n.index)).collect();
    let rr_config = rr_dir.join("route-reflector.toml");
    fs::write(&rr_config, config::reflector_config(config::REFLECTOR_TEMPLATE, &node_addresses, config::LAB_NEIGHBOR_EXTRA)?)
        .with_context(|| format!("write {}", rr_config.display()))?;
    let spec = DaemonSpec {
        name: "seam bgpd (route reflector)".into(),
        ns: Some(rr.ns.clone()),
        argv: vec![seam.clone(), "bgpd".into(), "-f".into(), rr_config.display().to_string(), "--api-hosts".into(), API_HOST.into()],
        env: vec![("ROUTER_IP".into(), rr.v4.to_string())],
        stdout: rr_dir.join("bgpd.stdout"),
        stderr: rr_dir.join("bgpd.stderr"),
        logs: Vec::new(),
        detach: true,
    };
    state.start_process(REFLECTOR, spec)?;
    log(&format!("route reflector {} in {} ({})", rr.v4, rr.ns, rr_config.display()));

    // The nodes, each with its agent.
    write_podman_files(state)?;
    for node in NODES {
        let dir = state.member_dir(node.name);
        let host = network.add_host(node.name, node.index, &dir)?;
        record_ns(state, &network)?;
        state.members.push(Member {
            name: node.name.into(),
            coe: Some(node.coe),
            role: node.role.into(),
            ip: Some(host.v4.into()),
            namespace: host.ns.clone(),
            node: None,
            container_id: None,
        });
        write_cni_config(state, node.name)?;
        let spec = agent_spec(state, node, &host);
        state.start_process(node.name, spec)?;
        log(&format!("{} {} {} at {} (agent in {})", node.coe.display(), node.role, node.name, host.v4, host.ns));
    }
    // From here on the namespaces live in the state file; `down` removes them.
    network.keep();

    for node in NODES {
        let socket = state.agent_socket(node.name);
        state.wait_ready(node.name, &format!("agent {} serves CNI on {}", node.name, socket.display()), || {
            if socket.exists() {
                Ok(())
            } else {
                Err(Poll::NotYet("no socket yet".into()))
            }
        })?;
    }
    wait_sessions(state)?;
    log("every node has an established BGP session with the reflector");

    // Workloads: the seed's nginx on DC/OS private agent 2, a client pod on a Kubernetes worker.
    let nginx = add_pod(state, NGINX.0, NGINX.1)?;
    start_httpd(state, &nginx)?;
    log(&format!("workload {} on {}: {} (busybox httpd on port 80)", nginx.name, NGINX.1, display_ip(&nginx)));
    let client = add_pod(state, CLIENT.0, CLIENT.1)?;
    log(&format!("workload {} on {}: {}", client.name, CLIENT.1, display_ip(&client)));
    Ok(())
}

/// Applies the seed's `allow-all` policy, then its `calico-open` profile, one document at a
/// time in the seed's order; returns what `seam apply` printed.
pub fn apply_seed_policy(state: &State) -> anyhow::Result<String> {
    let mut out = String::new();
    for doc in config::yaml_documents(config::SEED_POLICY) {
        out.push_str(&state.seam(None, &["apply", "-f", "-"], Some(&doc)).context("apply examples/seed-policy.yaml")?);
    }
    Ok(out)
}

fn display_ip(m: &Member) -> String {
    m.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}

/// The agent's command line for a node.
fn agent_spec(state: &State, node: &NodeDef, host: &testbed::Host) -> DaemonSpec {
    let dir = state.member_dir(node.name);
    DaemonSpec {
        name: format!("seam agent {}", node.name),
        ns: Some(host.ns.clone()),
        argv: [
            state.seam.display().to_string().as_str(),
            "agent",
            "--node",
            node.name,
            "--address",
            &host.v4.to_string(),
            "--datastore",
            &state.datastore,
            "--labels",
            &format!("coe={}", node.coe.label()),
            "--orchestrator",
            node.coe.label(),
            "--cni-socket",
            &state.agent_socket(node.name).display().to_string(),
            "--api-hosts",
            API_HOST,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![("RUST_LOG".into(), "info".into())],
        stdout: dir.join("agent.stdout"),
        stderr: dir.join("agent.stderr"),
        logs: Vec::new(),
        detach: true,
    }
}

/// One neighbor in `seam bgp neighbor --json`.
#[derive(Deserialize)]
struct NeighborRow {
    address: String,
    state: String,
}

/// The reflector's sessions: (neighbor address, state).
pub fn reflector_sessions(state: &State) -> anyhow::Result<Vec<(String, String)>> {
    let ns = state.namespace_of(REFLECTOR)?;
    let out = state.seam(Some(&ns), &["bgp", "--api-host", API_HOST, "neighbor", "--json"], None)?;
    let rows: Vec<NeighborRow> = serde_json::from_str(&out).with_context(|| format!("seam bgp neighbor --json: unexpected output {out:?}"))?;
    Ok(rows.into_iter().map(|r| (r.address, r.state)).collect())
}

/// Waits until every node's session with the reflector is established.
pub fn wait_sessions(state: &State) -> anyhow::Result<()> {
    state.wait_ready(REFLECTOR, "every node's session with the reflector is established", || {
        let sessions = reflector_sessions(state).map_err(|e| Poll::NotYet(format!("{e:#}")))?;
        let down: Vec<String> = sessions.iter().filter(|(_, s)| s != "ESTABLISHED").map(|(a, s)| format!("{a} {s}")).collect();
        if sessions.len() == NODES.len() && down.is_empty() {
            Ok(())
        } else {
            Err(Poll::NotYet(format!("not established: {}", down.join(", "))))
        }
    })
}

/// Writes the node's CNI network config list (`seam.conflist`, network name `seam`), used by
/// podman with `--network-config-dir`.
fn write_cni_config(state: &State, node: &str) -> anyhow::Result<()> {
    let dir = state.cni_config_dir(node);
    testbed::create_dir(&dir)?;
    let plugin = config::cni_plugin_config(&state.agent_socket(node).display().to_string());
    let list = serde_json::json!({"cniVersion": "1.0.0", "name": "seam", "plugins": [plugin]});
    let path = dir.join("seam.conflist");
    fs::write(&path, serde_json::to_string_pretty(&list)?).with_context(|| format!("write {}", path.display()))
}

/// podman needs `seam-cni` in one of its CNI plugin directories: the lab links it into
/// `<run dir>/cni-bin` and names that directory in a `containers.conf` of its own (used via
/// `CONTAINERS_CONF`), next to Debian's reference plugins.
fn write_podman_files(state: &State) -> anyhow::Result<()> {
    let bin = state.run_dir.join("cni-bin");
    testbed::create_dir(&bin)?;
    let link = bin.join("seam-cni");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&state.cni_plugin, &link).with_context(|| format!("link {}", link.display()))?;
    let conf = format!(
        "# Written by seam lab: podman finds seam-cni here (use with CONTAINERS_CONF).\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n",
        bin.display()
    );
    fs::write(state.containers_conf(), conf).with_context(|| format!("write {}", state.containers_conf().display()))
}

/// The environment `seam-cni` gets for one command on one workload, as a kubelet sets it.
fn cni_command(state: &State, command: &str, member: &Member, node: &str) -> Command {
    let mut cmd = Command::new(&state.cni_plugin);
    let cni_dir = state.cni_plugin.parent().map(|p| p.display().to_string()).unwrap_or_default();
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", member.container_id.as_deref().unwrap_or_default())
        .env("CNI_NETNS", format!("/run/netns/{}", member.namespace))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", member.name))
        .env("CNI_PATH", cni_dir)
        .env("SEAM_LAB_NODE", node);
    cmd
}

/// Creates a workload namespace on `node` and attaches it with `seam-cni ADD`; returns the
/// workload with the address the node's agent gave it.
pub fn add_pod(state: &mut State, name: &str, node: &str) -> anyhow::Result<Member> {
    let def = node_def(node).ok_or_else(|| anyhow!("no node {node:?} in the lab (nodes: {})", NODES.iter().map(|n| n.name).collect::<Vec<_>>().join(", ")))?;
    if state.members.iter().any(|m| m.name == name) {
        bail!("lab {} already has a member named {name:?}", state.name);
    }
    let ns = format!("{}-pod-{name}", state.name);
    testbed::create_namespace(&ns)?;
    state.namespaces.push(ns.clone());
    let mut member = Member {
        name: name.into(),
        coe: Some(def.coe),
        role: "workload".into(),
        ip: None,
        namespace: ns,
        node: Some(node.into()),
        container_id: Some(format!("{}-{name}", state.name)),
    };
    state.members.push(member.clone());
    state.save()?;
    let config = config::cni_plugin_config(&state.agent_socket(node).display().to_string()).to_string();
    let out = match run_with_stdin(cni_command(state, "ADD", &member, node), Some(&config), &format!("seam-cni ADD {name} on {node}")) {
        Ok(out) => out,
        Err(e) => {
            // Nothing was attached: forget the workload again.
            testbed::delete_namespace(&member.namespace)?;
            state.namespaces.retain(|n| n != &member.namespace);
            state.members.retain(|m| m.name != name);
            state.save()?;
            return Err(e);
        }
    };
    let result: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("seam-cni ADD {name}: result is not JSON: {out:?}"))?;
    let address = result["ips"][0]["address"]
        .as_str()
        .ok_or_else(|| anyhow!("seam-cni ADD {name}: result has no ips[0].address: {out}"))?;
    let ip: IpAddr = address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("seam-cni ADD {name}: bad address {address:?}"))?;
    member.ip = Some(ip);
    if let Some(m) = state.members.iter_mut().find(|m| m.name == name) {
        m.ip = Some(ip);
    }
    state.save()?;
    Ok(member)
}

/// Detaches a workload (`seam-cni DEL`), stops its processes and removes its namespace.
pub fn remove_pod(state: &mut State, name: &str) -> anyhow::Result<()> {
    let member = state.member(name)?.clone();
    let Some(node) = member.node.clone() else { bail!("{name} is a node, not a workload") };
    for p in state.processes.iter_mut().filter(|p| p.owner == name) {
        if let Some(r) = p.record.take() {
            testbed::kill_recorded(&r)?;
        }
    }
    state.processes.retain(|p| p.owner != name);
    let config = config::cni_plugin_config(&state.agent_socket(&node).display().to_string()).to_string();
    run_with_stdin(cni_command(state, "DEL", &member, &node), Some(&config), &format!("seam-cni DEL {name} on {node}"))?;
    testbed::delete_namespace(&member.namespace)?;
    state.namespaces.retain(|n| n != &member.namespace);
    state.members.retain(|m| m.name != name);
    state.save()
}

/// Starts the "nginx": busybox httpd serving a page from the run dir in the workload.
fn start_httpd(state: &mut State, nginx: &Member) -> anyhow::Result<()> {
    let www = state.member_dir(&nginx.name).join("www");
    testbed::create_dir(&www)?;
    let page = format!(
        "<html><body><h1>Welcome to nginx on DC/OS!</h1><p>Served by busybox httpd at {} on {} (seam lab {}).</p></body></html>\n",
        display_ip(nginx),
        nginx.node.as_deref().unwrap_or("?"),
        state.name
    );
    fs::write(www.join("index.html"), page).with_context(|| format!("write {}", www.display()))?;
    let dir = state.member_dir(&nginx.name);
    let spec = DaemonSpec {
        name: format!("busybox httpd ({})", nginx.name),
        ns: Some(nginx.namespace.clone()),
        argv: vec![busybox()?.display().to_string(), "httpd".into(), "-f".into(), "-p".into(), "80".into(), "-h".into(), www.display().to_string()],
        env: Vec::new(),
        stdout: dir.join("httpd.stdout"),
        stderr: dir.join("httpd.stderr"),
        logs: Vec::new(),
        detach: true,
    };
    state.start_process(&nginx.name, spec)
}

/// Fetches `http://IP/` from a workload with busybox wget, retrying until `timeout` (routes
/// take a moment to propagate through the reflector).
pub fn wget(state: &State, from: &str, ip: IpAddr, timeout: Duration) -> anyhow::Result<String> {
    let ns = state.namespace_of(from)?;
    let busybox = busybox()?.display().to_string();
    let url = format!("http://{ip}/");
    Ok(testbed::wait_until(&format!("{from} fetches {url}"), timeout, || {
        // An outer `timeout` rather than wget's `-T`: Debian 12's busybox-static 1.35 wget
        // crashes (SIGSEGV) when `-T` is given.
        testbed::run_in(&ns, "timeout", &["5", &busybox, "wget", "-q", "-O", "-", &url]).map_err(Poll::from)
    })?)
}

/// Shell commands that recreate the cgroup mounts of `mountinfo` (the caller's
/// `/proc/self/mountinfo`). `ip netns exec` runs its command in a private mount namespace
/// with a fresh /sys for the network namespace, which hides /sys/fs/cgroup, and runc (podman's
/// runtime) needs it. Mounting the cgroup filesystems again inside that private mount
/// namespace changes nothing outside it. Empty when there are no cgroup mounts.
pub fn cgroup_remount_script(mountinfo: &str) -> String {
    let mut commands = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (Some(mountpoint), Some(fstype)) = (left.get(4), right.first()) else { continue };
        if !mountpoint.starts_with("/sys/fs/cgroup") || mountpoint.contains('\'') {
            continue;
        }
        let options: Vec<&str> = right.get(2).map(|o| o.split(',').filter(|o| *o != "rw" && *o != "ro").collect()).unwrap_or_default();
        let options = if options.is_empty() { String::new() } else { format!(" -o '{}'", options.join(",")) };
        match *fstype {
            "tmpfs" if *mountpoint == "/sys/fs/cgroup" => commands.push("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup".to_string()),
            "cgroup" | "cgroup2" => commands.push(format!("mkdir -p '{mountpoint}' && mount -t {fstype}{options} {fstype} '{mountpoint}'")),
            _ => {}
        }
    }
    commands.join(" && ")
}

/// How podman enters a node's network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodmanEntry {
    /// `nsenter --net=/run/netns/NODE podman ...`: only the network namespace changes, so the
    /// network namespaces podman bind-mounts under /run/netns for its containers stay visible
    /// to later podman commands (`run -d`, then `inspect`, `exec`, `rm`).
    Nsenter,
    /// `ip netns exec NODE podman ...`, the form users know. It runs podman in a private mount
    /// namespace that ends with the command, so only one-shot foreground runs
    /// (`run --rm ...`) work this way; the cgroup mounts runc needs are recreated inside it
    /// (see [`cgroup_remount_script`]).
    IpNetnsExec,
}

/// The podman command line for a lab node: `--network-backend cni --runtime runc
/// --cgroup-manager cgroupfs` as in the issue, plus the lab's own storage (so the user's
/// podman is untouched and `down` can remove the containers), the node's CNI config dir
/// (network `seam`, that node's agent socket) and `CONTAINERS_CONF` naming seam-cni's directory.
pub fn podman_command(state: &State, node: &str, entry: PodmanEntry, args: &[String]) -> anyhow::Result<Command> {
    let ns = state.namespace_of(node)?;
    node_def(node).ok_or_else(|| anyhow!("{node} is not a node of the lab"))?;
    let podman = state.run_dir.join("podman");
    let mut cmd = match entry {
        PodmanEntry::Nsenter => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).args(["--", "podman"]);
            c
        }
        PodmanEntry::IpNetnsExec => {
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
            let remount = cgroup_remount_script(&mountinfo);
            let script = if remount.is_empty() { "exec podman \"$@\"".to_string() } else { format!("{remount} && exec podman \"$@\"") };
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns, "sh", "-c", &script, "podman"]);
            c
        }
    };
    cmd.arg("--root")
        .arg(podman.join("root"))
        .arg("--runroot")
        .arg(podman.join("runroot"))
        .args(["--network-backend", "cni", "--network-config-dir"])
        .arg(state.cni_config_dir(node))
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(args)
        .env("CONTAINERS_CONF", state.containers_conf());
    Ok(cmd)
}

/// `ip route` of a member's namespace.
pub fn routes(state: &State, name: &str) -> anyhow::Result<String> {
    let ns = state.namespace_of(name)?;
    Ok(testbed::run("ip", &["-n", &ns, "route", "show"])?)
}

/// Stops (SIGKILL) the processes of a member: a node's agent, the reflector, the store
/// server (`store`) or a workload's server.
pub fn kill(state: &mut State, owner: &str) -> anyhow::Result<usize> {
    let mut killed = 0;
    for p in state.processes.iter_mut().filter(|p| p.owner == owner) {
        if let Some(r) = p.record.take() {
            if testbed::kill_recorded(&r)? {
                killed += 1;
            }
        }
    }
    if !state.processes.iter().any(|p| p.owner == owner) {
        bail!("lab {} runs no process for {owner:?}", state.name);
    }
    state.save()?;
    Ok(killed)
}

/// Starts again the stopped processes of a member, with their recorded command lines
/// (output appended to the same logs).
pub fn start(state: &mut State, owner: &str) -> anyhow::Result<usize> {
    if !state.processes.iter().any(|p| p.owner == owner) {
        bail!("lab {} runs no process for {owner:?}", state.name);
    }
    let mut started = 0;
    for i in 0..state.processes.len() {
        let p = &state.processes[i];
        if p.owner != owner || p.record.is_some_and(|r| r.is_running()) {
            continue;
        }
        let daemon = testbed::Daemon::start(p.spec.clone())?;
        let name = p.spec.name.clone();
        state.processes[i].record = Some(daemon.detach().ok_or_else(|| anyhow!("{name} exited at once"))?);
        started += 1;
        state.save()?;
    }
    Ok(started)
}

/// Namespaces that belong to lab `name` by their names (used when the state file is missing
/// or incomplete after a crash): the switch, the reflector, the nodes, and `<name>-pod-*`.
pub fn sweep_names(name: &str) -> Vec<String> {
    let mut fixed: Vec<String> = vec![format!("{name}-sw"), format!("{name}-{REFLECTOR}")];
    fixed.extend(NODES.iter().map(|n| format!("{name}-{}", n.name)));
    let pods = format!("{name}-pod-");
    testbed::list_namespaces().into_iter().filter(|ns| fixed.contains(ns) || ns.starts_with(&pods)).collect()
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub killed: usize,
    pub namespaces: Vec<String>,
    pub errors: Vec<String>,
}

/// Removes a lab: podman containers started on it, processes (by recorded PID, only if the
/// PID still is the process that was started), namespaces (recorded and swept by name), and
/// the run dir with the store. Works with a partial or missing state file.
pub fn down(name: &str, run_dir: &Path) -> anyhow::Result<DownReport> {
    validate_name(name)?;
    let mut report = DownReport::default();
    let state = match State::load(run_dir) {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(format!("{e:#} (cleaning up by name)"));
            None
        }
    };
    // Containers started with `seam lab podman` go first, while the agents still answer their
    // CNI DEL (best effort: `rm -a` runs on the first node, whose agent releases by handle).
    if run_dir.join("podman").exists() {
        let rm: Vec<String> = ["rm", "-a", "-f", "-t", "0"].map(String::from).to_vec();
        let first_node = state.as_ref().filter(|s| s.namespace_of(NODES[0].name).is_ok_and(|ns| testbed::namespace_exists(&ns)));
        let result = match first_node {
            Some(state) => podman_command(state, NODES[0].name, PodmanEntry::Nsenter, &rm).and_then(|cmd| run_with_stdin(cmd, None, "podman rm -a")),
            None => {
                // The nodes are gone (an earlier partial `down`): remove what is left without
                // the network teardown.
                let podman = run_dir.join("podman");
                let mut cmd = Command::new("podman");
                cmd.arg("--root").arg(podman.join("root")).arg("--runroot").arg(podman.join("runroot")).args(["--cgroup-manager", "cgroupfs"]).args(&rm);
                run_with_stdin(cmd, None, "podman rm -a")
            }
        };
        if let Err(e) = result {
            report.errors.push(format!("podman cleanup: {e:#}"));
        }
    }
    let mut namespaces = Vec::new();
    if let Some(state) = &state {
        // Workloads first, the store server last (agents may be mid-write).
        for p in state.processes.iter().rev() {
            if let Some(r) = &p.record {
                match testbed::kill_recorded(r) {
                    Ok(true) => report.killed += 1,
                    Ok(false) => {}
                    Err(e) => report.errors.push(format!("{}: {e}", p.spec.name)),
                }
            }
        }
        namespaces.extend(state.namespaces.iter().rev().cloned());
    }
    for ns in sweep_names(name) {
        if !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    for ns in namespaces {
        if !testbed::namespace_exists(&ns) {
            continue;
        }
        match testbed::delete_namespace(&ns) {
            Ok(()) => report.namespaces.push(ns),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    // podman leaves its storage directory mounted under the run dir.
    for mountpoint in mounts_under(run_dir) {
        if let Err(e) = testbed::run("umount", &["-l", &mountpoint]) {
            report.errors.push(e.to_string());
        }
    }
    if run_dir.exists() {
        if let Err(e) = fs::remove_dir_all(run_dir) {
            report.errors.push(format!("remove {}: {e}", run_dir.display()));
        }
    }
    Ok(report)
}

/// Mount points below `dir` (deepest first), from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// `status` as a table: every node and workload with its name, COE, role and IP.
pub fn status_table(state: &State) -> String {
    let rows: Vec<[String; 7]> = state
        .members
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.coe.map(|c| c.display().to_string()).unwrap_or_else(|| "-".into()),
                m.role.clone(),
                display_ip(m),
                m.node.clone().unwrap_or_else(|| "-".into()),
                m.namespace.clone(),
                state.process_state(&m.name).to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "COE", "ROLE", "IP", "NODE", "NAMESPACE", "PROCESS"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &header);
    for row in &rows {
        line(&mut out, &row.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
    let _ = writeln!(out, "\nstore: {} (backend {}), process: {}", state.datastore, state.backend, state.process_state(STORE));
    out
}

/// `status --json`: the same rows as the table.
pub fn status_json(state: &State) -> serde_json::Value {
    let members: Vec<serde_json::Value> = state
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "coe": m.coe.map(|c| c.label()),
                "role": m.role,
                "ip": m.ip,
                "node": m.node,
                "namespace": m.namespace,
                "process": state.process_state(&m.name),
            })
        })
        .collect();
    serde_json::json!({
        "lab": state.name,
        "datastore": state.datastore,
        "backend": state.backend,
        "store_process": state.process_state(STORE),
        "members": members,
    })
}

/// `env`: shell lines for `eval "$(seam lab env)"`.
pub fn env_lines(state: &State) -> String {
    format!(
        "export {}={}\n# seam apply/get/delete/ipam now use lab {}. Node status runs in a node: seam lab exec NODE -- {} node status\n",
        store::DATASTORE_ENV,
        state.datastore,
        state.name,
        state.seam.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_names_keep_every_namespace_under_seam_lab() {
        for good in ["seam-lab", "seam-lab-t1", "seam-lab-ci42"] {
            validate_name(good).unwrap();
        }
        for bad in ["lab", "seam-lab-", "seam-lab-A", "seam-lab-x-y", "seam-lab-pod1", "seam-labx", "seam-lab-../x"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn nodes_use_the_seed_addresses_and_pools() {
        let k8s: Vec<u8> = NODES.iter().filter(|n| n.coe == Coe::Kubernetes).map(|n| n.index).collect();
        let dcos: Vec<u8> = NODES.iter().filter(|n| n.coe == Coe::Dcos).map(|n| n.index).collect();
        assert_eq!(k8s, [33, 34, 35, 36]);
        assert_eq!(dcos, [43, 44, 45, 46]);
        assert_eq!(node_def(NGINX.1).unwrap().role, "private agent");
        assert_eq!(node_def(CLIENT.1).unwrap().coe, Coe::Kubernetes);
        assert!(config::SEED_CALICO.contains("nodeSelector: coe == 'kubernetes'"));
        assert!(config::SEED_CALICO.contains("nodeSelector: coe == 'dcos'"));
    }

    fn sample_state() -> State {
        State {
            name: "seam-lab".into(),
            run_dir: "/run/seam-lab".into(),
            backend: "file:/run/seam-lab/seam.redb".into(),
            datastore: "unix:/run/seam-lab/store.sock".into(),
            seam: "/usr/bin/seam".into(),
            cni_plugin: "/usr/bin/seam-cni".into(),
            namespaces: vec!["seam-lab-sw".into()],
            processes: Vec::new(),
            members: vec![
                Member {
                    name: "k8s-worker1".into(),
                    coe: Some(Coe::Kubernetes),
                    role: "worker".into(),
                    ip: Some("172.16.18.34".parse().unwrap()),
                    namespace: "seam-lab-k8s-worker1".into(),
                    node: None,
                    container_id: None,
                },
                Member {
                    name: "nginx".into(),
                    coe: Some(Coe::Dcos),
                    role: "workload".into(),
                    ip: Some("192.168.158.192".parse().unwrap()),
                    namespace: "seam-lab-pod-nginx".into(),
                    node: Some("dcos-private2".into()),
                    container_id: Some("seam-lab-nginx".into()),
                },
            ],
        }
    }

    #[test]
    fn status_table_and_json_show_the_same_members() {
        let state = sample_state();
        let table = status_table(&state);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("COE") && lines[0].contains("ROLE") && lines[0].contains("IP"));
        assert!(lines[1].starts_with("k8s-worker1") && lines[1].contains("Kubernetes") && lines[1].contains("172.16.18.34"));
        assert!(lines[2].contains("DC/OS") && lines[2].contains("192.168.158.192") && lines[2].contains("dcos-private2"));
        let json = status_json(&state);
        assert_eq!(json["members"][0]["name"], "k8s-worker1");
        assert_eq!(json["members"][0]["coe"], "kubernetes");
        assert_eq!(json["members"][1]["ip"], "192.168.158.192");
        assert_eq!(json["members"][1]["node"], "dcos-private2");
        assert_eq!(json["datastore"], "unix:/run/seam-lab/store.sock");
    }

    #[test]
    fn cgroup_mounts_are_recreated_from_mountinfo() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs cgroup rw,mode=755\n\
                  31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime shared:1 - cgroup cgroup rw,name=systemd\n\
                  40 25 0:30 / /proc rw - proc proc rw\n";
        assert_eq!(
            cgroup_remount_script(v1),
            "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && \
             mkdir -p '/sys/fs/cgroup/cpu' && mount -t cgroup -o 'cpu' cgroup '/sys/fs/cgroup/cpu' && \
             mkdir -p '/sys/fs/cgroup/systemd' && mount -t cgroup -o 'name=systemd' cgroup '/sys/fs/cgroup/systemd'"
        );
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup_remount_script(v2), "mkdir -p '/sys/fs/cgroup' && mount -t cgroup2 -o 'nsdelegate' cgroup2 '/sys/fs/cgroup'");
        assert_eq!(cgroup_remount_script("40 25 0:30 / /proc rw - proc proc rw\n"), "");
    }

    #[test]
    fn env_exports_the_lab_datastore() {
        let text = env_lines(&sample_state());
        assert!(text.starts_with("export SEAM_DATASTORE=unix:/run/seam-lab/store.sock\n"), "{text}");
    }

    #[test]
    fn state_round_trips_and_names_unknown_members() {
        let dir = std::env::temp_dir().join(format!("seam-lab-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut state = sample_state();
        state.run_dir = dir.clone();
        state.save().unwrap();
        let loaded = State::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.members, state.members);
        let err = loaded.member("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("k8s-worker1"), "{err}");
        fs::write(State::path(&dir), "garbage").unwrap();
        assert!(State::load(&dir).unwrap_err().to_string().contains("state.json"));
        fs::remove_dir_all(&dir).unwrap();
        assert!(State::load(&dir).unwrap().is_none());
    }
}
