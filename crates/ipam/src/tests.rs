//! IPAM behaviour over the embedded store (a redb file in a tempdir per test).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::audit::Problem;

/// A fresh embedded store in its own tempdir (kept alive by the returned guard).
async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = store::EmbeddedStore::open(&dir.path().join("seam.redb")).await.unwrap();
    (Arc::new(s), dir)
}

async fn put_json(store: &dyn Store, key: String, value: serde_json::Value) {
    store.put(&key, serde_json::to_vec(&value).unwrap(), Condition::Always).await.unwrap();
}

async fn pool(store: &dyn Store, name: &str, cidr: &str, extra: serde_json::Value) {
    let mut spec = json!({ "cidr": cidr });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    put_json(
        store,
        resources::key(resources::Kind::IPPool, None, name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
}

async fn node(store: &dyn Store, name: &str, coe: &str) {
    put_json(
        store,
        resources::key(resources::Kind::Node, None, name),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Node",
               "metadata": {"name": name, "labels": {"coe": coe}}, "spec": {}}),
    )
    .await;
}

async fn endpoint(store: &dyn Store, node: &str, container: &str) {
    put_json(
        store,
        resources::key(resources::Kind::WorkloadEndpoint, Some("default"), container),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
               "metadata": {"name": container, "namespace": "default"},
               "spec": {"node": node, "orchestrator": "k8s", "containerID": container, "endpoint": "eth0"}}),
    )
    .await;
}

/// The seed's two pools: one per orchestrator, chosen by the node's `coe` label.
async fn seed_pools(store: &dyn Store) {
    pool(store, "k8s", "192.168.0.0/17", json!({"nodeSelector": "coe == 'kubernetes'"})).await;
    pool(store, "dcos", "192.168.128.0/17", json!({"nodeSelector": "coe == 'dcos'"})).await;
}

fn h(c: &str) -> Handle {
    Handle::new(c, "eth0").unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[tokio::test]
async fn seed_pools_are_chosen_by_node_selector() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    node(&*s, "dcos-1", "dcos").await;
    let ipam = Ipam::new(s.clone());

    let a = ipam.allocate(AllocationRequest::new("k8s-1", h("c1"))).await.unwrap();
    let b = ipam.allocate(AllocationRequest::new("dcos-1", h("c2"))).await.unwrap();
    assert_eq!(a.ips.len(), 1);
    assert_eq!(a.ips[0].pool, net("192.168.0.0/17"));
    assert_eq!(a.ips[0].block, net("192.168.0.0/26"));
    assert_eq!(b.ips[0].pool, net("192.168.128.0/17"));
    assert_eq!(b.ips[0].block, net("192.168.128.0/26"));

    let blocks = ipam.node_blocks("k8s-1").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].cidr, net("192.168.0.0/26"));
    assert_eq!(blocks[0].used, 1);
    assert_eq!(blocks[0].size, 64);

    // A node no pool selects gets a clear error.
    node(&*s, "nomad-1", "nomad").await;
    let err = ipam.allocate(AllocationRequest::new("nomad-1", h("c3"))).await.unwrap_err();
    assert!(matches!(err, IpamError::NoPool { family: 4, .. }), "{err}");
    let err = ipam.allocate(AllocationRequest::new("ghost", h("c4"))).await.unwrap_err();
    assert!(matches!(err, IpamError::NodeNotFound(_)), "{err}");
}

#[tokio::test]
async fn a_full_block_makes_the_node_claim_another() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    node(&*s, "k8s-2", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let mut seen = std::collections::HashSet::new();
    for i in 0..65 {
        let a = ipam.allocate(AllocationRequest::new("k8s-1", h(&format!("c{i}")))).await.unwrap();
        assert!(seen.insert(a.ips[0].ip), "{} handed out twice", a.ips[0].ip);
    }
    let blocks: Vec<IpNet> = ipam.node_blocks("k8s-1").await.unwrap().iter().map(|b| b.cidr).collect();
    assert_eq!(blocks, vec![net("192.168.0.0/26"), net("192.168.0.64/26")]);
    // Another node claims its own block rather than sharing.
    let a = ipam.allocate(AllocationRequest::new("k8s-2", h("other"))).await.unwrap();
    assert_eq!(a.ips[0].block, net("192.168.0.128/26"));
    assert!(ipam.check().await.unwrap().severe().next().is_none());
}

