//! The issue's concurrency requirement on the embedded store: 4 allocators, 1,000 allocations
//! each, at the same time against one store (the store is owned by one process, so the
//! allocators are concurrent tasks). No address may be handed out twice, and every
//! allocation must be accounted for in the store afterwards.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::{AllocationRequest, Handle, Ipam};
use store::Store;

const SEED: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: kubernetes}
spec: {cidr: 192.168.0.0/17, nodeSelector: "coe == 'kubernetes'"}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: dcos}
spec: {cidr: 192.168.128.0/17, nodeSelector: "coe == 'dcos'"}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-1, labels: {coe: kubernetes}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: k8s-2, labels: {coe: kubernetes}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: dcos-1, labels: {coe: dcos}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_allocators_times_1000_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store::EmbeddedStore::open(&dir.path().join("seam.redb")).await.unwrap());
    let docs = resources::parse_documents(SEED, "seed.yaml").unwrap();
    resources::apply(&*store, docs).await.unwrap();

    let started = Instant::now();
    let mut tasks = Vec::new();
    // Two allocators share k8s-1 (they race on the same blocks), one each on k8s-2 and dcos-1.
    for (t, node) in ["k8s-1", "k8s-1", "k8s-2", "dcos-1"].into_iter().enumerate() {
        let ipam = Ipam::new(store.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(1000);
            for i in 0..1000 {
                let handle = Handle::new(&format!("alloc{t}-{i}"), "eth0").unwrap();
                let a = ipam.allocate(AllocationRequest::new(node, handle.clone())).await.unwrap();
                assert_eq!(a.ips.len(), 1);
                got.push((handle.id(), a.ips[0].ip));
            }
            got
        }));
    }
    let mut by_ip: HashMap<IpAddr, String> = HashMap::new();
    for t in tasks {
        for (handle, ip) in t.await.unwrap() {
            if let Some(other) = by_ip.insert(ip, handle.clone()) {
                panic!("{ip} handed out to both {other} and {handle}");
            }
        }
    }
    assert_eq!(by_ip.len(), 4000);
    eprintln!("4 x 1000 allocations in {:?}", started.elapsed());

    // Every allocation is in the store, under the handle it was returned to, and nothing else.
    let ipam = Ipam::new(store.clone()).with_check_grace(Duration::from_secs(3600));
    let check = ipam.check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(check.allocations, 4000);
    assert_eq!(check.handles, 4000);
    let (blocks, _) = store.list("/seam/v1/ipam/blocks/").await.unwrap();
    let mut stored = HashSet::new();
    for kv in blocks {
        let b: ipam::Block = serde_json::from_slice(&kv.value).unwrap();
        for (o, slot) in &b.allocations {
            let ip = b.ip_at(*o);
            assert_eq!(by_ip.get(&ip), Some(&slot.handle), "{ip} in the store belongs to another handle");
            stored.insert(ip);
        }
        if b.pool.to_string() == "192.168.128.0/17" {
            assert_eq!(b.affinity.as_deref(), Some("dcos-1"));
        }
    }
    assert_eq!(stored.len(), 4000);
    // The dcos node drew only from its own pool.
    let report = ipam.show().await.unwrap();
    let dcos = report.pools.iter().find(|p| p.name.as_deref() == Some("dcos")).unwrap();
    assert_eq!(dcos.used, 1000);
}
