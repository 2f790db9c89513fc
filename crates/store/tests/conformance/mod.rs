//! The conformance suite: one body per behaviour of the `Store` trait, run unchanged against
//! every backend (tests/embedded.rs, tests/etcd.rs). Each case works under its own key prefix
//! `p` so cases can share one store; only `compaction` touches store-wide state.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use store::{Condition, KeyValue, Revision, Store, StoreError, WatchEvent, WatchReceiver};

pub type DynStore = Arc<dyn Store>;

/// How long a watch may take to deliver an event before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Next watch item, failing the test on timeout or closed channel.
pub async fn next_event(rx: &mut WatchReceiver) -> Result<WatchEvent, StoreError> {
    match tokio::time::timeout(EVENT_TIMEOUT, rx.recv()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("watch channel closed unexpectedly"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// `n` events, all Ok.
pub async fn take(rx: &mut WatchReceiver, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_event(rx).await.expect("watch delivered an error"));
    }
    out
}

/// Asserts nothing arrives within a short while (no duplicates, no foreign prefixes).
pub async fn assert_quiet(rx: &mut WatchReceiver) {
    if let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected watch item {item:?}");
    }
}

fn put_ev(key: &str, value: &[u8], rev: Revision) -> (String, Option<Vec<u8>>, Revision) {
    (key.to_string(), Some(value.to_vec()), rev)
}

fn del_ev(key: &str, rev: Revision) -> (String, Option<Vec<u8>>, Revision) {
    (key.to_string(), None, rev)
}

/// Reduces events to (key, value or None for delete, revision) for comparisons.
fn shape(events: &[WatchEvent]) -> Vec<(String, Option<Vec<u8>>, Revision)> {
    events
        .iter()
        .map(|e| match e {
            WatchEvent::Put(kv) => (kv.key.clone(), Some(kv.value.clone()), kv.mod_revision),
            WatchEvent::Delete { key, revision } => (key.clone(), None, *revision),
        })
        .collect()
}

fn assert_conflict<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    key: &str,
    want: Option<Revision>,
) {
    match r {
        Err(StoreError::Conflict { key: k, current }) => {
            assert_eq!(k, key);
            assert_eq!(
                current, want,
                "conflict on {key} reported the wrong current revision"
            );
        }
        other => panic!("expected Conflict on {key} (current {want:?}), got {other:?}"),
    }
}

/// get / put / delete and the revisions they report.
pub async fn basics(s: &DynStore, p: &str) {
    let k = format!("{p}key");
    assert_eq!(s.get(&k).await.unwrap(), None);
    let r1 = s.put(&k, b"one".to_vec(), Condition::Always).await.unwrap();
    assert_eq!(
        s.get(&k).await.unwrap(),
        Some(KeyValue {
            key: k.clone(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1
        })
    );
    let r2 = s.put(&k, b"two".to_vec(), Condition::Always).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        s.get(&k).await.unwrap(),
        Some(KeyValue {
            key: k.clone(),
            value: b"two".to_vec(),
            create_revision: r1,
            mod_revision: r2
        })
    );
    assert!(s.revision().await.unwrap() >= r2);
    let r3 = s
        .delete(&k, Condition::Always)
        .await
        .unwrap()
        .expect("delete of a present key returns its revision");
    assert!(r3 > r2);
    assert_eq!(s.get(&k).await.unwrap(), None);
    // Deleting an absent key is not a write.
    assert_eq!(s.delete(&k, Condition::Always).await.unwrap(), None);
    assert_eq!(s.revision().await.unwrap(), r3);
    // Re-creating starts a new create_revision; empty values are values.
    let r4 = s.put(&k, Vec::new(), Condition::Absent).await.unwrap();
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.value.len()),
        (r4, r4, 0)
    );
}

/// Every write gets a strictly larger revision, and `revision()` reports the last one.
pub async fn revisions_monotonic(s: &DynStore, p: &str) {
    let mut last = s.revision().await.unwrap();
    for i in 0..20 {
        let k = format!("{p}{}", i % 3);
        let r = if i % 5 == 4 {
            s.delete(&k, Condition::Always).await.unwrap().unwrap()
        } else {
            s.put(&k, vec![i as u8], Condition::Always).await.unwrap()
        };
        assert!(r > last, "revision {r} after {last}");
        last = r;
        assert_eq!(s.revision().await.unwrap(), last);
    }
}