#[tokio::test]
async fn borrowing_only_when_no_free_block_and_never_with_strict_affinity() {
    let (s, _d) = store().await;
    // Room for exactly two /26 blocks.
    pool(&*s, "small", "10.1.0.0/25", json!({})).await;
    node(&*s, "a", "x").await;
    node(&*s, "b", "x").await;
    let ipam = Ipam::new(s.clone());
    ipam.allocate(AllocationRequest::new("b", h("b0"))).await.unwrap();
    for i in 0..64 {
        let a = ipam.allocate(AllocationRequest::new("a", h(&format!("a{i}")))).await.unwrap();
        assert_eq!(a.ips[0].block, net("10.1.0.64/26"), "a fills its own block first");
    }
    // a's block is full and no free block is left: borrow from b's.
    let borrowed = ipam.allocate(AllocationRequest::new("a", h("a64"))).await.unwrap();
    assert_eq!(borrowed.ips[0].block, net("10.1.0.0/26"));
    let b_block = &ipam.node_blocks("b").await.unwrap()[0];
    assert_eq!(b_block.used, 2);

    ipam.set_config(&IpamConfig { strict_affinity: true }).await.unwrap();
    let err = ipam.allocate(AllocationRequest::new("a", h("a65"))).await.unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("strictAffinity"), "{err}");
    // b still allocates from its own block.
    ipam.allocate(AllocationRequest::new("b", h("b1"))).await.unwrap();

    // Fill everything: exhaustion without strict affinity too.
    ipam.set_config(&IpamConfig { strict_affinity: false }).await.unwrap();
    for i in 0..61 {
        ipam.allocate(AllocationRequest::new("a", h(&format!("fill{i}")))).await.unwrap();
    }
    let err = ipam.allocate(AllocationRequest::new("a", h("last"))).await.unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { hint: "", .. }), "{err}");
}

#[tokio::test]
async fn allocate_and_release_are_idempotent() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let mut req = AllocationRequest::new("k8s-1", h("c1"));
    req.attributes.insert(ATTR_NAMESPACE.into(), "default".into());
    req.attributes.insert(ATTR_POD.into(), "web-0".into());
    req.attributes.insert(ATTR_ORCHESTRATOR.into(), "k8s".into());
    let first = ipam.allocate(req.clone()).await.unwrap();
    let again = ipam.allocate(req.clone()).await.unwrap();
    assert_eq!(first, again);
    let (block, _) = read::<Block>(&*s, &keys::block_key(&first.ips[0].block)).await.unwrap().unwrap();
    assert_eq!(block.used(), 1);
    let slot = block.allocations.values().next().unwrap();
    assert_eq!(slot.handle, "c1.eth0");
    assert_eq!(slot.attributes.get("pod").map(String::as_str), Some("web-0"));

    assert_eq!(ipam.release(&h("c1")).await.unwrap(), vec![first.ips[0].ip]);
    assert_eq!(ipam.release(&h("c1")).await.unwrap(), Vec::<IpAddr>::new());
    assert!(s.get(&keys::handle_key("c1.eth0")).await.unwrap().is_none());
    assert_eq!(ipam.node_blocks("k8s-1").await.unwrap()[0].used, 0, "the node keeps its empty block");
}

