//! End-to-end tests of issue 6 (network policy) on `seam lab`: real TCP traffic between
//! workloads in network namespaces, attached with `seam-cni` to the lab's agents, which
//! compile the store's policy into each node's `inet seam` table.
//!
//! Covered: the seed's default (traffic from the other orchestrator blocked, own orchestrator
//! allowed) → allowed after `seam apply -f examples/seed-policy.yaml` → blocked again after
//! `seam delete gnp allow-all`; egress deny; the seed-002 Kubernetes NetworkPolicy (TCP 6379
//! to `role: db` only from `role: frontend` pods of its namespace and from pods of namespaces
//! labelled `project: myproject`; refused from other pods, from frontends of other namespaces,
//! and on other ports).
//!
//! Needs root, iproute2, nftables, busybox-static, and `seam-cni` next to `seam` (built here
//! if missing). Every lab has a unique name (`seam-lab-p<pid>n<k>`) and is removed by
//! `seam lab down` in `Drop`, also when a test fails; workloads created here are named
//! `<lab>-pod-*`, which `seam lab down` sweeps too. Labs run one at a time.
//!
//! Run: `cargo test -p seam --test policy_e2e`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const SEAM: &str = env!("CARGO_BIN_EXE_seam");
const WAIT: Duration = Duration::from_secs(60);
const SEED_POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed-policy.yaml");

static ONE_LAB: Mutex<()> = Mutex::new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `seam-cni` next to the `seam` under test (built once if missing).
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
    path
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(why) if start.elapsed() >= timeout => panic!("timed out after {timeout:?} waiting until {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A workload this test attached itself (labels and namespace of its choosing).
struct Pod {
    ns: String,
    ip: String,
}

/// A lab from `seam lab up`, with the workloads and servers the test adds; all removed on drop.
struct Lab {
    name: String,
    run_dir: PathBuf,
    datastore: String,
    servers: Vec<Child>,
    pods: Vec<String>,
    _turn: MutexGuard<'static, ()>,
}

impl Lab {
    fn up() -> Lab {
        let turn = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
        let name = format!("seam-lab-p{}n{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut lab = Lab {
            run_dir: PathBuf::from("/run").join(&name),
            name,
            datastore: String::new(),
            servers: Vec::new(),
            pods: Vec::new(),
            _turn: turn,
        };
        let plugin = cni_plugin();
        // Without the seed policy: the default profiles must block cross-orchestrator traffic first.
        lab.seam_lab(&["up", "--no-policy", "--cni-plugin", plugin.to_str().unwrap()]);
        let env = lab.seam_lab(&["env"]);
        lab.datastore = env
            .lines()
            .find_map(|l| l.strip_prefix("export SEAM_DATASTORE="))
            .unwrap_or_else(|| panic!("no SEAM_DATASTORE in {env}"))
            .trim_matches(|c| c == '\'' || c == '"')
            .to_string();
        lab
    }

    fn seam_lab(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = output(Command::new(SEAM).args(["lab", "--name", &self.name]).args(args).stdin(Stdio::null()));
        assert!(ok, "seam lab {} failed:\n{stderr}\n{stdout}", args.join(" "));
        stdout
    }

    /// `seam ARGS` on the lab's datastore, with `stdin`.
    fn seam(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = Command::new(SEAM)
            .args(args)
            .env("SEAM_DATASTORE", &self.datastore)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run seam");
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "seam {} failed:\n{stderr}\n{stdout}", args.join(" "));
        stdout
    }

    fn member(&self, name: &str) -> Value {
        let status: Value = serde_json::from_str(&self.seam_lab(&["status", "--json"])).unwrap();
        status["members"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned().unwrap_or_else(|| panic!("no {name}"))
    }

    /// A workload namespace attached on `node` by `seam-cni ADD` with these labels.
    fn add_pod(&mut self, name: &str, node: &str, namespace: &str, labels: &[(&str, &str)]) -> Pod {
        let ns = format!("{}-pod-{name}", self.name);
        let (ok, _, err) = output(Command::new("ip").args(["netns", "add", &ns]));
        assert!(ok, "ip netns add {ns}: {err}");
        self.pods.push(ns.clone());
        let _ = output(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]));
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
        let config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "seam",
            "type": "seam-cni",
            "agentSocket": self.run_dir.join(node).join("agent.sock"),
            "args": {"cni": {"labels": labels}},
        });
        let plugin = cni_plugin();
        let mut child = Command::new(&plugin)
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", &ns)
            .env("CNI_NETNS", format!("/run/netns/{ns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}"))
            .env("CNI_PATH", plugin.parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run seam-cni");
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(config.to_string().as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "seam-cni ADD {name} on {node}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let result: Value = serde_json::from_str(&stdout).unwrap();
        let ip = result["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        Pod { ns, ip }
    }

    /// A busybox httpd on `port` in a namespace (a TCP listener answering one line).
    fn serve(&mut self, ns: &str, port: u16, text: &str) {
        let www = self.run_dir.join(format!("www-{ns}-{port}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), text).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "busybox", "httpd", "-f", "-p", &port.to_string(), "-h", www.to_str().unwrap()])
            .stdin(Stdio::null())
            .spawn()
            .expect("start busybox httpd");
        self.servers.push(child);
    }

    /// One TCP fetch from namespace `ns` (2 s at most): Ok(body) or Err(why).
    fn fetch(&self, ns: &str, ip: &str, port: u16) -> Result<String, String> {
        let url = format!("http://{ip}:{port}/");
        let (ok, out, err) = output(
            Command::new("ip").args(["netns", "exec", ns, "timeout", "2", "busybox", "wget", "-q", "-O", "-", &url]).stdin(Stdio::null()),
        );
        if ok {
            Ok(out)
        } else {
            Err(format!("{url}: {err}"))
        }
    }

    fn allowed(&self, what: &str, ns: &str, ip: &str, port: u16) -> String {
        wait_until(&format!("{what} is allowed"), WAIT, || self.fetch(ns, ip, port))
    }

    /// Waits until the fetch fails, then checks it keeps failing (no flapping).
    fn refused(&self, what: &str, ns: &str, ip: &str, port: u16) {
        wait_until(&format!("{what} is blocked"), WAIT, || match self.fetch(ns, ip, port) {
            Ok(body) => Err(format!("still allowed: {body}")),
            Err(_) => Ok(()),
        });
        if let Ok(body) = self.fetch(ns, ip, port) {
            panic!("{what}: allowed again after being blocked: {body}");
        }
    }

    fn ping(&self, ns: &str, ip: &str) -> Result<(), String> {
        let (ok, out, err) = output(Command::new("ip").args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip]).stdin(Stdio::null()));
        if ok {
            Ok(())
        } else {
            Err(format!("{out}{err}"))
        }
    }

    /// `nft list table inet seam` on a node.
    fn table(&self, node: &str) -> String {
        let ns = self.member(node)["namespace"].as_str().unwrap().to_string();
        let (ok, out, err) = output(Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "table", "inet", "seam"]));
        assert!(ok, "nft list table inet seam on {node}: {err}");
        out
    }

    fn dump(&self) {
        for dir in std::fs::read_dir(&self.run_dir).into_iter().flatten().flatten() {
            let f = dir.path().join("agent.stderr");
            if let Ok(text) = std::fs::read_to_string(&f) {
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("----- {}\n{}", f.display(), lines[lines.len().saturating_sub(20)..].join("\n"));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let (ok, out, err) = output(Command::new(SEAM).args(["lab", "--name", &self.name, "down"]).stdin(Stdio::null()));
        if !ok {
            eprintln!("seam lab down failed: {err}{out}");
        }
        for ns in &self.pods {
            if testbed::namespace_exists(ns) {
                let _ = output(Command::new("ip").args(["netns", "delete", ns]));
            }
        }
        let left: Vec<String> = testbed::list_namespaces().into_iter().filter(|n| n.starts_with(&format!("{}-", self.name))).collect();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("namespaces left after seam lab down: {left:?}");
        }
    }
}