/// Absent and Revision conditions on put: success, and Conflict with the current revision.
pub async fn cas_put(s: &DynStore, p: &str) {
    let k = format!("{p}cas");
    let r1 = s.put(&k, b"a".to_vec(), Condition::Absent).await.unwrap();
    assert_conflict(
        s.put(&k, b"b".to_vec(), Condition::Absent).await,
        &k,
        Some(r1),
    );
    let r2 = s
        .put(&k, b"b".to_vec(), Condition::Revision(r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    assert_conflict(
        s.put(&k, b"c".to_vec(), Condition::Revision(r1)).await,
        &k,
        Some(r2),
    );
    assert_conflict(
        s.put(&k, b"c".to_vec(), Condition::Revision(r2 + 1000))
            .await,
        &k,
        Some(r2),
    );
    assert_eq!(
        s.get(&k).await.unwrap().unwrap().value,
        b"b".to_vec(),
        "a failed CAS changed the value"
    );
    // On an absent key a Revision condition never holds, not even Revision(0).
    let missing = format!("{p}missing");
    assert_conflict(
        s.put(&missing, b"x".to_vec(), Condition::Revision(r1))
            .await,
        &missing,
        None,
    );
    assert_conflict(
        s.put(&missing, b"x".to_vec(), Condition::Revision(0)).await,
        &missing,
        None,
    );
    assert_eq!(s.get(&missing).await.unwrap(), None);
    // Failed writes do not advance the store revision.
    assert_eq!(s.revision().await.unwrap(), r2);
}

/// Conditions on delete.
pub async fn cas_delete(s: &DynStore, p: &str) {
    let k = format!("{p}del");
    let r1 = s.put(&k, b"v".to_vec(), Condition::Always).await.unwrap();
    assert_conflict(
        s.delete(&k, Condition::Revision(r1 + 1000)).await,
        &k,
        Some(r1),
    );
    assert_conflict(s.delete(&k, Condition::Absent).await, &k, Some(r1));
    assert!(
        s.get(&k).await.unwrap().is_some(),
        "a failed conditional delete removed the key"
    );
    let r2 = s
        .delete(&k, Condition::Revision(r1))
        .await
        .unwrap()
        .unwrap();
    assert!(r2 > r1);
    assert_conflict(s.delete(&k, Condition::Revision(r1)).await, &k, None);
    assert_eq!(s.delete(&k, Condition::Absent).await.unwrap(), None);
    assert_eq!(s.revision().await.unwrap(), r2);
}

/// list: key order, prefix isolation (`a/` does not return `ab/`), the read revision.
pub async fn list_prefix(s: &DynStore, p: &str) {
    for k in ["a/2", "ab/1", "a/1", "b", "a/10", "a"] {
        s.put(&format!("{p}{k}"), k.as_bytes().to_vec(), Condition::Always)
            .await
            .unwrap();
    }
    let last = s
        .put(&format!("{p}a/0"), b"a/0".to_vec(), Condition::Always)
        .await
        .unwrap();
    let (kvs, rev) = s.list(&format!("{p}a/")).await.unwrap();
    let keys: Vec<_> = kvs
        .iter()
        .map(|kv| kv.key.strip_prefix(p).unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a/0", "a/1", "a/10", "a/2"]);
    assert!(kvs
        .iter()
        .all(|kv| kv.value == kv.key.strip_prefix(p).unwrap().as_bytes()));
    assert!(rev >= last);
    let (all, _) = s.list(p).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|kv| kv.key.strip_prefix(p).unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a", "a/0", "a/1", "a/10", "a/2", "ab/1", "b"]);
    let (none, _) = s.list(&format!("{p}zz/")).await.unwrap();
    assert!(none.is_empty());
}

/// A live watch sees exactly the writes under its prefix, in revision order.
pub async fn watch_ordering(s: &DynStore, p: &str) {
    let (_, rev) = s.list(&format!("{p}w/")).await.unwrap();
    let mut rx = s.watch(&format!("{p}w/"), rev + 1).await.unwrap();
    let mut want = Vec::new();
    for i in 0..10u8 {
        let k = format!("{p}w/{}", i % 3);
        s.put(&format!("{p}wx/{i}"), vec![i], Condition::Always)
            .await
            .unwrap(); // other prefix
        if i % 4 == 3 {
            let r = s.delete(&k, Condition::Always).await.unwrap().unwrap();
            want.push(del_ev(&k, r));
        } else {
            let r = s.put(&k, vec![i], Condition::Always).await.unwrap();
            want.push(put_ev(&k, &[i], r));
        }
    }
    let got = take(&mut rx, want.len()).await;
    assert_eq!(shape(&got), want);
    assert!(got.windows(2).all(|w| w[0].revision() < w[1].revision()));
    assert_quiet(&mut rx).await;
}

/// A watch from an old revision replays history, then continues live without a seam.
pub async fn watch_replay(s: &DynStore, p: &str) {
    let mut want = Vec::new();
    let k = format!("{p}r/k");
    for i in 0..5u8 {
        let r = s.put(&k, vec![i], Condition::Always).await.unwrap();
        want.push(put_ev(&k, &[i], r));
    }
    let r = s.delete(&k, Condition::Always).await.unwrap().unwrap();
    want.push(del_ev(&k, r));
    let mut rx = s.watch(&format!("{p}r/"), want[1].2).await.unwrap();
    assert_eq!(shape(&take(&mut rx, 5).await), want[1..]);
    let r = s
        .put(&k, b"live".to_vec(), Condition::Always)
        .await
        .unwrap();
    assert_eq!(shape(&take(&mut rx, 1).await), [put_ev(&k, b"live", r)]);
    assert_quiet(&mut rx).await;
    // from == 0 means "from the next write".
    let mut rx = s.watch(&format!("{p}r/"), 0).await.unwrap();
    let r = s
        .put(&k, b"next".to_vec(), Condition::Always)
        .await
        .unwrap();
    assert_eq!(shape(&take(&mut rx, 1).await), [put_ev(&k, b"next", r)]);
}

/// A consumer that disconnects (drops its receiver) and re-watches from last seen + 1 gets
/// exactly the events it missed, then live ones.
pub async fn watch_resume(s: &DynStore, p: &str) {
    let prefix = format!("{p}res/");
    let k = format!("{prefix}k");
    let (_, rev) = s.list(&prefix).await.unwrap();
    let mut rx = s.watch(&prefix, rev + 1).await.unwrap();
    for i in 0..3u8 {
        s.put(&k, vec![i], Condition::Always).await.unwrap();
    }
    let seen = take(&mut rx, 3).await;
    drop(rx);
    let mut missed = Vec::new();
    for i in 3..7u8 {
        let r = s.put(&k, vec![i], Condition::Always).await.unwrap();
        missed.push(put_ev(&k, &[i], r));
    }
    let mut rx = s
        .watch(&prefix, seen.last().unwrap().revision() + 1)
        .await
        .unwrap();
    assert_eq!(shape(&take(&mut rx, missed.len()).await), missed);
    let r = s
        .put(&k, b"after".to_vec(), Condition::Always)
        .await
        .unwrap();
    assert_eq!(shape(&take(&mut rx, 1).await), [put_ev(&k, b"after", r)]);
    assert_quiet(&mut rx).await;
}

/// Expect a watch from `from` to fail with Compacted (at the call or as its first item).
pub async fn expect_compacted(s: &DynStore, prefix: &str, from: Revision, compacted_at: Revision) {
    let err = match s.watch(prefix, from).await {
        Err(e) => e,
        Ok(mut rx) => match next_event(&mut rx).await {
            Err(e) => {
                // The watch ends after its error.
                let end = tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
                    .await
                    .expect("watch did not close after error");
                assert!(
                    end.is_none(),
                    "watch kept delivering after Compacted: {end:?}"
                );
                e
            }
            Ok(ev) => panic!("watch from compacted revision {from} delivered {ev:?}"),
        },
    };
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, from);
            assert!(
                compacted >= compacted_at && compacted > from,
                "compacted={compacted}, compacted at {compacted_at}"
            );
        }
        other => panic!("expected Compacted, got {other}"),
    }
}