#[tokio::test]
async fn dual_stack_and_ipv6_blocks() {
    let (s, _d) = store().await;
    pool(&*s, "v4", "10.0.0.0/16", json!({})).await;
    pool(&*s, "v6", "fd00:10::/48", json!({})).await;
    node(&*s, "n1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let mut req = AllocationRequest::new("n1", h("c1"));
    req.num_ipv6 = 1;
    let a = ipam.allocate(req.clone()).await.unwrap();
    assert_eq!(a.ips.len(), 2);
    assert!(a.ips[0].ip.is_ipv4());
    assert_eq!(a.ips[1].block, net("fd00:10::/122"));
    assert_eq!(a.ips[1].ip, "fd00:10::".parse::<IpAddr>().unwrap());
    // Idempotent across families; a request for more adds only the difference.
    req.num_ipv6 = 2;
    let b = ipam.allocate(req).await.unwrap();
    assert_eq!(b.ips.len(), 3);
    assert_eq!(&b.ips[..2], &a.ips[..]);
    let released = ipam.release(&h("c1")).await.unwrap();
    assert_eq!(released.len(), 3);
}

#[tokio::test]
async fn disabled_pools_drain_without_breaking_allocations() {
    let (s, _d) = store().await;
    pool(&*s, "old", "10.0.0.0/24", json!({})).await;
    node(&*s, "n1", "x").await;
    let ipam = Ipam::new(s.clone());
    let kept = ipam.allocate(AllocationRequest::new("n1", h("kept"))).await.unwrap();
    let gone = ipam.allocate(AllocationRequest::new("n1", h("gone"))).await.unwrap();
    assert_eq!(kept.ips[0].block, net("10.0.0.0/26"));

    pool(&*s, "old", "10.0.0.0/24", json!({"disabled": true})).await;
    let err = ipam.allocate(AllocationRequest::new("n1", h("new"))).await.unwrap_err();
    assert!(matches!(err, IpamError::NoPool { .. }), "{err}");
    // A replacement pool takes new allocations; the old ones stay where they are.
    pool(&*s, "new", "10.9.0.0/24", json!({})).await;
    let fresh = ipam.allocate(AllocationRequest::new("n1", h("new"))).await.unwrap();
    assert_eq!(fresh.ips[0].pool, net("10.9.0.0/24"));
    assert_eq!(ipam.allocate(AllocationRequest::new("n1", h("kept"))).await.unwrap(), kept);

    // Releasing the last address of the drained pool returns its block.
    ipam.release(&h("gone")).await.unwrap();
    assert_eq!(ipam.node_blocks("n1").await.unwrap().len(), 2);
    assert_eq!(ipam.release(&h("kept")).await.unwrap(), vec![kept.ips[0].ip]);
    let blocks: Vec<IpNet> = ipam.node_blocks("n1").await.unwrap().iter().map(|b| b.cidr).collect();
    assert_eq!(blocks, vec![net("10.9.0.0/26")]);
    let _ = gone;
    let report = ipam.show().await.unwrap();
    let old = report.pools.iter().find(|p| p.name.as_deref() == Some("old")).unwrap();
    assert!(old.disabled);
    assert_eq!((old.blocks, old.used), (0, 0));
}

#[tokio::test]
async fn check_finds_leaks_and_gc_respects_the_grace_period() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock_now = now.clone();
    let clock: Arc<dyn Fn() -> SystemTime + Send + Sync> =
        Arc::new(move || SystemTime::UNIX_EPOCH + Duration::from_secs(clock_now.load(Ordering::SeqCst)));
    let ipam = Ipam::new(s.clone()).with_clock(clock).with_check_grace(Duration::from_secs(600));
    let live = ipam.allocate(AllocationRequest::new("k8s-1", h("live"))).await.unwrap();
    let leaked = ipam.allocate(AllocationRequest::new("k8s-1", h("leaked"))).await.unwrap();
    endpoint(&*s, "k8s-1", "live").await;

    // Young allocations are in-flight CNI ADDs, not leaks.
    assert!(ipam.check().await.unwrap().is_clean());
    let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let report = ipam.gc(Duration::from_secs(600), t(1_000_100)).await.unwrap();
    assert!(report.released_ips.is_empty());

    now.store(1_000_700, Ordering::SeqCst);
    let check = ipam.check().await.unwrap();
    assert_eq!(check.leaks(), 1, "{:?}", check.problems);
    assert!(matches!(&check.problems[0], Problem::LeakedIp { handle, .. } if handle == "leaked.eth0"));
    let report = ipam.gc(Duration::from_secs(600), t(1_000_700)).await.unwrap();
    assert_eq!(report.released_ips, vec![(leaked.ips[0].ip, "leaked.eth0".to_string())]);
    assert_eq!(report.deleted_handles, vec!["leaked.eth0".to_string()]);
    assert!(ipam.check().await.unwrap().is_clean());
    // The live one survived.
    assert_eq!(ipam.allocate(AllocationRequest::new("k8s-1", h("live"))).await.unwrap(), live);
}

