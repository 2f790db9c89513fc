//! IPAM allocation benchmark: latency (p50/p99) of one allocator and throughput of several
//! concurrent ones, next to the floor — a bare compare-and-swap on the same backend (for etcd
//! also a raw etcd-client transaction, the cheapest write etcd can do).
//!
//! ```text
//! cargo run --release -p ipam --example alloc_bench -- --datastore file:/tmp/bench.redb
//! cargo run --release -p ipam --features etcd --example alloc_bench -- --spawn-etcd
//! ```
//!
//! Options: `--datastore SPEC` (must be empty), `--spawn-etcd` (start /usr/bin/etcd on free
//! loopback ports in a tempdir, killed at exit), `--allocations N` (default 2000),
//! `--concurrency C` (default 4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::{AllocationRequest, Handle, Ipam};
use store::{Condition, Store};

/// Command-line options.
struct Opts {
    datastore: Option<String>,
    spawn_etcd: bool,
    allocations: usize,
    concurrency: usize,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts { datastore: None, spawn_etcd: false, allocations: 2000, concurrency: 4 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--datastore" => o.datastore = Some(value("--datastore")?),
            "--spawn-etcd" => o.spawn_etcd = true,
            "--allocations" => o.allocations = value("--allocations")?.parse().map_err(|e| format!("--allocations: {e}"))?,
            "--concurrency" => o.concurrency = value("--concurrency")?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.datastore.is_none() && !o.spawn_etcd {
        return Err("give --datastore SPEC or --spawn-etcd".into());
    }
    if o.allocations == 0 || o.concurrency == 0 {
        return Err("--allocations and --concurrency must be at least 1".into());
    }
    Ok(o)
}

/// An etcd we started (only with --spawn-etcd), killed by PID on drop.
struct SpawnedEtcd {
    child: std::process::Child,
    endpoint: String,
    _dir: std::path::PathBuf,
}

impl SpawnedEtcd {
    fn start() -> SpawnedEtcd {
        let port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (c, p) = (port(), port());
        let dir = std::env::temp_dir().join(format!("seam-bench-etcd-{}", std::process::id()));
        let client = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let child = std::process::Command::new("/usr/bin/etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start /usr/bin/etcd");
        SpawnedEtcd { child, endpoint: format!("127.0.0.1:{c}"), _dir: dir }
    }
}

impl Drop for SpawnedEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Latency percentiles and throughput of one measured run.
struct Stats {
    label: String,
    ops: usize,
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(label: &str, mut lat: Vec<Duration>, wall: Duration) -> Stats {
    lat.sort();
    let pick = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    Stats { label: label.to_string(), ops: lat.len(), p50: pick(0.50), p99: pick(0.99), per_sec: lat.len() as f64 / wall.as_secs_f64() }
}

const SEED: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: bench}
spec: {cidr: 10.64.0.0/12}
"#;

async fn seed(store: &dyn Store, nodes: usize) -> Result<(), String> {
    let (existing, _) = store.list("/seam/v1/").await.map_err(|e| e.to_string())?;
    if !existing.is_empty() {
        return Err("the datastore is not empty: benchmark on a fresh one".into());
    }
    let mut yaml = SEED.to_string();
    for n in 0..nodes {
        yaml.push_str(&format!("---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: bench-{n}}}\n"));
    }
    let docs = resources::parse_documents(&yaml, "bench seed").map_err(|e| e.to_string())?;
    resources::apply(store, docs).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Run `total` operations split over `tasks` concurrent tasks; `op(task, i)` is one operation.
async fn measure<F, Fut>(label: &str, total: usize, tasks: usize, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let op = op.clone();
        let n = total / tasks + usize::from(t < total % tasks);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let s = Instant::now();
                op(t, i).await;
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("bench task"));
    }
    stats(label, lat, start.elapsed())
}

async fn ipam_runs(store: Arc<dyn Store>, o: &Opts, out: &mut Vec<Stats>) {
    let seq = Ipam::new(store.clone());
    out.push(
        measure("ipam allocate, 1 allocator", o.allocations, 1, move |_, i| {
            let ipam = seq.clone();
            async move {
                let h = Handle::new(&format!("seq-{i}"), "eth0").unwrap();
                ipam.allocate(AllocationRequest::new("bench-0", h)).await.expect("allocate");
            }
        })
        .await,
    );
    // One Ipam per allocator, each on its own node, as node agents are deployed.
    let ipams: Vec<Ipam> = (0..o.concurrency).map(|_| Ipam::new(store.clone())).collect();
    let ipams = Arc::new(ipams);
    out.push(
        measure(&format!("ipam allocate, {} allocators", o.concurrency), o.allocations, o.concurrency, move |t, i| {
            let ipams = ipams.clone();
            async move {
                let h = Handle::new(&format!("par{t}-{i}"), "eth0").unwrap();
                ipams[t].allocate(AllocationRequest::new(&format!("bench-{t}"), h)).await.expect("allocate");
            }
        })
        .await,
    );
}

