//! The workload handler against the real kernel (needs root): a "node" netns runs the
//! manager, "pod" netns get plumbed by it, an embedded store in a tempdir holds the pool and
//! the endpoints. Every namespace has a unique name and is removed in Drop, even on failure.
//! The last test drives the real `seam-cni` binary against `WorkloadManager::serve`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::workload::{host_veth_name, WorkloadContext, WorkloadManager, GATEWAY_V4};
use cni::protocol::{Command, Request, Response};
use cni::spec::{codes, CniError, CniResult};
use dataplane::{NetNs, Netlink, Route};
use ipnet::IpNet;
use resources::{Kind, Resource};
use serde_json::{json, Value};
use store::{Condition, Store};

/// A named netns that is deleted when dropped (also when the test panics).
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new(role: &str) -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("seamwl-{}-{}-{role}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let ns = NetNs::create_named(&name).expect("creating a test netns (needs root)");
        TestNs { name, ns }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn handle(&self) -> NetNs {
        self.ns.try_clone().unwrap()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = NetNs::delete_named(&self.name);
    }
}

const NODE: &str = "n1";
const POOL: &str = "10.77.0.0/16";
/// An address of the node itself (on its `lo`), which workloads must reach.
const NODE_ADDR: &str = "10.200.0.1";

async fn put(store: &dyn Store, kind: Kind, ns: Option<&str>, name: &str, doc: Value) {
    store.put(&resources::key(kind, ns, name), serde_json::to_vec(&doc).unwrap(), Condition::Always).await.unwrap();
}

/// A tempdir store with this node (labelled `coe=podman`) and one pool selecting it.
async fn test_store(dir: &Path) -> Arc<dyn Store> {
    let s: Arc<dyn Store> = Arc::new(store::EmbeddedStore::open(&dir.join("seam.redb")).await.unwrap());
    put(&*s, Kind::Node, None, NODE, json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"coe": "podman"}}, "spec": {}}))
    .await;
    put(&*s, Kind::IPPool, None, "lab", json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "lab"}, "spec": {"cidr": POOL, "nodeSelector": "coe == 'podman'"}}))
    .await;
    s
}

fn manager(store: Arc<dyn Store>, notify: Arc<tokio::sync::Notify>) -> WorkloadManager {
    WorkloadManager::new(WorkloadContext {
        node: NODE.into(),
        orchestrator: "podman".into(),
        ipam: ipam::Ipam::new(store.clone()),
        store,
        mtu: 1500,
        blocks_changed: notify,
    })
}

fn request(command: Command, container: &str, netns: &str, args: &[(&str, &str)], config: Value) -> Request {
    Request {
        command,
        container_id: container.into(),
        netns: netns.into(),
        netns_fd: None,
        ifname: "eth0".into(),
        args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        network_name: "seam".into(),
        cni_version: "1.1.0".into(),
        config,
    }
}

fn ok(resp: Response) -> Option<Value> {
    match resp {
        Response::Ok { result } => result,
        Response::Err(e) => panic!("expected success, got {e}"),
    }
}

fn err(resp: Response) -> CniError {
    match resp {
        Response::Err(e) => e,
        Response::Ok { result } => panic!("expected an error, got success {result:?}"),
    }
}

fn only_ip(result: &Value) -> IpAddr {
    let r = CniResult::from_value(result).unwrap();
    assert_eq!(r.ips.len(), 1, "{result}");
    r.ips[0].address.addr()
}

/// `ping -c1` from inside `ns`; true when answered.
async fn ping(ns: &NetNs, to: &str) -> bool {
    let out = ns.output("ping", &["-c", "1", "-W", "2", to], None).await.unwrap();
    out.status.success()
}

async fn notified(n: &tokio::sync::Notify) -> bool {
    tokio::time::timeout(Duration::from_millis(200), n.notified()).await.is_ok()
}

async fn handle_exists(store: &dyn Store, container: &str) -> bool {
    store.get(&ipam::keys::handle_key(&format!("{container}.eth0"))).await.unwrap().is_some()
}

