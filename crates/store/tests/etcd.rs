//! The conformance suite against real etcd (Debian's `etcd-server`, started here on loopback),
//! plus failure tests: a member restart under a live watch, and a 3-member cluster whose
//! leader is SIGKILLed while writes are in flight.
//!
//! Run with `cargo test -p store --features etcd`.
#![cfg(feature = "etcd")]

mod conformance;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::DynStore;
use store::{Condition, EtcdStore, StoreError, WatchEvent};

const ETCD: &str = "/usr/bin/etcd";

/// One etcd process we started. Killed (by PID, via `Child`) on drop, so a failing test
/// leaves nothing behind.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    initial_cluster: String,
    token: String,
    child: Option<Child>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(ETCD)
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--initial-cluster-token", &self.token])
            // Fast failure detection so a killed leader is replaced in about a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.child = Some(child);
    }

    /// SIGKILL (Child::kill) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn client(&self) -> etcd_client::Client {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        etcd_client::Client::connect([format!("http://{}", self.endpoint())], Some(opts))
            .await
            .unwrap()
    }

    /// Waits until this member serves linearizable reads (it has a leader and is caught up).
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = self.client().await;
        loop {
            if client.get("health-probe", None).await.is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!(
                    "etcd {} not healthy after 30s; log tail:\n{}",
                    self.name,
                    &log[log.len().saturating_sub(3000)..]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A set of members started together, with their data in one temporary directory.
struct Cluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(size: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // Hold all listeners until every port is chosen, so no two members get the same one.
        let listeners: Vec<TcpListener> = (0..size * 2)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("seam-store-test-{}-{}", std::process::id(), ports[0]);
        let mut members: Vec<Member> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| Member {
                data_dir: dir.path().join(format!("{name}.etcd")),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        for m in &members {
            m.wait_healthy().await;
        }
        Cluster { members, _dir: dir }
    }

    fn spec(&self, order: &[usize]) -> String {
        let eps: Vec<String> = order.iter().map(|&i| self.members[i].endpoint()).collect();
        format!("etcd://{}", eps.join(","))
    }

    /// Index of the current raft leader, as the members report it.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                if let Ok(st) = m.client().await.status().await {
                    if st.leader() != 0 && st.header().map(|h| h.member_id()) == Some(st.leader()) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The whole conformance suite, sequentially on one single-member cluster (compaction last,
/// since it is store-wide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_single_member() {
    let cluster = Cluster::start(1).await;
    let s: DynStore = store::open(&cluster.spec(&[0])).await.unwrap();
    conformance::basics(&s, "basics/").await;
    conformance::revisions_monotonic(&s, "mono/").await;
    conformance::cas_put(&s, "casput/").await;
    conformance::cas_delete(&s, "casdel/").await;
    conformance::list_prefix(&s, "list/").await;
    conformance::watch_ordering(&s, "wo/").await;
    conformance::watch_replay(&s, "wr/").await;
    conformance::watch_resume(&s, "wres/").await;
    conformance::concurrent_cas(&s, "ccas/", 6, 15).await;
    conformance::compaction(&s, "compact/").await;
}

#[tokio::test]
async fn unreachable_cluster_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    match store::open(&format!("etcd://127.0.0.1:{port}")).await {
        Err(StoreError::Backend {
            backend: "etcd",
            message,
        }) => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < Duration::from_secs(40));
}

/// SIGKILL the (only) member under a live watch, restart it, keep writing: the watch resumes by
/// itself with no lost and no duplicated event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_member_restart() {
    let mut cluster = Cluster::start(1).await;
    let s: DynStore = store::open(&cluster.spec(&[0])).await.unwrap();
    let (_, rev) = s.list("rs/").await.unwrap();
    let mut rx = s.watch("rs/", rev + 1).await.unwrap();
    let mut want = Vec::new();
    for i in 0..3u8 {
        want.push(s.put("rs/k", vec![i], Condition::Always).await.unwrap());
    }
    let got = conformance::take(&mut rx, 3).await;
    cluster.members[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.members[0].start();
    cluster.members[0].wait_healthy().await;
    for i in 3..6u8 {
        want.push(s.put("rs/k", vec![i], Condition::Always).await.unwrap());
    }
    let mut all = got;
    all.extend(conformance::take(&mut rx, 3).await);
    assert_eq!(all.iter().map(|e| e.revision()).collect::<Vec<_>>(), want);
    for (i, ev) in all.iter().enumerate() {
        assert!(matches!(ev, WatchEvent::Put(kv) if kv.value == vec![i as u8]));
    }
    conformance::assert_quiet(&mut rx).await;
}

/// What the writer got acknowledged: (key, value, revision).
type Acked = Arc<Mutex<Vec<(String, Vec<u8>, u64)>>>;

/// A 3-member cluster; the client lists the leader first so that both its requests and its
/// watch start on the leader; the leader is SIGKILLed while a writer is busy. No acknowledged
/// write may be lost, the client must fail over, the watch must resume without gap/duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_writes() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let order: Vec<usize> = std::iter::once(leader)
        .chain((0..3).filter(|&i| i != leader))
        .collect();
    let spec = cluster.spec(&order);
    let store::DatastoreSpec::Etcd(endpoints) = store::DatastoreSpec::parse(&spec).unwrap() else {
        unreachable!()
    };
    let etcd = Arc::new(EtcdStore::connect(&endpoints).await.unwrap());
    assert_eq!(etcd.current_endpoint(), cluster.members[leader].endpoint());
    let s: DynStore = etcd.clone();
    let start_rev = s.revision().await.unwrap();
    let mut rx = s.watch("ha/", start_rev + 1).await.unwrap();

    let acked: Acked = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (s, acked, stop, errors) = (s.clone(), acked.clone(), stop.clone(), errors.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A create-once item, retried with the same condition until it is known to exist.
                let key = format!("ha/item/{i:05}");
                let value = i.to_string().into_bytes();
                loop {
                    match s.put(&key, value.clone(), Condition::Absent).await {
                        Ok(rev) => {
                            acked
                                .lock()
                                .unwrap()
                                .push((key.clone(), value.clone(), rev));
                            break;
                        }
                        // An earlier attempt with unknown outcome did land: not acknowledged
                        // to us, but present.
                        Err(StoreError::Conflict { .. }) => break,
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                // A read-modify-CAS increment of one counter.
                loop {
                    let cur = match s.get("ha/counter").await {
                        Ok(c) => c,
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            continue;
                        }
                    };
                    let (n, cond) = match &cur {
                        None => (0u64, Condition::Absent),
                        Some(kv) => (
                            std::str::from_utf8(&kv.value).unwrap().parse().unwrap(),
                            Condition::Revision(kv.mod_revision),
                        ),
                    };
                    let value = (n + 1).to_string().into_bytes();
                    match s.put("ha/counter", value.clone(), cond).await {
                        Ok(rev) => {
                            acked
                                .lock()
                                .unwrap()
                                .push(("ha/counter".into(), value, rev));
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => {} // re-read (maybe our own unknown write)
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                }
                i += 1;
            }
        })
    };

    // Let writes flow, then kill the leader mid-stream.
    let wait_for = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(25);
            while acked.lock().unwrap().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "writer stalled at {} acks",
                    acked.lock().unwrap().len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(40).await;
    let before_kill = acked.lock().unwrap().len();
    cluster.members[leader].kill();
    let killed_at = Instant::now();
    wait_for(before_kill + 60).await;
    let failover_time = killed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_ne!(
        etcd.current_endpoint(),
        cluster.members[leader].endpoint(),
        "client did not fail over"
    );
    eprintln!(
        "leader_killed_during_writes: {} acked ({before_kill} before the kill), failover took {failover_time:?}, {} failed attempts",
        acked.len(),
        errors.lock().unwrap().len()
    );

    // Every acknowledged write is on every surviving member, with its value (or, for the
    // counter, a later value).
    let final_rev = s.revision().await.unwrap();
    for (i, m) in cluster.members.iter().enumerate() {
        if i == leader {
            continue;
        }
        let mut c = m.client().await;
        let resp = c
            .get("ha/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await
            .unwrap();
        let on_member: BTreeMap<Vec<u8>, (Vec<u8>, i64)> = resp
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), (kv.value().to_vec(), kv.mod_revision())))
            .collect();
        for (key, value, rev) in &acked {
            let (v, mr) = on_member
                .get(key.as_bytes())
                .unwrap_or_else(|| panic!("{} lost acknowledged {key}", m.name));
            if key == "ha/counter" {
                assert!(*mr as u64 >= *rev);
            } else {
                assert_eq!(
                    (v, *mr as u64),
                    (value, *rev),
                    "{} has a different {key}",
                    m.name
                );
            }
        }
    }

    // The watch (which started on the killed leader) delivered every change exactly once, in
    // order: all acknowledged writes appear at their revisions, and the counter went 1, 2, ...
    let mut events = Vec::new();
    while events.last().map(WatchEvent::revision).unwrap_or(start_rev) < final_rev {
        events.push(
            conformance::next_event(&mut rx)
                .await
                .expect("watch failed instead of resuming"),
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].revision() < w[1].revision()),
        "watch duplicated or reordered events"
    );
    let by_rev: BTreeMap<u64, &WatchEvent> = events.iter().map(|e| (e.revision(), e)).collect();
    for (key, value, rev) in &acked {
        match by_rev.get(rev) {
            Some(WatchEvent::Put(kv)) if &kv.key == key && &kv.value == value => {}
            other => panic!("watch is missing acknowledged {key}@{rev}: {other:?}"),
        }
    }
    let counter: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Put(kv) if kv.key == "ha/counter" => {
                Some(std::str::from_utf8(&kv.value).unwrap().parse().unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        counter,
        (1..=counter.len() as u64).collect::<Vec<_>>(),
        "counter lost or repeated an increment"
    );
    conformance::assert_quiet(&mut rx).await;
}