#[tokio::test]
async fn deleted_nodes_release_their_blocks() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    for i in 0..65 {
        ipam.allocate(AllocationRequest::new("k8s-1", h(&format!("c{i}")))).await.unwrap();
    }
    ipam.release(&h("c64")).await.unwrap(); // leaves the second block empty
    s.delete(&resources::key(resources::Kind::Node, None, "k8s-1"), Condition::Always).await.unwrap();

    let check = ipam.check().await.unwrap();
    assert!(check.problems.iter().any(|p| matches!(p, Problem::OrphanBlock { used: 64, .. })), "{check:?}");
    let summary = release_node(&*s, "k8s-1").await.unwrap();
    assert_eq!(summary.blocks_released, vec![net("192.168.0.64/26")]);
    assert_eq!(summary.blocks_orphaned, vec![net("192.168.0.0/26")]);
    assert_eq!(release_node(&*s, "k8s-1").await.unwrap(), ReleaseSummary::default(), "idempotent");
    assert!(s.list(&keys::affinity_prefix("k8s-1")).await.unwrap().0.is_empty());

    // Its workloads are gone too: gc frees their addresses and then the block itself.
    let report = ipam.gc(Duration::ZERO, SystemTime::now()).await.unwrap();
    assert_eq!(report.released_ips.len(), 64);
    assert_eq!(report.deleted_blocks, vec![net("192.168.0.0/26")]);
    assert!(s.list(keys::BLOCKS).await.unwrap().0.is_empty());
    assert!(s.list(keys::HANDLES).await.unwrap().0.is_empty());
    assert!(ipam.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn gc_detaches_blocks_of_deleted_nodes_without_release_node() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    ipam.allocate(AllocationRequest::new("k8s-1", h("c1"))).await.unwrap();
    endpoint(&*s, "k8s-1", "c1").await;
    s.delete(&resources::key(resources::Kind::Node, None, "k8s-1"), Condition::Always).await.unwrap();
    let report = ipam.gc(Duration::ZERO, SystemTime::now()).await.unwrap();
    assert_eq!(report.orphaned_blocks, vec![net("192.168.0.0/26")]);
    assert!(report.released_ips.is_empty(), "the endpoint is still live");
    assert!(ipam.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn crash_leftovers_are_found_and_repaired() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let a = ipam.allocate(AllocationRequest::new("k8s-1", h("indexed"))).await.unwrap();
    endpoint(&*s, "k8s-1", "indexed").await;
    endpoint(&*s, "k8s-1", "unindexed").await;
    let block_cidr = a.ips[0].block;
    // Crash after the handle record, before the block write: a handle that holds nothing.
    let rec = HandleRecord { handle: "pending.eth0".into(), node: "k8s-1".into(), blocks: [block_cidr].into(), created_at: 0 };
    s.put(&keys::handle_key("pending.eth0"), encode(&rec), Condition::Absent).await.unwrap();
    // An allocation whose handle record is gone (live endpoint: must be re-indexed, not freed).
    let bkey = keys::block_key(&block_cidr);
    let (mut block, rev) = read::<Block>(&*s, &bkey).await.unwrap().unwrap();
    let ip = block.allocate("unindexed.eth0", &BTreeMap::new(), 0).unwrap();
    s.put(&bkey, encode(&block), Condition::Revision(rev)).await.unwrap();
    // Crash during a claim: an affinity without its block; and a block without its affinity.
    let stale = AffinityRecord { node: "k8s-1".into(), block: net("192.168.1.0/26"), created_at: 0 };
    s.put(&keys::affinity_key("k8s-1", &stale.block), encode(&stale), Condition::Absent).await.unwrap();
    s.delete(&keys::affinity_key("k8s-1", &block_cidr), Condition::Always).await.unwrap();

    let check = ipam.with_check_grace(Duration::ZERO).check().await.unwrap();
    let kinds: BTreeSet<String> = check
        .problems
        .iter()
        .map(|p| serde_json::to_value(p).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    let expect: BTreeSet<String> =
        ["emptyHandle", "unindexedAllocation", "staleAffinity", "missingAffinity"].iter().map(|s| s.to_string()).collect();
    assert_eq!(kinds, expect, "{:?}", check.problems);
    assert_eq!(check.severe().count(), 0);

    let ipam = Ipam::new(s.clone());
    let report = ipam.gc(Duration::ZERO, SystemTime::now()).await.unwrap();
    assert_eq!(report.deleted_handles, vec!["pending.eth0".to_string()]);
    assert_eq!(report.reindexed_handles, vec!["unindexed.eth0".to_string()]);
    assert_eq!(report.deleted_affinities, vec![("k8s-1".to_string(), net("192.168.1.0/26"))]);
    assert_eq!(report.restored_affinities, vec![("k8s-1".to_string(), block_cidr)]);
    let check = ipam.clone().with_check_grace(Duration::ZERO).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    // Release by handle now finds the re-indexed address.
    assert_eq!(ipam.release(&h("unindexed")).await.unwrap(), vec![ip]);
}

#[tokio::test]
async fn overlapping_blocks_are_reported_as_double_allocation_and_stop_gc() {
    let (s, _d) = store().await;
    pool(&*s, "p", "10.0.0.0/16", json!({})).await;
    node(&*s, "n1", "x").await;
    let attrs = BTreeMap::new();
    let mut big = Block::new(net("10.0.0.0/25"), net("10.0.0.0/16"), Some("n1".into()));
    big.allocate("one.eth0", &attrs, 0).unwrap();
    let mut small = Block::new(net("10.0.0.0/26"), net("10.0.0.0/16"), Some("n1".into()));
    small.allocate("two.eth0", &attrs, 0).unwrap();
    s.put(&keys::block_key(&big.cidr), encode(&big), Condition::Absent).await.unwrap();
    s.put(&keys::block_key(&small.cidr), encode(&small), Condition::Absent).await.unwrap();
    s.put(&keys::block_key(&net("10.0.1.0/26")), b"{not json".to_vec(), Condition::Absent).await.unwrap();
    let ipam = Ipam::new(s.clone());
    let check = ipam.check().await.unwrap();
    assert_eq!(check.double_allocations(), 1, "{:?}", check.problems);
    assert!(check.problems.iter().any(|p| matches!(p, Problem::Corrupt { key, .. } if key.ends_with("10.0.1.0-26"))));
    let err = ipam.gc(Duration::ZERO, SystemTime::now()).await.unwrap_err();
    assert!(err.to_string().contains("refusing to gc"), "{err}");
}

#[tokio::test]
async fn bad_pools_and_handles_are_named_in_errors() {
    let (s, _d) = store().await;
    pool(&*s, "broken", "10.0.0.0/16", json!({"blockSize": 8})).await;
    node(&*s, "n1", "x").await;
    let ipam = Ipam::new(s.clone());
    let err = ipam.allocate(AllocationRequest::new("n1", h("c"))).await.unwrap_err();
    assert!(err.to_string().contains("ippools/broken") && err.to_string().contains("blockSize"), "{err}");
    pool(&*s, "broken", "10.0.0.0/16", json!({"nodeSelector": "coe =="})).await;
    let err = ipam.allocate(AllocationRequest::new("n1", h("c"))).await.unwrap_err();
    assert!(err.to_string().contains("ippools/broken") && err.to_string().contains("nodeSelector"), "{err}");
    assert!(Handle::new("a/b", "eth0").is_err());
    assert!(Handle::new("abc", "").is_err());
    assert_eq!(Handle::parse("abc.def.eth0").unwrap(), Handle::new("abc.def", "eth0").unwrap());
}

#[tokio::test]
async fn concurrent_allocators_never_share_an_address() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    node(&*s, "k8s-2", "kubernetes").await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let ipam = Ipam::new(s.clone());
        // Two allocators per node, so they also race on the same blocks.
        let node = if t % 2 == 0 { "k8s-1" } else { "k8s-2" };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..100 {
                let a = ipam.allocate(AllocationRequest::new(node, h(&format!("t{t}-{i}")))).await.unwrap();
                got.push(a.ips[0].ip);
            }
            got
        }));
    }
    let mut all = std::collections::HashSet::new();
    for t in tasks {
        for ip in t.await.unwrap() {
            assert!(all.insert(ip), "{ip} handed out twice");
        }
    }
    assert_eq!(all.len(), 400);
    let check = Ipam::new(s.clone()).with_check_grace(Duration::from_secs(3600)).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(check.allocations, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_running_alongside_allocators_takes_nothing_in_use() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_ipam = Ipam::new(s.clone());
    let gc_done = done.clone();
    let gc_task = tokio::spawn(async move {
        let mut runs = 0;
        while !gc_done.load(Ordering::SeqCst) {
            // Young allocations are protected by the grace period, index entries by CAS.
            let r = gc_ipam.gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
            assert!(r.released_ips.is_empty() && r.deleted_blocks.is_empty(), "{r:?}");
            runs += 1;
        }
        runs
    });
    let mut tasks = Vec::new();
    for t in 0..2 {
        let ipam = Ipam::new(s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let c = format!("g{t}-{i}");
                ipam.allocate(AllocationRequest::new("k8s-1", h(&c))).await.unwrap();
                if i % 3 == 0 {
                    assert_eq!(ipam.release(&h(&c)).await.unwrap().len(), 1);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(gc_task.await.unwrap() > 0);
    let check = Ipam::new(s.clone()).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(check.allocations, 200);
    assert_eq!(check.handles, 200);
}

// ---------------------------------------------------------------------------------------------
// Interleavings, driven deterministically: one operation runs over a store that stops it just
// before a chosen call and runs another operation (on the unwrapped store) in that gap.

/// Which store call an injected action runs before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Get,
    Put,
    Delete,
    List,
}

type Action = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One injected action: runs before the `nth` call of kind `call` on exactly `key` (the prefix,
/// for a list).
struct Trigger {
    call: Call,
    key: String,
    remaining: usize,
    action: Option<Action>,
}

/// A store that pauses the operation using it at chosen calls and runs another operation to
/// completion there, so a race that needs one exact interleaving is reproduced every time
/// instead of once in a few hundred runs.
struct PausingStore {
    inner: Arc<dyn Store>,
    triggers: std::sync::Mutex<Vec<Trigger>>,
}

impl PausingStore {
    fn new(inner: Arc<dyn Store>) -> PausingStore {
        PausingStore { inner, triggers: std::sync::Mutex::new(Vec::new()) }
    }

    /// Run `action` just before the `nth` (1-based) `call` on `key`.
    fn before(self, call: Call, key: &str, nth: usize, action: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        self.triggers.lock().unwrap().push(Trigger { call, key: key.to_string(), remaining: nth, action: Some(Box::pin(action)) });
        self
    }

    /// Triggers whose call never came (the test's interleaving did not happen).
    fn unfired(&self) -> Vec<String> {
        self.triggers
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.action.is_some())
            .map(|t| format!("{:?} {} (#{} to go)", t.call, t.key, t.remaining))
            .collect()
    }

    async fn pause(&self, call: Call, key: &str) {
        let due: Vec<Action> = {
            let mut triggers = self.triggers.lock().unwrap();
            let mut due = Vec::new();
            for t in triggers.iter_mut().filter(|t| t.call == call && t.key == key && t.action.is_some()) {
                t.remaining -= 1;
                if t.remaining == 0 {
                    due.extend(t.action.take());
                }
            }
            due
        };
        for action in due {
            action.await;
        }
    }
}

#[async_trait::async_trait]
impl Store for PausingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.pause(Call::Get, key).await;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, condition: Condition) -> Result<Revision, StoreError> {
        self.pause(Call::Put, key).await;
        self.inner.put(key, value, condition).await
    }
    async fn delete(&self, key: &str, condition: Condition) -> Result<Option<Revision>, StoreError> {
        self.pause(Call::Delete, key).await;
        self.inner.delete(key, condition).await
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        self.pause(Call::List, prefix).await;
        self.inner.list(prefix).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<store::WatchReceiver, StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
}

/// Shared slot an injected action writes its result to.
type Out<T> = Arc<std::sync::Mutex<Option<T>>>;

fn out<T>() -> Out<T> {
    Arc::new(std::sync::Mutex::new(None))
}

/// An action that releases `container` through `ipam` and records what it freed.
fn releasing(ipam: &Ipam, container: &str, freed: &Out<Vec<IpAddr>>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (ipam, handle, freed) = (ipam.clone(), h(container), freed.clone());
    async move {
        let ips = ipam.release(&handle).await.unwrap();
        *freed.lock().unwrap() = Some(ips);
    }
}

/// The flaky `gc_running_alongside_allocators_takes_nothing_in_use`, pinned down: gc lists
/// blocks (the handle still holds its address), the handle is released (block freed, record
/// deleted), gc lists handles (no record) and took the allocation for an unindexed one,
/// re-creating the record of a finished release.
#[tokio::test]
async fn gc_does_not_resurrect_a_handle_released_between_its_reads() {
    // Either of gc's two passes over the handles may be the one the release slips before.
    for nth in 1..=2 {
        let (s, _d) = store().await;
        seed_pools(&*s).await;
        node(&*s, "k8s-1", "kubernetes").await;
        let ipam = Ipam::new(s.clone());
        let gone = ipam.allocate(AllocationRequest::new("k8s-1", h("gone"))).await.unwrap();
        ipam.allocate(AllocationRequest::new("k8s-1", h("kept"))).await.unwrap();

        let freed = out();
        let paused = Arc::new(PausingStore::new(s.clone()).before(Call::List, keys::HANDLES, nth, releasing(&ipam, "gone", &freed)));
        let report = Ipam::new(paused.clone()).gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
        assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
        assert_eq!(freed.lock().unwrap().take(), Some(vec![gone.ips[0].ip]));

        assert!(report.reindexed_handles.is_empty(), "pass {nth}: {report:?}");
        assert!(s.get(&keys::handle_key("gone.eth0")).await.unwrap().is_none(), "pass {nth}: gc re-created a released handle");
        let check = ipam.clone().with_check_grace(Duration::ZERO).check().await.unwrap();
        assert_eq!((check.allocations, check.handles), (1, 1), "pass {nth}: {:?}", check.problems);
    }
}

/// gc listed the blocks (one still held an address), a release emptied the block of a
/// disabled pool and so deleted it and its affinity, gc listed the affinities (none): gc must
/// not write the affinity back for a block that no longer exists.
#[tokio::test]
async fn gc_does_not_restore_the_affinity_of_a_block_released_between_its_reads() {
    for nth in 1..=2 {
        let (s, _d) = store().await;
        pool(&*s, "old", "10.0.0.0/24", json!({})).await;
        node(&*s, "n1", "x").await;
        let ipam = Ipam::new(s.clone());
        let a = ipam.allocate(AllocationRequest::new("n1", h("last"))).await.unwrap();
        pool(&*s, "old", "10.0.0.0/24", json!({"disabled": true})).await;

        let freed = out();
        let paused = Arc::new(PausingStore::new(s.clone()).before(Call::List, keys::AFFINITY, nth, releasing(&ipam, "last", &freed)));
        let report = Ipam::new(paused.clone()).gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
        assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
        assert_eq!(freed.lock().unwrap().take(), Some(vec![a.ips[0].ip]));

        assert!(report.restored_affinities.is_empty(), "pass {nth}: {report:?}");
        assert!(s.list(keys::BLOCKS).await.unwrap().0.is_empty(), "the drained pool's block went back");
        assert!(s.list(keys::AFFINITY).await.unwrap().0.is_empty(), "pass {nth}: affinity restored for a deleted block");
        let check = ipam.clone().with_check_grace(Duration::ZERO).check().await.unwrap();
        assert!(check.is_clean(), "pass {nth}: {:?}", check.problems);
    }
}

/// gc found an affinity record with no block (a claim that looked crashed), re-read the block
/// (absent), and the claim created it just before gc's delete: gc must notice and put the
/// record back, or the node never sees its own block.
#[tokio::test]
async fn gc_puts_back_an_affinity_whose_claim_completed_during_the_delete() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let cidr = net("192.168.0.0/26");
    let akey = keys::affinity_key("k8s-1", &cidr);
    let rec = AffinityRecord { node: "k8s-1".into(), block: cidr, created_at: 0 };
    s.put(&akey, encode(&rec), Condition::Absent).await.unwrap();

    let finish_claim = {
        let s = s.clone();
        async move {
            let block = Block::new(cidr, net("192.168.0.0/17"), Some("k8s-1".into()));
            s.put(&keys::block_key(&cidr), encode(&block), Condition::Absent).await.unwrap();
        }
    };
    let paused = Arc::new(PausingStore::new(s.clone()).before(Call::Delete, &akey, 1, finish_claim));
    let report = Ipam::new(paused.clone()).gc(Duration::ZERO, SystemTime::now()).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    assert!(report.deleted_affinities.is_empty(), "{report:?}");

    let ipam = Ipam::new(s.clone());
    assert_eq!(ipam.node_blocks("k8s-1").await.unwrap().iter().map(|b| b.cidr).collect::<Vec<_>>(), vec![cidr]);
    let check = ipam.with_check_grace(Duration::ZERO).check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
}

