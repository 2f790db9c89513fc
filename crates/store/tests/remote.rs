//! The store server and its `unix:` client: the conformance suite through the socket, plus
//! what sharing adds: server restarts under open watches, clients dying mid-request, CAS races
//! between clients, error mapping and the socket file's life cycle.

mod conformance;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::DynStore;
use store::{Condition, EmbeddedStore, RemoteStore, Store, StoreError, StoreServer, WatchEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A server task in this process, serving an embedded file.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl Server {
    async fn start(file: &Path, sock: &Path) -> Server {
        let store = open_embedded(file).await;
        let server = StoreServer::bind(store, sock, format!("file:{}", file.display()))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Server {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Opens the embedded file, waiting for a previous owner's last references to go away.
async fn open_embedded(file: &Path) -> Arc<dyn Store> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(file).await {
            Ok(s) => return Arc::new(s),
            Err(e) if Instant::now() > deadline => panic!("cannot reopen {}: {e}", file.display()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    server: Server,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("seam.redb"), &dir.path().join("s.sock")).await;
        Fixture { dir, server }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("seam.redb")
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    async fn client(&self) -> DynStore {
        store::open(&format!("unix:{}", self.sock().display()))
            .await
            .unwrap()
    }
}

conformance::conformance_tests!(s => let f = Fixture::new().await; let s = f.client().await;);

/// Writes from one client are seen by another's reads and watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_share_one_store() {
    let f = Fixture::new().await;
    let (a, b) = (f.client().await, f.client().await);
    let mut rx = b.watch("shared/", 0).await.unwrap();
    let r = a
        .put("shared/k", b"from a".to_vec(), Condition::Absent)
        .await
        .unwrap();
    assert_eq!(b.get("shared/k").await.unwrap().unwrap().mod_revision, r);
    match conformance::next_event(&mut rx).await.unwrap() {
        WatchEvent::Put(kv) => assert_eq!((kv.value, kv.mod_revision), (b"from a".to_vec(), r)),
        other => panic!("unexpected {other:?}"),
    }
    // The server reports what it serves.
    let remote = RemoteStore::connect(&f.sock()).await.unwrap();
    assert_eq!(
        remote.info().await.unwrap(),
        (format!("file:{}", f.file().display()), r)
    );
}

/// Two clients CAS the same key from the same revision: exactly one wins, the other gets
/// Conflict naming the winner's revision; and read-modify-CAS increments from both clients
/// lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_race_between_clients_has_one_winner() {
    let f = Fixture::new().await;
    let (a, b) = (f.client().await, f.client().await);
    let mut rev = a
        .put("race/k", b"0".to_vec(), Condition::Absent)
        .await
        .unwrap();
    for round in 0..30 {
        let (ra, rb) = tokio::join!(
            a.put(
                "race/k",
                format!("a{round}").into_bytes(),
                Condition::Revision(rev)
            ),
            b.put(
                "race/k",
                format!("b{round}").into_bytes(),
                Condition::Revision(rev)
            ),
        );
        let (winner, value, loser) = match (ra, rb) {
            (Ok(w), Err(l)) => (w, format!("a{round}"), l),
            (Err(l), Ok(w)) => (w, format!("b{round}"), l),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        match loser {
            StoreError::Conflict { key, current } => {
                assert_eq!((key.as_str(), current), ("race/k", Some(winner)))
            }
            other => panic!("round {round}: loser got {other}"),
        }
        let kv = a.get("race/k").await.unwrap().unwrap();
        assert_eq!((kv.value, kv.mod_revision), (value.into_bytes(), winner));
        rev = winner;
    }
    // Increments from tasks spread over both clients.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                loop {
                    let (n, cond) = match s.get("race/n").await.unwrap() {
                        None => (0u64, Condition::Absent),
                        Some(kv) => (
                            String::from_utf8(kv.value).unwrap().parse().unwrap(),
                            Condition::Revision(kv.mod_revision),
                        ),
                    };
                    match s
                        .put("race/n", (n + 1).to_string().into_bytes(), cond)
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        b.get("race/n").await.unwrap().unwrap().value,
        b"90".to_vec()
    );
}

/// The server is stopped and started again (on the same file and socket) under an open watch,
/// with writes made while it was down: the watch resumes by itself, without gap or duplicate,
/// and a read issued while the server was down completes once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_server_restart() {
    let f = Fixture::new().await;
    let s = f.client().await;
    let (_, rev) = s.list("rs/").await.unwrap();
    let mut rx = s.watch("rs/", rev + 1).await.unwrap();
    let mut want = Vec::new();
    for i in 0..3u8 {
        want.push(s.put("rs/k", vec![i], Condition::Always).await.unwrap());
    }
    let mut got = conformance::take(&mut rx, 3).await;

    let Fixture { dir, server } = f;
    server.stop().await;
    let sock = dir.path().join("s.sock");
    let file = dir.path().join("seam.redb");
    assert!(!sock.exists(), "socket left behind after shutdown");
    // Writes while the server is down, straight into the file.
    {
        let direct = open_embedded(&file).await;
        for i in 3..5u8 {
            want.push(
                direct
                    .put("rs/k", vec![i], Condition::Always)
                    .await
                    .unwrap(),
            );
        }
    }
    let pending_read = {
        let s = s.clone();
        tokio::spawn(async move { s.get("rs/k").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = Server::start(&file, &sock).await;
    assert_eq!(
        pending_read.await.unwrap().unwrap().unwrap().value,
        vec![4],
        "a read issued while the server was down"
    );
    for i in 5..7u8 {
        want.push(s.put("rs/k", vec![i], Condition::Always).await.unwrap());
    }
    got.extend(conformance::take(&mut rx, 4).await);
    assert_eq!(got.iter().map(|e| e.revision()).collect::<Vec<_>>(), want);
    for (i, ev) in got.iter().enumerate() {
        assert!(
            matches!(ev, WatchEvent::Put(kv) if kv.value == vec![i as u8]),
            "{ev:?}"
        );
    }
    conformance::assert_quiet(&mut rx).await;
    server.stop().await;
}

/// Raw protocol frame.
fn frame(json: &str) -> Vec<u8> {
    let mut f = (json.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(json.as_bytes());
    f
}

/// Reads one raw response frame as text.
async fn read_raw(c: &mut UnixStream) -> String {
    let mut len = [0u8; 4];
    c.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    c.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

/// Environment variable that turns `remote_child_writer` into a client process.
const CHILD_ENV: &str = "SEAM_REMOTE_CHILD_SOCK";

/// Not a test on its own: the client process `killed_client_does_not_disturb_others` kills.
/// Writes with many requests in flight until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process for killed_client_does_not_disturb_others"]
async fn remote_child_writer() {
    let sock = std::env::var(CHILD_ENV).expect("run only by killed_client_does_not_disturb_others");
    let s: DynStore = store::open(&format!("unix:{sock}")).await.unwrap();
    let mut rx = s.watch("child/", 0).await.unwrap();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let mut i = 0u64;
    loop {
        let mut batch = Vec::new();
        for _ in 0..16 {
            let s = s.clone();
            batch.push(tokio::spawn(async move {
                s.put(
                    &format!("child/{}", i % 7),
                    i.to_le_bytes().to_vec(),
                    Condition::Always,
                )
                .await
            }));
            i += 1;
        }
        for t in batch {
            t.await.unwrap().unwrap();
        }
        if i == 64 {
            println!("CHILD-WRITING");
        }
    }
}

/// Clients that die mid-request (a SIGKILLed process with requests in flight, a connection
/// dropped halfway through a frame, one that never reads its answers, one that sends garbage)
/// do not disturb another client's requests and watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_does_not_disturb_others() {
    let f = Fixture::new().await;
    let s = f.client().await;
    let mut rx = s.watch("mine/", 0).await.unwrap();
    let mut want = Vec::new();
    let step = |s: DynStore| async move {
        s.put("mine/k", b"v".to_vec(), Condition::Always)
            .await
            .unwrap()
    };

    // A client process killed while writing.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "remote_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, f.sock())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("CHILD-WRITING"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
    want.push(step(s.clone()).await);
    child.kill().unwrap(); // SIGKILL, with requests in flight
    child.wait().unwrap();
    assert!(matches!(ready, Ok(Ok(true))), "child never started writing");
    want.push(step(s.clone()).await);

    // Half a frame, then gone.
    let mut c = UnixStream::connect(f.sock()).await.unwrap();
    c.write_all(&frame(r#"{"id":1,"op":"get","key":"x"}"#)[..10])
        .await
        .unwrap();
    drop(c);
    want.push(step(s.clone()).await);

    // A watch and 50 writes, never reading an answer: the writes still land.
    let mut c = UnixStream::connect(f.sock()).await.unwrap();
    let mut burst = frame(r#"{"id":1,"op":"watch","prefix":"","from":1}"#);
    for i in 0..50 {
        burst.extend(frame(&format!(
            r#"{{"id":{},"op":"put","key":"raw/{i}","value":"eA==","condition":"always"}}"#,
            i + 2
        )));
    }
    c.write_all(&burst).await.unwrap();
    drop(c);
    want.push(step(s.clone()).await);

    // A frame length no peer would send: that connection is closed, nobody else notices.
    let mut c = UnixStream::connect(f.sock()).await.unwrap();
    c.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("server did not close a connection sending garbage");
    assert_eq!(n.unwrap(), 0);
    want.push(step(s.clone()).await);

    // The other client's watch saw its own writes, in order, nothing else.
    let got = conformance::take(&mut rx, want.len()).await;
    assert_eq!(got.iter().map(|e| e.revision()).collect::<Vec<_>>(), want);
    conformance::assert_quiet(&mut rx).await;
    // The abandoned writes completed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (kvs, _) = s.list("raw/").await.unwrap();
        if kvs.len() == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 50 abandoned writes landed",
            kvs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still takes new clients, and the store is consistent.
    let t = f.client().await;
    assert!(t.revision().await.unwrap() >= *want.last().unwrap());
    drop((s, t));
    let file = f.file();
    f.server.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let direct = loop {
        match EmbeddedStore::open(&file).await {
            Ok(d) => break d,
            Err(e) => assert!(Instant::now() < deadline, "cannot reopen: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    direct.check_consistency().await.unwrap();
}

/// Errors keep their variant and backend across the socket; protocol mistakes and lost
/// answers get clear messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_across_the_socket() {
    let f = Fixture::new().await;
    let s = f.client().await;
    // A backend error from the server's embedded store keeps its backend name.
    let future = s.revision().await.unwrap() + 100;
    match s.compact(future).await {
        Err(StoreError::Backend {
            backend: "embedded",
            message,
        }) => {
            assert!(message.contains("future"), "{message}")
        }
        other => panic!("expected the embedded backend's error, got {other:?}"),
    }
    // Conflict and Compacted keep their fields (also covered by the conformance cases).
    let r = s.put("e/k", vec![], Condition::Absent).await.unwrap();
    assert!(matches!(
        s.put("e/k", vec![], Condition::Absent).await,
        Err(StoreError::Conflict { key, current: Some(c) }) if key == "e/k" && c == r
    ));
    let r2 = s.put("e/k", vec![1], Condition::Always).await.unwrap();
    s.compact(r2).await.unwrap();
    assert!(matches!(
        s.watch("e/", r).await,
        Err(StoreError::Compacted { requested, compacted }) if requested == r && compacted == r2
    ));

    // A malformed request is answered with an error naming it, on the same connection.
    let mut c = UnixStream::connect(f.sock()).await.unwrap();
    c.write_all(&frame(r#"{"id":9,"op":"frobnicate"}"#))
        .await
        .unwrap();
    let answer = read_raw(&mut c).await;
    assert!(
        answer.contains(r#""id":9"#) && answer.contains("bad request 9"),
        "{answer}"
    );
    c.write_all(&frame(r#"{"id":10,"op":"revision"}"#))
        .await
        .unwrap();
    assert_eq!(
        read_raw(&mut c).await,
        format!(r#"{{"id":10,"reply":"revision","revision":{r2}}}"#)
    );

    // Nothing listening: the error names the socket.
    let missing = f.dir.path().join("missing.sock");
    match store::open(&format!("unix:{}", missing.display())).await {
        Err(StoreError::Backend {
            backend: "remote",
            message,
        }) => {
            assert!(message.contains("missing.sock"), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("connected to nothing"),
    }

    // A server that takes a write and dies before answering: the outcome is unknown.
    let fake_path = f.dir.path().join("fake.sock");
    let fake = tokio::net::UnixListener::bind(&fake_path).unwrap();
    let fake_task = tokio::spawn(async move {
        let (mut c, _) = fake.accept().await.unwrap();
        let mut len = [0u8; 4];
        c.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        c.read_exact(&mut body).await.unwrap();
        drop(c);
        drop(fake);
        String::from_utf8(body).unwrap()
    });
    let client = RemoteStore::connect(&fake_path).await.unwrap();
    match client.put("u/k", b"v".to_vec(), Condition::Always).await {
        Err(StoreError::Backend {
            backend: "remote",
            message,
        }) => {
            assert!(message.contains("outcome unknown"), "{message}");
            assert!(message.contains("fake.sock"), "{message}");
        }
        other => panic!("expected outcome unknown, got {other:?}"),
    }
    let seen = fake_task.await.unwrap();
    assert!(seen.contains(r#""op":"put""#), "{seen}");
}

/// Dropping the client closes its watch channels (the "store shut down" end of a watch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_its_watches() {
    let f = Fixture::new().await;
    let s = f.client().await;
    let mut rx = s.watch("x/", 0).await.unwrap();
    drop(s);
    let end = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert!(end.is_none());
}

/// The socket is private, a live server is not displaced, a stale socket is replaced, a
/// regular file is never deleted, and shutdown removes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_file_life_cycle() {
    let f = Fixture::new().await;
    let meta = std::fs::metadata(f.sock()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let other = open_embedded(&f.dir.path().join("other.redb")).await;
    match StoreServer::bind(other.clone(), &f.sock(), "x").await {
        Err(StoreError::Backend { message, .. }) => {
            assert!(message.contains("already listening"), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("displaced a live server"),
    }

    let stale = f.dir.path().join("sub/stale.sock");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap()); // leaves the file
    assert!(stale.exists());
    let server = StoreServer::bind(other.clone(), &stale, "x").await.unwrap();
    assert_eq!(server.path(), stale);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let c = RemoteStore::connect(&stale).await.unwrap();
    assert_eq!(c.revision().await.unwrap(), 0);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!stale.exists(), "socket not removed on shutdown");

    let regular = f.dir.path().join("notes.txt");
    std::fs::write(&regular, b"keep me").unwrap();
    match StoreServer::bind(other, &regular, "x").await {
        Err(StoreError::Backend { message, .. }) => {
            assert!(message.contains("not a socket"), "{message}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("replaced a regular file"),
    }
    assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");
    let sock = f.sock();
    f.server.stop().await;
    assert!(!sock.exists());
}
