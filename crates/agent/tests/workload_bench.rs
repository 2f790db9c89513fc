//! CNI ADD/DEL latency of the real `seam-cni` binary (against `WorkloadManager::serve` on an
//! embedded store) next to Debian's reference `ptp` + `host-local`, both run the same way
//! (a process per call, from inside the same kind of "node" netns, each container in a fresh
//! "pod" netns as a runtime gives every sandbox).
//! Ignored by default (needs root, takes ~20 s); run it with
//! `cargo test -p agent --test workload_bench -- --ignored --nocapture`.
//! Targets from the issue: seam ADD p50 <= 5 ms and p99 <= 10 ms; seam DEL p50 <= 0.5x ptp's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::workload::{WorkloadContext, WorkloadManager};
use dataplane::NetNs;
use serde_json::json;
use store::{Condition, Store};

const ROUNDS: usize = 200;
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new(role: &str) -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("seamwb-{}-{}-{role}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let ns = NetNs::create_named(&name).expect("creating a netns (needs root)");
        TestNs { name, ns }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = NetNs::delete_named(&self.name);
    }
}

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
    dir.join("seam-cni")
}

/// Runs `bin` once from the calling thread's netns; panics unless it succeeds. Returns the
/// wall-clock time of the whole process (what a runtime waits for).
fn invoke(bin: &Path, env: &[(&str, &str)], stdin: &str) -> Duration {
    use std::io::Write;
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{} {env:?} failed: {}{}", bin.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    took
}

/// ADD then DEL of `ROUNDS` distinct containers, each in a netns of its own (created and
/// removed around it, untimed, as a runtime does per sandbox); returns (ADD, DEL) latencies.
fn add_del_rounds(bin: &Path, conf: &str, role: &str, cni_path: &str) -> (Vec<Duration>, Vec<Duration>) {
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let sandbox = TestNs::new(role);
        let path = sandbox.path();
        let pod = path.as_str();
        let id = format!("bench{i}");
        let env = |cmd: &'static str| {
            vec![
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", id.as_str()),
                ("CNI_NETNS", pod),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", cni_path),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p"),
            ]
        };
        adds.push(invoke(bin, &env("ADD"), conf));
        dels.push(invoke(bin, &env("DEL"), conf));
        drop(sandbox);
    }
    (adds, dels)
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs root, run with --ignored --nocapture"]
async fn cni_add_del_latency_against_ptp() {
    let seam_bin = seam_cni_binary();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store::EmbeddedStore::open(&dir.path().join("seam.redb")).await.unwrap());
    for (key, doc) in [
        (resources::key(resources::Kind::Node, None, "bn"), json!({"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "bn"}, "spec": {}})),
        (resources::key(resources::Kind::IPPool, None, "bp"), json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "bp"}, "spec": {"cidr": "10.78.0.0/16"}})),
    ] {
        store.put(&key, serde_json::to_vec(&doc).unwrap(), Condition::Always).await.unwrap();
    }
    let node = TestNs::new("node");
    let sock = dir.path().join("agent.sock");
    let host_local_dir = dir.path().join("host-local");

    let report = node
        .ns
        .run_future(move || async move {
            let m = Arc::new(WorkloadManager::new(WorkloadContext {
                node: "bn".into(),
                orchestrator: "kubernetes".into(),
                ipam: ipam::Ipam::new(store.clone()),
                store,
                mtu: 1500,
                blocks_changed: Arc::new(tokio::sync::Notify::new()),
            }));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn({
                let sock = sock.clone();
                async move { m.serve(&sock, async { let _ = stop_rx.await; }).await }
            });
            while std::os::unix::net::UnixStream::connect(&sock).is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seam_conf = json!({"cniVersion": "1.0.0", "name": "seam", "type": "seam-cni", "agentSocket": sock}).to_string();
            let ptp_conf = json!({"cniVersion": "1.0.0", "name": "ptpbench", "type": "ptp",
                "ipam": {"type": "host-local", "subnet": "10.79.0.0/16", "dataDir": host_local_dir}})
            .to_string();
            // The processes are spawned from a blocking thread of this runtime, i.e. inside the
            // node netns, which is where ptp puts its host side.
            let (seam, ptp) = tokio::task::spawn_blocking(move || {
                let seam = add_del_rounds(&seam_bin, &seam_conf, "pod", "");
                let ptp = add_del_rounds(&Path::new(REFERENCE_PLUGINS).join("ptp"), &ptp_conf, "ptppod", REFERENCE_PLUGINS);
                (seam, ptp)
            })
            .await
            .unwrap();
            stop_tx.send(()).unwrap();
            server.await.unwrap().unwrap();
            (seam, ptp)
        })
        .await
        .unwrap();

    let ((seam_add, seam_del), (ptp_add, ptp_del)) = report;
    println!("{ROUNDS} rounds        p50 ms   p99 ms");
    for (name, s) in [("seam ADD", &seam_add), ("ptp  ADD", &ptp_add), ("seam DEL", &seam_del), ("ptp  DEL", &ptp_del)] {
        println!("{name}        {:7.2}  {:7.2}", ms(percentile(s, 0.5)), ms(percentile(s, 0.99)));
    }
    assert!(percentile(&seam_add, 0.5) <= Duration::from_millis(5), "seam ADD p50 above 5 ms");
    assert!(percentile(&seam_add, 0.99) <= Duration::from_millis(10), "seam ADD p99 above 10 ms");
    assert!(ms(percentile(&seam_del, 0.5)) <= 0.5 * ms(percentile(&ptp_del, 0.5)), "seam DEL p50 above half of ptp's");
}