/// The claim's side of the same race: its affinity record is removed (by a gc or release that
/// had not seen the block yet) between the claim's two writes. The claim re-reads the record
/// after creating the block and restores it.
#[tokio::test]
async fn a_claim_restores_its_affinity_removed_between_its_writes() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let cidr = net("192.168.0.0/26");
    let drop_record = {
        let s = s.clone();
        async move {
            s.delete(&keys::affinity_key("k8s-1", &cidr), Condition::Always).await.unwrap();
        }
    };
    let paused = Arc::new(PausingStore::new(s.clone()).before(Call::Put, &keys::block_key(&cidr), 1, drop_record));
    let a = Ipam::new(paused.clone()).allocate(AllocationRequest::new("k8s-1", h("c1"))).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    assert_eq!(a.ips[0].block, cidr);

    let ipam = Ipam::new(s.clone());
    assert_eq!(ipam.node_blocks("k8s-1").await.unwrap().iter().map(|b| b.cidr).collect::<Vec<_>>(), vec![cidr]);
    let check = ipam.check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
}

/// A retried ADD finds an old handle record that already lists the block, so it writes only
/// the block. If gc deletes that record as empty just before the block write, the allocation
/// would be unindexed (release by handle would miss it): allocate re-reads the record after
/// the block write and indexes the address again.
#[tokio::test]
async fn allocate_reindexes_when_gc_deletes_the_old_record_it_reused() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let kept = ipam.allocate(AllocationRequest::new("k8s-1", h("kept"))).await.unwrap();
    let cidr = kept.ips[0].block;
    // An ADD that crashed after its handle record, long ago: the record holds nothing.
    let rec = HandleRecord { handle: "retry.eth0".into(), node: "k8s-1".into(), blocks: [cidr].into(), created_at: 0 };
    s.put(&keys::handle_key("retry.eth0"), encode(&rec), Condition::Absent).await.unwrap();

    let gc_report = out();
    let run_gc = {
        let (ipam, gc_report) = (ipam.clone(), gc_report.clone());
        async move {
            let r = ipam.gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
            *gc_report.lock().unwrap() = Some(r);
        }
    };
    let paused = Arc::new(PausingStore::new(s.clone()).before(Call::Put, &keys::block_key(&cidr), 1, run_gc));
    let a = Ipam::new(paused.clone()).allocate(AllocationRequest::new("k8s-1", h("retry"))).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    let r = gc_report.lock().unwrap().take().unwrap();
    assert_eq!(r.deleted_handles, vec!["retry.eth0".to_string()], "{r:?}");

    let check = ipam.check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!((check.allocations, check.handles), (2, 2));
    assert_eq!(ipam.release(&h("retry")).await.unwrap(), vec![a.ips[0].ip]);
}