/// The seed's default and its `allow-all`: cross-orchestrator traffic blocked by default (same
/// orchestrator allowed), allowed once the seed's policy is applied, blocked again when it is
/// deleted; then an egress deny on the Kubernetes pods.
#[test]
fn cross_orchestrator_default_allow_all_and_egress_deny() {
    let mut lab = Lab::up();
    let nginx = lab.member("nginx");
    let (nginx_ip, nginx_ns) = (nginx["ip"].as_str().unwrap().to_string(), nginx["namespace"].as_str().unwrap().to_string());
    let client_ns = lab.member("client")["namespace"].as_str().unwrap().to_string();
    // Routing works (the reflector's routes are in place) ...
    wait_until("k8s-worker1 routes to nginx", WAIT, || {
        let node_ns = lab.member("k8s-worker1")["namespace"].as_str().unwrap().to_string();
        let (_, out, _) = output(Command::new("ip").args(["netns", "exec", &node_ns, "ip", "route", "get", &nginx_ip]));
        if out.contains(" via ") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // ... and within one orchestrator traffic flows: a Kubernetes pod on another worker.
    let web = lab.add_pod("web", "k8s-worker2", "default", &[("app", "web")]);
    lab.serve(&web.ns, 80, "kubernetes web\n");
    assert_eq!(lab.allowed("Kubernetes pod -> Kubernetes pod", &client_ns, &web.ip, 80), "kubernetes web\n");
    // The policy was in place when ADD answered: the table has the pod's interface.
    let table = lab.table("k8s-worker2");
    assert!(table.contains("map to_wl") && table.contains("seam"), "{table}");

    // From the other orchestrator: blocked by default, both ways.
    lab.refused("Kubernetes pod -> DC/OS nginx (default)", &client_ns, &nginx_ip, 80);
    lab.refused("DC/OS nginx -> Kubernetes pod (default)", &nginx_ns, &web.ip, 80);

    // The seed's relaxation: allow-all then calico-open.
    let applied = lab.seam(&["apply", "-f", SEED_POLICY], None);
    assert!(applied.contains("allow-all") && applied.contains("calico-open"), "{applied}");
    let page = lab.allowed("Kubernetes pod -> DC/OS nginx after allow-all", &client_ns, &nginx_ip, 80);
    assert!(page.contains("Welcome to nginx"), "{page}");
    lab.allowed("DC/OS nginx -> Kubernetes pod after allow-all", &nginx_ns, &web.ip, 80);

    // Deleting allow-all restores the default.
    lab.seam(&["delete", "globalnetworkpolicy", "allow-all"], None);
    lab.refused("Kubernetes pod -> DC/OS nginx after deleting allow-all", &client_ns, &nginx_ip, 80);
    lab.allowed("Kubernetes pod -> Kubernetes pod after deleting allow-all", &client_ns, &web.ip, 80);

    // Egress deny: TCP 80 out of the Kubernetes pods is denied before allow-all applies.
    lab.seam(&["apply", "-f", SEED_POLICY], None);
    lab.allowed("Kubernetes pod -> DC/OS nginx (allow-all again)", &client_ns, &nginx_ip, 80);
    let deny = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: k8s-no-http-out\nspec:\n  order: 10\n  selector: projectcalico.org/orchestrator == 'kubernetes'\n  types: [Egress]\n  egress:\n  - action: Deny\n    protocol: TCP\n    destination:\n      ports: [80]\n";
    lab.seam(&["apply", "-f", "-"], Some(deny));
    lab.refused("Kubernetes pod -> DC/OS nginx with egress deny", &client_ns, &nginx_ip, 80);
    lab.refused("Kubernetes pod -> Kubernetes pod with egress deny", &client_ns, &web.ip, 80);
    // Only TCP 80 out is denied: ICMP still flows, and DC/OS -> Kubernetes is untouched.
    wait_until("the Kubernetes pod still pings nginx", WAIT, || lab.ping(&client_ns, &nginx_ip));
    lab.allowed("DC/OS nginx -> Kubernetes pod with egress deny", &nginx_ns, &web.ip, 80);
    lab.seam(&["delete", "gnp", "k8s-no-http-out"], None);
    lab.allowed("Kubernetes pod -> DC/OS nginx after removing the egress deny", &client_ns, &nginx_ip, 80);
}

/// The seed-002 policy (its Listing 4 as networking.k8s.io/v1): TCP 6379 to `role: db` from
/// `role: frontend` pods of its namespace and from any pod of a namespace labelled
/// `project: myproject`; everything else to db refused.
#[test]
fn seed_002_redis_policy() {
    let mut lab = Lab::up();
    // Namespace labels come from the namespace's `kns.<name>` profile.
    lab.seam(
        &["apply", "-f", "-"],
        Some("apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: kns.myproject\n  labels:\n    project: myproject\n"),
    );
    let db = lab.add_pod("db", "k8s-worker2", "default", &[("role", "db")]);
    lab.serve(&db.ns, 6379, "redis\n");
    lab.serve(&db.ns, 8080, "admin\n");
    let frontend = lab.add_pod("frontend", "k8s-worker1", "default", &[("role", "frontend")]);
    let other = lab.add_pod("other", "k8s-worker3", "default", &[("role", "other")]);
    let mp = lab.add_pod("mp", "k8s-worker1", "myproject", &[("role", "worker")]);
    let outsider = lab.add_pod("outsider", "k8s-worker3", "elsewhere", &[("role", "frontend")]);

    // Before the policy every Kubernetes pod reaches db (the orchestrator's default profile).
    for (who, pod) in [("frontend", &frontend), ("other", &other), ("mp", &mp), ("outsider", &outsider)] {
        assert_eq!(lab.allowed(&format!("{who} -> db:6379 before the policy"), &pod.ns, &db.ip, 6379), "redis\n");
    }

    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: test-network-policy\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      role: db\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          project: myproject\n    - podSelector:\n        matchLabels:\n          role: frontend\n    ports:\n    - protocol: TCP\n      port: 6379\n";
    let applied = lab.seam(&["apply", "-f", "-"], Some(policy));
    assert!(applied.contains("knp.default.test-network-policy"), "{applied}");

    lab.refused("other (role: other) -> db:6379", &other.ns, &db.ip, 6379);
    lab.refused("outsider (frontend in another namespace) -> db:6379", &outsider.ns, &db.ip, 6379);
    lab.refused("frontend -> db:8080 (port not in the policy)", &frontend.ns, &db.ip, 8080);
    assert_eq!(lab.allowed("frontend -> db:6379", &frontend.ns, &db.ip, 6379), "redis\n");
    assert_eq!(lab.allowed("myproject pod -> db:6379", &mp.ns, &db.ip, 6379), "redis\n");
    // The policy isolates db only: other pods still talk to each other.
    lab.serve(&other.ns, 80, "other\n");
    lab.allowed("frontend -> other:80", &frontend.ns, &other.ip, 80);

    // Deleting the policy opens db again.
    lab.seam(&["delete", "networkpolicy", "knp.default.test-network-policy", "-n", "default"], None);
    lab.allowed("other -> db:6379 after deleting the policy", &other.ns, &db.ip, 6379);
}