/// The floor through the Store trait: one CAS write per operation on a per-task key.
async fn store_cas_runs(store: Arc<dyn Store>, o: &Opts, out: &mut Vec<Stats>) {
    for tasks in [1, o.concurrency] {
        let s = store.clone();
        let revs: Arc<Vec<tokio::sync::Mutex<Option<u64>>>> =
            Arc::new((0..tasks).map(|_| tokio::sync::Mutex::new(None)).collect());
        out.push(
            measure(&format!("store CAS put (floor), {tasks} writers"), o.allocations, tasks, move |t, _| {
                let s = s.clone();
                let revs = revs.clone();
                async move {
                    let mut rev = revs[t].lock().await;
                    let cond = rev.map(Condition::Revision).unwrap_or(Condition::Always);
                    *rev = Some(s.put(&format!("/bench/floor/{tasks}/{t}"), vec![0u8; 64], cond).await.expect("cas"));
                }
            })
            .await,
        );
    }
}

#[cfg(feature = "etcd")]
async fn raw_etcd_runs(endpoint: &str, o: &Opts, out: &mut Vec<Stats>) {
    use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
    for tasks in [1, o.concurrency] {
        let client = Client::connect([endpoint], None).await.expect("etcd connect");
        let revs: Arc<Vec<tokio::sync::Mutex<i64>>> = Arc::new((0..tasks).map(|_| tokio::sync::Mutex::new(0)).collect());
        out.push(
            measure(&format!("raw etcd txn CAS (floor), {tasks} writers"), o.allocations, tasks, move |t, _| {
                let mut kv = client.kv_client();
                let revs = revs.clone();
                async move {
                    let key = format!("/bench/raw/{tasks}/{t}");
                    let mut rev = revs[t].lock().await;
                    // Compare the key's mod revision (0 = absent) and put: what one IPAM write costs at least.
                    let txn = Txn::new()
                        .when(vec![Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev)])
                        .and_then(vec![TxnOp::put(key.as_str(), vec![0u8; 64], None)]);
                    let resp = kv.txn(txn).await.expect("txn");
                    assert!(resp.succeeded(), "raw CAS lost: nobody else writes this key");
                    *rev = resp.header().expect("header").revision();
                }
            })
            .await,
        );
    }
}

fn print(backend: &str, cmd: &str, stats: &[Stats]) {
    println!("backend: {backend}\ncommand: {cmd}\n");
    println!("| run | ops | p50 | p99 | ops/s |");
    println!("|---|---:|---:|---:|---:|");
    for s in stats {
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.0} |",
            s.label,
            s.ops,
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            s.per_sec
        );
    }
    if let (Some(ipam), Some(floor)) = (
        stats.iter().find(|s| s.label.starts_with("ipam allocate, 1 ")),
        stats.iter().rev().find(|s| s.label.contains("floor), 1 ")),
    ) {
        println!(
            "\nipam allocate / floor ({}): p50 x{:.1}, p99 x{:.1}",
            floor.label,
            ipam.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            ipam.p99.as_secs_f64() / floor.p99.as_secs_f64()
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("alloc_bench: {e}");
            std::process::exit(2);
        }
    };
    let cmd = std::env::args().collect::<Vec<_>>().join(" ");
    let spawned = o.spawn_etcd.then(SpawnedEtcd::start);
    let spec = match (&spawned, &o.datastore) {
        (Some(e), _) => format!("etcd://{}", e.endpoint),
        (None, Some(d)) => d.clone(),
        (None, None) => unreachable!("checked in parse_opts"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match store::open(&spec).await {
            Ok(s) if s.revision().await.is_ok() => break s,
            Err(e) if Instant::now() > deadline => {
                eprintln!("alloc_bench: {e}");
                std::process::exit(1);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    if let Err(e) = seed(&*store, o.concurrency.max(1)).await {
        eprintln!("alloc_bench: {spec}: {e}");
        std::process::exit(1);
    }
    let mut out = Vec::new();
    ipam_runs(store.clone(), &o, &mut out).await;
    store_cas_runs(store.clone(), &o, &mut out).await;
    #[cfg(feature = "etcd")]
    if let Some(endpoint) = spec.strip_prefix("etcd://") {
        raw_etcd_runs(endpoint.split(',').next().unwrap_or(endpoint), &o, &mut out).await;
    }
    let backend = if spec.starts_with("etcd://") { "etcd 3.4 (one member, loopback)" } else { "embedded (redb file)" };
    print(backend, &cmd, &out);
    drop(spawned);
}