/// gc found an old, empty handle record; a retried ADD reused it (writing only the block)
/// right before gc's delete. gc re-reads the blocks after deleting and writes the record back.
#[tokio::test]
async fn gc_reindexes_an_allocation_that_reused_the_record_it_deleted() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    let cidr = ipam.allocate(AllocationRequest::new("k8s-1", h("kept"))).await.unwrap().ips[0].block;
    let hkey = keys::handle_key("retry.eth0");
    let rec = HandleRecord { handle: "retry.eth0".into(), node: "k8s-1".into(), blocks: [cidr].into(), created_at: 0 };
    s.put(&hkey, encode(&rec), Condition::Absent).await.unwrap();

    let got = out();
    let retry_add = {
        let (ipam, got) = (ipam.clone(), got.clone());
        async move {
            let a = ipam.allocate(AllocationRequest::new("k8s-1", h("retry"))).await.unwrap();
            *got.lock().unwrap() = Some(a);
        }
    };
    let paused = Arc::new(PausingStore::new(s.clone()).before(Call::Delete, &hkey, 1, retry_add));
    let report = Ipam::new(paused.clone()).gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    assert!(report.deleted_handles.is_empty(), "{report:?}");

    let check = ipam.check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    let a = got.lock().unwrap().take().unwrap();
    assert_eq!(ipam.release(&h("retry")).await.unwrap(), vec![a.ips[0].ip]);
}

