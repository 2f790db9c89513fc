//! The conformance suite against the embedded backend (one fresh file per case), plus the
//! embedded-only durability tests: reopen, and SIGKILL of a writing process.

mod conformance;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use conformance::DynStore;
use store::{Condition, EmbeddedStore, Store, StoreError};

async fn fresh() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = store::open(&format!("file:{}", dir.path().join("seam.redb").display()))
        .await
        .unwrap();
    (dir, s)
}

conformance::conformance_tests!(s => let (_dir, s) = fresh().await;);

/// The suite's cases also work side by side on one file (prefix isolation of the cases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_file() {
    let (_dir, s) = fresh().await;
    conformance::basics(&s, "a/").await;
    conformance::cas_put(&s, "b/").await;
    conformance::list_prefix(&s, "c/").await;
    conformance::watch_replay(&s, "d/").await;
    conformance::compaction(&s, "e/").await;
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/seam.redb");
    let (r1, r2) = {
        let s = EmbeddedStore::open(&path).await.unwrap();
        let r1 = s
            .put("k/a", b"1".to_vec(), Condition::Absent)
            .await
            .unwrap();
        let r2 = s
            .put("k/b", b"2".to_vec(), Condition::Absent)
            .await
            .unwrap();
        s.delete("k/a", Condition::Revision(r1))
            .await
            .unwrap()
            .unwrap();
        s.compact(r2).await.unwrap();
        (r1, r2)
    };
    let s = EmbeddedStore::open(&path).await.unwrap();
    assert_eq!(s.revision().await.unwrap(), r2 + 1);
    assert_eq!(s.compacted_revision().await.unwrap(), r2);
    assert_eq!(s.get("k/a").await.unwrap(), None);
    let b = s.get("k/b").await.unwrap().unwrap();
    assert_eq!(
        (b.value.as_slice(), b.create_revision, b.mod_revision),
        (&b"2"[..], r2, r2)
    );
    // History survives: the delete at r2+1 is replayable, r1 is compacted.
    let mut rx = s.watch("k/", r2).await.unwrap();
    let evs = conformance::take(&mut rx, 2).await;
    assert_eq!(
        evs.iter().map(|e| e.revision()).collect::<Vec<_>>(),
        [r2, r2 + 1]
    );
    assert!(
        matches!(s.watch("k/", r1).await, Err(StoreError::Compacted { requested, compacted }) if requested == r1 && compacted == r2)
    );
    // Writes continue from the stored counter.
    assert_eq!(
        s.put("k/c", vec![], Condition::Always).await.unwrap(),
        r2 + 2
    );
    s.check_consistency().await.unwrap();
}

#[tokio::test]
async fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_db = dir.path().join("garbage.redb");
    std::fs::write(
        &not_a_db,
        b"this is not a redb file, just some bytes that are long enough",
    )
    .unwrap();
    match store::open(&format!("file:{}", not_a_db.display())).await {
        Err(StoreError::Backend {
            backend: "embedded",
            message,
        }) => {
            assert!(message.contains("garbage.redb"), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a garbage file"),
    }
    // The file lock stops a second writer on the same file.
    let path = dir.path().join("locked.redb");
    let _first = EmbeddedStore::open(&path).await.unwrap();
    assert!(EmbeddedStore::open(&path).await.is_err());
}

#[tokio::test]
async fn watch_channel_closes_when_store_is_dropped() {
    let (_dir, s) = fresh().await;
    let mut rx = s.watch("x/", 0).await.unwrap();
    drop(s);
    let end = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert!(end.is_none());
}

/// Environment variable that turns `crash_child_writer` into the writer process.
const CHILD_ENV: &str = "SEAM_STORE_CRASH_CHILD_FILE";

/// Not a test on its own: the child process of `sigkill_mid_write_reopens_consistent`. It
/// writes as fast as it can (puts, CAS updates, deletes, compactions) until killed.
#[tokio::test]
#[ignore = "helper process for sigkill_mid_write_reopens_consistent"]
async fn crash_child_writer() {
    let path = std::env::var(CHILD_ENV).expect("run only by sigkill_mid_write_reopens_consistent");
    let s = EmbeddedStore::open(Path::new(&path)).await.unwrap();
    let mut i: u64 = 0;
    loop {
        let k = format!("crash/{}", i % 17);
        match s.get(&k).await.unwrap() {
            Some(kv) if i.is_multiple_of(5) => {
                s.delete(&k, Condition::Revision(kv.mod_revision))
                    .await
                    .unwrap();
            }
            Some(kv) => {
                s.put(
                    &k,
                    i.to_le_bytes().to_vec(),
                    Condition::Revision(kv.mod_revision),
                )
                .await
                .unwrap();
            }
            None => {
                s.put(&k, i.to_le_bytes().to_vec(), Condition::Absent)
                    .await
                    .unwrap();
            }
        }
        if i % 50 == 49 {
            let r = s.revision().await.unwrap();
            s.compact(r - 20).await.unwrap();
        }
        if i == 20 {
            println!("CHILD-WRITING");
        }
        i += 1;
    }
}

#[tokio::test]
async fn sigkill_mid_write_reopens_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it is writing, then let it run a little longer before the kill.
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("CHILD-WRITING"))
        });
        let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            matches!(ready, Ok(Ok(true))),
            "child never started writing (round {round})"
        );

        let s = Arc::new(EmbeddedStore::open(&path).await.unwrap());
        s.check_consistency().await.unwrap();
        let (kvs, rev) = s.list("crash/").await.unwrap();
        assert!(rev > 20, "round {round}: only {rev} revisions written");
        assert!(kvs
            .iter()
            .all(|kv| kv.mod_revision <= rev && kv.value.len() == 8));
        // History from the compaction point replays to the same state the data table holds.
        let compacted = s.compacted_revision().await.unwrap();
        let mut rx = s.watch("crash/", compacted.max(1)).await.unwrap();
        let mut last = 0;
        while last < rev {
            let ev = conformance::next_event(&mut rx).await.unwrap();
            assert!(ev.revision() > last, "history out of order");
            last = ev.revision();
        }
        assert_eq!(last, rev, "the last history entry is the revision counter");
        // And the store accepts writes again.
        assert_eq!(
            s.put("crash/after", vec![1; 8], Condition::Always)
                .await
                .unwrap(),
            rev + 1
        );
        drop(rx);
        drop(s);
    }
}
