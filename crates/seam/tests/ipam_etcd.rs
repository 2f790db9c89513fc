//! The IPAM on etcd, with allocators as separate `seam ipam allocate` processes against one
//! local etcd: 4 x 1,000 concurrent allocations, and SIGKILL of one allocator at random
//! points. Run with `cargo test -p seam --features etcd`.
#![cfg(feature = "etcd")]

mod ipam_common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::Ipam;
use ipam_common::*;
use store::Store;

async fn connect(ds: &str) -> Arc<dyn Store> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = store::open(ds).await {
            if s.revision().await.is_ok() {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "etcd at {ds} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every (ip -> handle) held in the store; panics on an address in two blocks.
async fn held(store: &dyn Store) -> HashMap<IpAddr, String> {
    let (kvs, _) = store.list("/seam/v1/ipam/blocks/").await.unwrap();
    let mut out = HashMap::new();
    for kv in kvs {
        let b: ipam::Block = serde_json::from_slice(&kv.value).unwrap();
        for (o, s) in &b.allocations {
            assert!(out.insert(b.ip_at(*o), s.handle.clone()).is_none(), "{} held twice", b.ip_at(*o));
        }
    }
    out
}

/// An allocator process and the thread collecting what it reports.
struct Allocator {
    child: Child,
    reader: Option<std::thread::JoinHandle<String>>,
}

fn allocator(ds: &str, node: &str, handle: &str, count: u32) -> Allocator {
    let mut child = seam(ds)
        .args(["ipam", "allocate", "--node", node, "--handle", handle, "--count", &count.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    Allocator { child, reader: Some(reader) }
}

impl Allocator {
    /// Wait for it to finish; it must succeed.
    fn finish(mut self) -> Vec<(String, IpAddr)> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "allocator failed: {status}");
        parse_allocations(&self.reader.take().unwrap().join().unwrap())
    }

    /// SIGKILL it; returns what it reported before dying.
    fn kill(mut self) -> Vec<(String, IpAddr)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        parse_allocations(&self.reader.take().unwrap().join().unwrap())
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        // Only our own child, by PID; a no-op once it exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_allocator_processes_times_1000_on_etcd() {
    let etcd = Etcd::start();
    let ds = etcd.datastore();
    let s = connect(&ds).await;
    seed(&*s).await;

    let started = Instant::now();
    // Two processes share k8s-1 (racing on its blocks), one on k8s-2, one on dcos-1.
    let procs: Vec<Allocator> = [("k8s-1", "p0"), ("k8s-1", "p1"), ("k8s-2", "p2"), ("dcos-1", "p3")]
        .iter()
        .map(|(node, h)| allocator(&ds, node, h, 1000))
        .collect();
    let mut by_ip: HashMap<IpAddr, String> = HashMap::new();
    for p in procs {
        let got = p.finish();
        assert_eq!(got.len(), 1000);
        for (h, ip) in got {
            if let Some(other) = by_ip.insert(ip, h.clone()) {
                panic!("{ip} handed out to both {other} and {h}");
            }
        }
    }
    eprintln!("4 processes x 1000 allocations on etcd in {:?}", started.elapsed());
    assert_eq!(by_ip.len(), 4000);
    let now = held(&*s).await;
    assert_eq!(now, by_ip, "the store holds exactly what was handed out");
    let check = Ipam::new(s.clone()).with_check_grace(Duration::from_secs(3600)).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!((check.allocations, check.handles), (4000, 4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_allocator_at_random_points_on_etcd() {
    let etcd = Etcd::start();
    let ds = etcd.datastore();
    let s = connect(&ds).await;
    seed(&*s).await;

    let mut reported: Vec<(String, IpAddr)> = Vec::new();
    for it in 0..3 {
        let victim = allocator(&ds, "k8s-1", &format!("victim{it}"), 100_000);
        let others: Vec<Allocator> = ["k8s-1", "k8s-2", "dcos-1"]
            .iter()
            .enumerate()
            .map(|(i, node)| allocator(&ds, node, &format!("ok{it}-{i}"), 150))
            .collect();
        tokio::time::sleep(random_ms(200, 1200)).await;
        let got = victim.kill();
        eprintln!("iteration {it}: victim reported {} allocations before SIGKILL", got.len());
        reported.extend(got);
        for o in others {
            let got = o.finish();
            assert_eq!(got.len(), 150);
            reported.extend(got);
        }
        let check = Ipam::new(s.clone()).with_check_grace(Duration::from_secs(3600)).check().await.unwrap();
        assert_eq!(check.severe().count(), 0, "{:?}", check.problems);
        let now = held(&*s).await;
        for (h, ip) in &reported {
            assert_eq!(now.get(ip), Some(h), "{ip} reported for {h} is not held by it");
        }
    }
    let unique: HashSet<IpAddr> = reported.iter().map(|(_, ip)| *ip).collect();
    assert_eq!(unique.len(), reported.len(), "an address was reported twice");

    // Reported allocations are live workloads; anything else held was leaked by a kill.
    let mut by_node: HashMap<&str, Vec<String>> = HashMap::new();
    for (h, _) in &reported {
        // The node is only metadata on the endpoint; k8s-1 for all is fine for liveness.
        by_node.entry("k8s-1").or_default().push(h.clone());
    }
    mark_live(&*s, "k8s-1", &by_node["k8s-1"]).await;
    let before = held(&*s).await;
    let leaked: HashSet<IpAddr> = before.keys().filter(|ip| !unique.contains(ip)).copied().collect();
    assert!(leaked.len() <= 3, "at most one in-flight allocation per kill: {leaked:?}");
    let ipam = Ipam::new(s.clone());
    let gc = ipam.gc(Duration::ZERO, std::time::SystemTime::now()).await.unwrap();
    let freed: HashSet<IpAddr> = gc.released_ips.iter().map(|(ip, _)| *ip).collect();
    assert_eq!(freed, leaked);
    let check = ipam.with_check_grace(Duration::ZERO).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(check.allocations, reported.len());

    // The CLI, as a separate process on the same etcd, agrees.
    let out = run(&ds, &["ipam", "check", "--grace", "0"]);
    assert!(out.status.success(), "{}", stdout(&out));
}