async fn prepare_node(node: &Netlink) {
    node.set_up("lo").await.unwrap();
    node.add_address("lo", format!("{NODE_ADDR}/32").parse().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_gc_on_a_real_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path()).await;
    let node = TestNs::new("node");
    let pod1 = TestNs::new("pod1");
    let pod2 = TestNs::new("pod2");
    let pod3 = TestNs::new("pod3");
    let (p1, p2, p3) = (pod1.path(), pod2.path(), pod3.path());
    let (pod1_ns, pod2_ns) = (pod1.handle(), pod2.handle());

    // Everything the manager does happens inside the node's namespace.
    node.ns
        .run_future(move || async move {
            let host = Netlink::connect().unwrap();
            prepare_node(&host).await;
            let notify = Arc::new(tokio::sync::Notify::new());
            let m = manager(store.clone(), notify.clone());
            let ipam = ipam::Ipam::new(store.clone());

            // ADD with Kubernetes args: an address from the node's block, endpoint recorded.
            let k8s = [("K8S_POD_NAMESPACE", "shop"), ("K8S_POD_NAME", "web-0"), ("IgnoreUnknown", "1")];
            let labels = json!({"args": {"cni": {"labels": {"app": "web"}}}});
            let r1 = ok(m.handle(request(Command::Add, "c1", &p1, &k8s, labels.clone())).await).unwrap();
            let ip1 = only_ip(&r1);
            let blocks = ipam.node_blocks(NODE).await.unwrap();
            assert_eq!(blocks.len(), 1);
            assert!(blocks[0].cidr.contains(&ip1) && POOL.parse::<IpNet>().unwrap().contains(&blocks[0].cidr));
            assert!(notified(&notify).await, "claiming the first block must notify the agent");
            assert_eq!(r1["ips"][0]["gateway"], GATEWAY_V4.to_string());
            assert_eq!(r1["interfaces"][0]["name"], host_veth_name("c1", "eth0"));
            assert_eq!(r1["interfaces"][1]["sandbox"], p1.as_str());

            let weps = resources::get(&*store, Kind::WorkloadEndpoint, Some("shop"), None).await.unwrap();
            assert_eq!(weps.len(), 1);
            let Resource::WorkloadEndpoint(w) = &weps[0] else { panic!() };
            assert_eq!(w.name, "n1-podman-web--0-eth0");
            assert_eq!(w.labels["app"], "web");
            assert_eq!(w.labels["projectcalico.org/orchestrator"], "podman");
            assert_eq!(w.labels["projectcalico.org/namespace"], "shop");
            assert_eq!((w.spec.node.as_str(), w.spec.container_id.as_str()), (NODE, "c1"));
            assert_eq!(w.spec.workload, "web-0");
            assert_eq!(w.spec.interface_name, host_veth_name("c1", "eth0"));
            assert_eq!(w.spec.ip_networks, vec![IpNet::new(ip1, 32).unwrap()]);

            // A second workload without Kubernetes args: default namespace, container id name.
            let r2 = ok(m.handle(request(Command::Add, "c2aaaaaaaaaaaaaa", &p2, &[], Value::Null)).await).unwrap();
            let ip2 = only_ip(&r2);
            assert_ne!(ip1, ip2);
            assert!(!notified(&notify).await, "an address from a known block must not notify");
            resources::get(&*store, Kind::WorkloadEndpoint, Some("default"), Some("n1-podman-c2aaaaaaaaaa-eth0")).await.unwrap();

            // Connectivity: workload -> node address, workload -> workload via the gateway.
            assert!(ping(&pod1_ns, NODE_ADDR).await, "pod1 cannot reach the node");
            assert!(ping(&pod1_ns, &ip2.to_string()).await, "pod1 cannot reach pod2");
            assert!(ping(&pod2_ns, &ip1.to_string()).await, "pod2 cannot reach pod1");

            // Idempotent ADD: same address, still working.
            let again = ok(m.handle(request(Command::Add, "c1", &p1, &k8s, labels.clone())).await).unwrap();
            assert_eq!(only_ip(&again), ip1);
            assert!(ping(&pod1_ns, &ip2.to_string()).await);

            // CHECK: fine, then broken by deleting the host route, then repaired by ADD.
            let mut check_conf = json!({"prevResult": r1.clone()});
            ok(m.handle(request(Command::Check, "c1", &p1, &k8s, check_conf.clone())).await);
            let idx = host.link_index(&host_veth_name("c1", "eth0")).await.unwrap();
            assert!(host.delete_route(&Route::dev(IpNet::new(ip1, 32).unwrap(), idx)).await.unwrap());
            let e = err(m.handle(request(Command::Check, "c1", &p1, &k8s, check_conf.clone())).await);
            assert_eq!(e.code, codes::SEAM_CHECK_FAILED);
            assert!(e.msg.contains("host route") && e.msg.contains(&ip1.to_string()), "{e}");
            ok(m.handle(request(Command::Add, "c1", &p1, &k8s, labels.clone())).await);
            ok(m.handle(request(Command::Check, "c1", &p1, &k8s, check_conf.clone())).await);
            // A prevResult that disagrees with the allocation fails too.
            check_conf["prevResult"]["ips"][0]["address"] = json!("10.99.0.1/32");
            let e = err(m.handle(request(Command::Check, "c1", &p1, &k8s, check_conf)).await);
            assert_eq!(e.code, codes::SEAM_CHECK_FAILED);
            // CHECK of a container Seam never saw.
            let e = err(m.handle(request(Command::Check, "ghost", &p1, &[], Value::Null)).await);
            assert_eq!(e.code, codes::UNKNOWN_CONTAINER);

            // DEL twice, and DEL of something never added (no netns either).
            ok(m.handle(request(Command::Del, "c2aaaaaaaaaaaaaa", &p2, &[], Value::Null)).await);
            ok(m.handle(request(Command::Del, "c2aaaaaaaaaaaaaa", &p2, &[], Value::Null)).await);
            ok(m.handle(request(Command::Del, "never-seen", "", &[], Value::Null)).await);
            assert!(host.link(&host_veth_name("c2aaaaaaaaaaaaaa", "eth0")).await.unwrap().is_none());
            assert!(!handle_exists(&*store, "c2aaaaaaaaaaaaaa").await);
            assert!(resources::get(&*store, Kind::WorkloadEndpoint, Some("default"), None).await.unwrap().is_empty());
            assert!(!ping(&pod1_ns, &ip2.to_string()).await, "pod2's address still answers after DEL");

            // GC keeps valid attachments and frees the rest (allocation, endpoint, veth).
            ok(m.handle(request(Command::Add, "c3", &p3, &[], Value::Null)).await);
            let gc = json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]});
            ok(m.handle(request(Command::Gc, "", "", &[], gc)).await);
            assert!(!handle_exists(&*store, "c3").await);
            assert!(host.link(&host_veth_name("c3", "eth0")).await.unwrap().is_none());
            assert!(handle_exists(&*store, "c1").await);
            ok(m.handle(request(Command::Check, "c1", &p1, &k8s, Value::Null)).await);
            let all = resources::get(&*store, Kind::WorkloadEndpoint, None, None).await.unwrap();
            assert_eq!(all.len(), 1, "only c1's endpoint survives GC");
            let e = err(m.handle(request(Command::Gc, "", "", &[], json!({}))).await);
            assert_eq!(e.code, codes::INVALID_NETWORK_CONFIG);

            // STATUS answers while the store does.
            assert!(m.handle(request(Command::Status, "", "", &[], Value::Null)).await == Response::ok(None));

            // A failed ADD rolls back: `lo` already exists in the pod, so plumbing fails after
            // the allocation, which must be released again.
            let mut bad = request(Command::Add, "c4", &p3, &[], Value::Null);
            bad.ifname = "lo".into();
            let e = err(m.handle(bad).await);
            assert_eq!(e.code, codes::SEAM_DATAPLANE);
            assert!(e.msg.contains("CNI_IFNAME"), "{e}");
            assert!(store.get(&ipam::keys::handle_key("c4.lo")).await.unwrap().is_none());
            assert!(host.link(&host_veth_name("c4", "lo")).await.unwrap().is_none());
            // A netns that does not exist: clear error, nothing allocated.
            let e = err(m.handle(request(Command::Add, "c5", "/run/netns/seam-no-such-ns", &[], Value::Null)).await);
            assert_eq!(e.code, codes::INVALID_ENV);
            assert!(e.msg.starts_with("CNI_NETNS"), "{e}");
            assert!(!handle_exists(&*store, "c5").await);

            // Releasing the last address empties the block: the agent is told.
            let _ = notified(&notify).await;
            ok(m.handle(request(Command::Del, "c1", &p1, &k8s, Value::Null)).await);
            assert!(notified(&notify).await, "emptying a block must notify the agent");
            assert!(ipam.node_blocks(NODE).await.unwrap().iter().all(|b| b.used == 0));

            // A new container in the same netns right after DEL (its veth may still be waiting
            // for the batched deletion) gets its interface.
            let r6 = ok(m.handle(request(Command::Add, "c6", &p1, &[], Value::Null)).await).unwrap();
            assert!(ping(&pod1_ns, NODE_ADDR).await, "the new workload in pod1 cannot reach the node");
            assert_eq!(r6["interfaces"][0]["name"], host_veth_name("c6", "eth0"));
            ok(m.handle(request(Command::Del, "c6", &p1, &[], Value::Null)).await);
        })
        .await
        .unwrap();
}