/// Compaction: watches from before the compaction point fail with Compacted, from it or later
/// succeed; data is untouched; compacting again or lower is a no-op; the future is an error.
pub async fn compaction(s: &DynStore, p: &str) {
    let k = format!("{p}c/k");
    let mut revs = Vec::new();
    for i in 0..5u8 {
        revs.push(s.put(&k, vec![i], Condition::Always).await.unwrap());
    }
    s.compact(revs[2]).await.unwrap();
    expect_compacted(s, &format!("{p}c/"), revs[0], revs[2]).await;
    expect_compacted(s, &format!("{p}c/"), revs[2] - 1, revs[2]).await;
    let mut rx = s.watch(&format!("{p}c/"), revs[2]).await.unwrap();
    assert_eq!(
        shape(&take(&mut rx, 3).await),
        [
            put_ev(&k, &[2], revs[2]),
            put_ev(&k, &[3], revs[3]),
            put_ev(&k, &[4], revs[4])
        ]
    );
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, vec![4]);
    s.compact(revs[1])
        .await
        .expect("compacting below the compaction point is a no-op");
    s.compact(revs[2])
        .await
        .expect("compacting at the compaction point again is a no-op");
    let future = s.revision().await.unwrap() + 100;
    assert!(
        s.compact(future).await.is_err(),
        "compacting to a future revision must fail"
    );
    // Writes keep working and live watchers keep receiving.
    let r = s
        .put(&k, b"after".to_vec(), Condition::Always)
        .await
        .unwrap();
    assert_eq!(shape(&take(&mut rx, 1).await), [put_ev(&k, b"after", r)]);
}

