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