/// gc decides to index an allocation whose record is missing and writes the record; the
/// handle was released again just before that write. gc's next pass re-reads the block, finds
/// nothing, and takes back the record it wrote (CAS on its own revision).
#[tokio::test]
async fn gc_takes_back_a_record_it_wrote_for_a_release_that_beat_it() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    ipam.allocate(AllocationRequest::new("k8s-1", h("kept"))).await.unwrap();
    let first = ipam.allocate(AllocationRequest::new("k8s-1", h("flap"))).await.unwrap();
    let cidr = first.ips[0].block;

    let (freed1, freed2, again) = (out(), out(), out());
    let re_add = {
        let (ipam, again) = (ipam.clone(), again.clone());
        async move {
            let a = ipam.allocate(AllocationRequest::new("k8s-1", h("flap"))).await.unwrap();
            *again.lock().unwrap() = Some(a);
        }
    };
    let paused = Arc::new(
        PausingStore::new(s.clone())
            // Between gc's block and handle listings: the handle is released...
            .before(Call::List, keys::HANDLES, 2, releasing(&ipam, "flap", &freed1))
            // ...added again while gc checks the block (gc sees it held, record absent)...
            .before(Call::Get, &keys::block_key(&cidr), 1, re_add)
            // ...and released again just before gc writes the record.
            .before(Call::Put, &keys::handle_key("flap.eth0"), 1, releasing(&ipam, "flap", &freed2)),
    );
    let report = Ipam::new(paused.clone()).gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    let again = again.lock().unwrap().take().unwrap();
    assert_eq!(freed1.lock().unwrap().take(), Some(vec![first.ips[0].ip]));
    assert_eq!(freed2.lock().unwrap().take(), Some(vec![again.ips[0].ip]));

    assert!(report.reindexed_handles.is_empty(), "{report:?}");
    assert!(s.get(&keys::handle_key("flap.eth0")).await.unwrap().is_none(), "gc kept a record for a released handle");
    let check = ipam.clone().with_check_grace(Duration::ZERO).check().await.unwrap();
    assert_eq!((check.allocations, check.handles), (1, 1), "{:?}", check.problems);
}