/// N tasks each doing M read-modify-CAS increments on one key end at exactly N*M.
pub async fn concurrent_cas(s: &DynStore, p: &str, tasks: usize, per_task: usize) {
    let k = format!("{p}counter");
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let s = s.clone();
        let k = k.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..per_task {
                loop {
                    let cur = s.get(&k).await.unwrap();
                    let (n, cond) = match &cur {
                        None => (0u64, Condition::Absent),
                        Some(kv) => (
                            String::from_utf8(kv.value.clone())
                                .unwrap()
                                .parse::<u64>()
                                .unwrap(),
                            Condition::Revision(kv.mod_revision),
                        ),
                    };
                    match s.put(&k, (n + 1).to_string().into_bytes(), cond).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.unwrap();
    }
    let v = s.get(&k).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8(v.value).unwrap(),
        (tasks * per_task).to_string(),
        "lost or doubled increments"
    );
    // Not an assertion on timing, just evidence the CAS path was exercised.
    eprintln!(
        "concurrent_cas: {} increments, {conflicts} conflicts retried",
        tasks * per_task
    );
}

/// One `#[tokio::test]` per conformance case, each on a fresh store built by the backend's
/// setup statements (which bind `$store`; guards they bind live until the case ends). The case
/// list lives here once, so every backend that uses this runs the whole suite.
#[allow(unused_macros)] // tests/etcd.rs runs the cases in sequence on one member instead
macro_rules! conformance_tests {
    ($store:ident => $($setup:stmt;)+) => {
        conformance::conformance_tests!(@case basics; $store; $($setup;)+);
        conformance::conformance_tests!(@case revisions_monotonic; $store; $($setup;)+);
        conformance::conformance_tests!(@case cas_put; $store; $($setup;)+);
        conformance::conformance_tests!(@case cas_delete; $store; $($setup;)+);
        conformance::conformance_tests!(@case list_prefix; $store; $($setup;)+);
        conformance::conformance_tests!(@case watch_ordering; $store; $($setup;)+);
        conformance::conformance_tests!(@case watch_replay; $store; $($setup;)+);
        conformance::conformance_tests!(@case watch_resume; $store; $($setup;)+);
        conformance::conformance_tests!(@case compaction; $store; $($setup;)+);
        conformance::conformance_tests!(@case concurrent_cas, 8, 25; $store; $($setup;)+);
    };
    (@case $name:ident $(, $arg:expr)*; $store:ident; $($setup:stmt;)+) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $($setup;)+
            conformance::$name(&$store, "t/" $(, $arg)*).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use conformance_tests;