/// `target/debug/seam-cni` next to this test binary (`target/debug/deps/workload-HASH`),
/// (re)built first with the same cargo so the test never runs a stale plugin.
fn seam_cni_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut args = vec!["build", "--quiet", "-p", "cni", "--bin", "seam-cni"];
    if dir.file_name().is_some_and(|n| n == "release") {
        args.push("--release");
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(&args)
        .env("CARGO_TARGET_DIR", dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build -p cni");
    assert!(status.success(), "building seam-cni failed");
    let bin = dir.join("seam-cni");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Runs the real plugin binary with `env` and `stdin`, as a runtime would.
async fn run_plugin(bin: &Path, env: &[(&str, &str)], stdin: String) -> (i32, Value) {
    let mut child = tokio::process::Command::new(bin)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    (out.status.code().unwrap(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seam_cni_binary_against_serve() {
    let bin = seam_cni_binary();
    let dir = tempfile::tempdir().unwrap();
    let store = test_store(dir.path()).await;
    let node = TestNs::new("node");
    let pod = TestNs::new("pod");
    let pod_path = pod.path();
    let pod_ns = pod.handle();
    let sock = dir.path().join("run").join("agent.sock");
    // A stale file where the socket goes must not stop the agent.
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    std::fs::write(&sock, b"stale").unwrap();

    node.ns
        .run_future(move || async move {
            prepare_node(&Netlink::connect().unwrap()).await;
            let m = Arc::new(manager(store.clone(), Arc::new(tokio::sync::Notify::new())));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn({
                let sock = sock.clone();
                async move { m.serve(&sock, async { let _ = stop_rx.await; }).await }
            });
            for _ in 0..100 {
                if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o660);

            let conf = |v: &str| json!({"cniVersion": v, "name": "seam", "type": "seam-cni", "agentSocket": sock}).to_string();
            let add = [
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "e2e1"),
                ("CNI_NETNS", pod_path.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=box"),
                ("CNI_PATH", "/usr/lib/cni"),
            ];
            let (code, v) = run_plugin(&bin, &add, conf("0.4.0")).await;
            assert_eq!(code, 0, "{v}");
            assert_eq!(v["cniVersion"], "0.4.0");
            assert_eq!(v["ips"][0]["version"], "4");
            let ip = v["ips"][0]["address"].as_str().unwrap().parse::<IpNet>().unwrap();
            assert!(POOL.parse::<IpNet>().unwrap().contains(&ip), "{ip}");
            assert!(ping(&pod_ns, NODE_ADDR).await, "the plumbed workload cannot reach the node");
            resources::get(&*store, Kind::WorkloadEndpoint, Some("lab"), Some("n1-podman-box-eth0")).await.unwrap();

            let check = [("CNI_COMMAND", "CHECK"), ("CNI_CONTAINERID", "e2e1"), ("CNI_NETNS", pod_path.as_str()), ("CNI_IFNAME", "eth0")];
            let mut check_conf: Value = serde_json::from_str(&conf("1.1.0")).unwrap();
            check_conf["prevResult"] = v.clone();
            assert_eq!(run_plugin(&bin, &check, check_conf.to_string()).await, (0, Value::Null));
            let (code, v) = run_plugin(&bin, &[("CNI_COMMAND", "STATUS")], conf("1.1.0")).await;
            assert_eq!((code, v), (0, Value::Null));

            let del = [("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "e2e1"), ("CNI_NETNS", pod_path.as_str()), ("CNI_IFNAME", "eth0")];
            assert_eq!(run_plugin(&bin, &del, conf("1.0.0")).await, (0, Value::Null));
            assert_eq!(run_plugin(&bin, &del, conf("1.0.0")).await, (0, Value::Null));
            let (code, v) = run_plugin(&bin, &check, conf("1.0.0")).await;
            assert_eq!((code, v["code"].as_u64()), (1, Some(3)));

            stop_tx.send(()).unwrap();
            server.await.unwrap().unwrap();
            assert!(!sock.exists(), "serve must remove its socket on shutdown");
        })
        .await
        .unwrap();
}