/// A retried ADD adds a block to an old handle record (so it writes the record and does not
/// re-read it afterwards); a gc running before the block write must not delete that record as
/// an old empty one. Writing the record restarts its grace period.
#[tokio::test]
async fn gc_leaves_an_old_record_an_allocation_just_wrote_alone() {
    let (s, _d) = store().await;
    seed_pools(&*s).await;
    node(&*s, "k8s-1", "kubernetes").await;
    let ipam = Ipam::new(s.clone());
    // Long ago this handle's ADD indexed a block it never got an address in (now gone).
    let rec = HandleRecord { handle: "retry.eth0".into(), node: "k8s-1".into(), blocks: [net("192.168.5.0/26")].into(), created_at: 0 };
    s.put(&keys::handle_key("retry.eth0"), encode(&rec), Condition::Absent).await.unwrap();

    let gc_report = out();
    let run_gc = {
        let (ipam, gc_report) = (ipam.clone(), gc_report.clone());
        async move {
            let r = ipam.gc(Duration::from_secs(3600), SystemTime::now()).await.unwrap();
            *gc_report.lock().unwrap() = Some(r);
        }
    };
    // The first write to the block key is the claim; the second takes the address.
    let bkey = keys::block_key(&net("192.168.0.0/26"));
    let paused = Arc::new(PausingStore::new(s.clone()).before(Call::Put, &bkey, 2, run_gc));
    let a = Ipam::new(paused.clone()).allocate(AllocationRequest::new("k8s-1", h("retry"))).await.unwrap();
    assert!(paused.unfired().is_empty(), "{:?}", paused.unfired());
    let r = gc_report.lock().unwrap().take().unwrap();
    assert!(r.deleted_handles.is_empty(), "{r:?}");

    let check = ipam.check().await.unwrap();
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(ipam.release(&h("retry")).await.unwrap(), vec![a.ips[0].ip]);
}
