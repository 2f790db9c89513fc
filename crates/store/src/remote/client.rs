//! `RemoteStore`: the `Store` trait over a store server's Unix socket.
//!
//! One connection at a time, owned by a supervisor task that reads answers and dispatches
//! them by request id, and reconnects (with backoff) when the connection breaks. After a
//! reconnect it re-subscribes every open watch from the revision after the last one it
//! delivered, so consumers see no gap and no duplicate. Requests in flight when a connection
//! breaks are retried if they are reads (or otherwise idempotent); writes fail with a
//! `Backend` error saying their outcome is unknown, as the etcd backend does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::wire::{self, Op, Reply, Request, RequestId, Response, WireCondition, REMOTE};
use super::{read_frame, write_frames};
use crate::{Condition, KeyValue, Revision, Store, StoreError, WatchEvent, WatchReceiver};

/// How long a request waits for a (re)connection before failing.
const UNAVAILABLE_WAIT: Duration = Duration::from_secs(10);
/// How long one request waits for its answer on a live connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff bounds: a restarted server is found within `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Frames queued for the writer before senders wait.
const OUT_QUEUE: usize = 1024;
/// Capacity of each consumer's watch channel (the same as the embedded backend's).
const WATCH_CHANNEL: usize = 256;

/// A client of a store server (`seam datastore serve`). Dropping it closes the connection
/// and ends its watches (their channels close).
pub struct RemoteStore {
    shared: Arc<Shared>,
    /// Dropped with the store: tells the supervisor to stop.
    _stop: oneshot::Sender<()>,
}

/// State shared by the store handle, the supervisor and the watch forwarders.
struct Shared {
    path: PathBuf,
    /// Request ids are unique for the life of the client, so a watch keeps its id across
    /// reconnects and a late answer from an old connection cannot be mistaken for a new one.
    next_id: AtomicU64,
    /// The current connection, for requests to use (and wait on while reconnecting).
    state: watch::Sender<ConnState>,
    /// Open watches by id; the supervisor re-subscribes them after a reconnect.
    watches: Mutex<HashMap<RequestId, WatchSlot>>,
}

/// Where the client stands with its server.
#[derive(Clone)]
enum ConnState {
    Up(Arc<Conn>),
    /// Reconnecting; the last connection error, for the message of requests that give up.
    Down(String),
    /// The store was dropped.
    Closed,
}

/// One connection: the writer's queue and the requests waiting for an answer.
struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    /// None once the connection is dead: dropping the senders wakes every waiter.
    pending: Mutex<Option<HashMap<RequestId, oneshot::Sender<Reply>>>>,
}

/// One open watch, as the client tracks it across connections.
struct WatchSlot {
    prefix: String,
    /// Where to resume: one past the last revision delivered (or the start revision).
    next: Revision,
    /// Present until the server confirms the watch; the `watch` call waits on it.
    started: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// To the watch's forwarder task (unbounded so one slow consumer never stalls the reader
    /// that serves every request of this client).
    events: mpsc::UnboundedSender<Result<WatchEvent, StoreError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation: a panic cannot leave a torn state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    fn alive(&self) -> bool {
        lock(&self.pending).is_some()
    }

    /// Registers a waiter; false if the connection is already dead (nothing was sent).
    fn register(&self, id: RequestId, tx: oneshot::Sender<Reply>) -> bool {
        match lock(&self.pending).as_mut() {
            Some(p) => {
                p.insert(id, tx);
                true
            }
            None => false,
        }
    }

    fn unregister(&self, id: RequestId) {
        if let Some(p) = lock(&self.pending).as_mut() {
            p.remove(&id);
        }
    }

    fn take(&self, id: RequestId) -> Option<oneshot::Sender<Reply>> {
        lock(&self.pending).as_mut().and_then(|p| p.remove(&id))
    }

    /// Marks the connection dead; every waiter wakes with "connection lost".
    fn kill(&self) {
        lock(&self.pending).take();
    }
}

impl RemoteStore {
    /// Connects to the store server listening on `path`. Fails at once (naming the path) when
    /// nothing listens there; later connection losses are handled by reconnecting.
    pub async fn connect(path: &Path) -> Result<RemoteStore, StoreError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|why| StoreError::Backend {
                backend: REMOTE,
                message: format!(
                    "cannot connect to store server at unix:{}: {why} (is `seam datastore serve` running?)",
                    path.display()
                ),
            })?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            next_id: AtomicU64::new(1),
            state: watch::Sender::new(ConnState::Down("not connected yet".into())),
            watches: Mutex::new(HashMap::new()),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(supervise(shared.clone(), stop_rx, stream));
        Ok(RemoteStore {
            shared,
            _stop: stop_tx,
        })
    }

    /// The socket this client talks to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// What the server serves (e.g. `file:/var/lib/seam/seam.redb`) and its current revision.
    pub async fn info(&self) -> Result<(String, Revision), StoreError> {
        match self.call("info", Op::Info, true).await? {
            Reply::Info { serving, revision } => Ok((serving, revision)),
            other => Err(self.unexpected("info", other)),
        }
    }

    fn backend_err(&self, message: String) -> StoreError {
        StoreError::Backend {
            backend: REMOTE,
            message: format!(
                "store server unix:{}: {message}",
                self.shared.path.display()
            ),
        }
    }

    fn unexpected(&self, what: &str, reply: Reply) -> StoreError {
        self.backend_err(format!("unexpected answer to {what}: {reply:?}"))
    }

    /// Waits (until `deadline`) for a live connection.
    async fn connection(&self, deadline: Instant) -> Result<Arc<Conn>, StoreError> {
        let mut rx = self.shared.state.subscribe();
        loop {
            let last_error = match &*rx.borrow_and_update() {
                ConnState::Up(c) if c.alive() => return Ok(c.clone()),
                ConnState::Up(_) => "connection lost".to_string(),
                ConnState::Down(e) => e.clone(),
                ConnState::Closed => return Err(self.backend_err("client is shut down".into())),
            };
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(self.backend_err(format!(
                    "unreachable for {UNAVAILABLE_WAIT:?}: {last_error}"
                )));
            }
        }
    }

    /// Sends one request and waits for its answer. Reads (`idempotent`) are retried after a
    /// lost connection; writes then fail with "outcome unknown".
    async fn call(&self, what: &str, op: Op, idempotent: bool) -> Result<Reply, StoreError> {
        let deadline = Instant::now() + UNAVAILABLE_WAIT;
        loop {
            let conn = self.connection(deadline).await?;
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            if !conn.register(id, tx) {
                continue; // died meanwhile; nothing was sent
            }
            let frame = wire::encode(&Request { id, op: op.clone() });
            if conn.out.send(frame).await.is_err() {
                // The writer is gone, so the frame never reached the socket: safe to retry
                // once the supervisor notices the broken connection.
                conn.unregister(id);
                tokio::time::sleep(MIN_BACKOFF).await;
                continue;
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                Ok(Ok(Reply::Error { error })) => return Err(error.into()),
                Ok(Ok(reply)) => return Ok(reply),
                // Bounded by the deadline even when connections keep coming up and breaking.
                Ok(Err(_lost)) if idempotent && Instant::now() < deadline => continue,
                Ok(Err(_lost)) => {
                    let unknown = if idempotent { "" } else { " (outcome unknown)" };
                    return Err(self.backend_err(format!(
                        "{what}: connection lost before the answer{unknown}"
                    )));
                }
                Err(_elapsed) => {
                    conn.unregister(id);
                    let unknown = if idempotent { "" } else { " (outcome unknown)" };
                    return Err(self.backend_err(format!(
                        "{what}: no answer within {REQUEST_TIMEOUT:?}{unknown}"
                    )));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for RemoteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let what = format!("get {key:?}");
        let op = Op::Get {
            key: key.to_string(),
        };
        match self.call(&what, op, true).await? {
            Reply::Value { kv } => Ok(kv.map(Into::into)),
            other => Err(self.unexpected(&what, other)),
        }
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition,
    ) -> Result<Revision, StoreError> {
        let what = format!("put {key:?}");
        let op = Op::Put {
            key: key.to_string(),
            value,
            condition: WireCondition::from(condition),
        };
        match self.call(&what, op, false).await? {
            Reply::Revision { revision } => Ok(revision),
            other => Err(self.unexpected(&what, other)),
        }
    }

    async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<Option<Revision>, StoreError> {
        let what = format!("delete {key:?}");
        let op = Op::Delete {
            key: key.to_string(),
            condition: condition.into(),
        };
        match self.call(&what, op, false).await? {
            Reply::Deleted { revision } => Ok(revision),
            other => Err(self.unexpected(&what, other)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let what = format!("list {prefix:?}");
        let op = Op::List {
            prefix: prefix.to_string(),
        };
        match self.call(&what, op, true).await? {
            Reply::List { kvs, revision } => {
                Ok((kvs.into_iter().map(Into::into).collect(), revision))
            }
            other => Err(self.unexpected(&what, other)),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver, StoreError> {
        let what = format!("watch {prefix:?} from {from}");
        let deadline = Instant::now() + UNAVAILABLE_WAIT;
        loop {
            let conn = self.connection(deadline).await?;
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (started_tx, started_rx) = oneshot::channel();
            let (events_tx, events_rx) = mpsc::unbounded_channel();
            {
                // Checked under the watches lock: the supervisor marks a connection dead
                // before it sweeps unconfirmed watches, so this slot is either swept or
                // registered on a live connection.
                let mut watches = lock(&self.shared.watches);
                if !conn.alive() {
                    continue;
                }
                watches.insert(
                    id,
                    WatchSlot {
                        prefix: prefix.to_string(),
                        next: from,
                        started: Some(started_tx),
                        events: events_tx,
                    },
                );
            }
            let frame = wire::encode(&Request {
                id,
                op: Op::Watch {
                    prefix: prefix.to_string(),
                    from,
                },
            });
            if conn.out.send(frame).await.is_err() {
                lock(&self.shared.watches).remove(&id);
                tokio::time::sleep(MIN_BACKOFF).await;
                continue;
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, started_rx).await {
                Ok(Ok(Ok(()))) => {
                    let (out, rx) = mpsc::channel(WATCH_CHANNEL);
                    tokio::spawn(forward(self.shared.clone(), id, events_rx, out));
                    return Ok(rx);
                }
                Ok(Ok(Err(e))) => return Err(e),
                // The connection broke before the server confirmed: a watch has no side
                // effects, so start over on the next connection.
                Ok(Err(_lost)) if Instant::now() < deadline => continue,
                Ok(Err(_lost)) => {
                    return Err(self.backend_err(format!(
                        "{what}: connection kept breaking for {UNAVAILABLE_WAIT:?}"
                    )))
                }
                Err(_elapsed) => {
                    lock(&self.shared.watches).remove(&id);
                    self.shared.cancel_on_server(id).await;
                    return Err(
                        self.backend_err(format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
                    );
                }
            }
        }
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let what = format!("compact to {revision}");
        // Idempotent: compacting again to the same revision is a no-op.
        match self.call(&what, Op::Compact { revision }, true).await? {
            Reply::Done => Ok(()),
            other => Err(self.unexpected(&what, other)),
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        match self.call("revision", Op::Revision, true).await? {
            Reply::Revision { revision } => Ok(revision),
            other => Err(self.unexpected("revision", other)),
        }
    }
}

impl Shared {
    fn set_down(&self, why: String) {
        self.state.send_replace(ConnState::Down(why));
    }

    /// Tells the server to stop watch `watch` (best effort: on a broken connection the
    /// server drops its watches anyway).
    async fn cancel_on_server(&self, watch: RequestId) {
        let conn = match &*self.state.borrow() {
            ConnState::Up(c) => c.clone(),
            _ => return,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = conn
            .out
            .send(wire::encode(&Request {
                id,
                op: Op::CancelWatch { watch },
            }))
            .await;
    }

    /// Routes one server message to the request or watch it belongs to.
    fn dispatch(&self, conn: &Conn, resp: Response) {
        if let Some(waiter) = conn.take(resp.id) {
            let _ = waiter.send(resp.reply);
            return;
        }
        let mut watches = lock(&self.watches);
        let Some(slot) = watches.get_mut(&resp.id) else {
            // An answer to a cancel, or an event of a watch cancelled meanwhile.
            return;
        };
        match resp.reply {
            Reply::WatchStarted { from } => {
                if slot.next == 0 {
                    slot.next = from;
                }
                if let Some(started) = slot.started.take() {
                    let _ = started.send(Ok(()));
                }
            }
            Reply::Event { event } => {
                let ev = WatchEvent::from(event);
                // Resubscription starts at `next`, so older events cannot come; if one did,
                // delivering it would be a duplicate.
                if ev.revision() >= slot.next {
                    slot.next = ev.revision() + 1;
                    let _ = slot.events.send(Ok(ev));
                }
            }
            Reply::WatchClosed => {
                // The server's store shut down: close the consumer's channel.
                watches.remove(&resp.id);
            }
            Reply::Error { error } => {
                // An error ends the watch: at the call if not yet confirmed, else as its
                // last item.
                if let Some(slot) = watches.remove(&resp.id) {
                    match slot.started {
                        Some(started) => {
                            let _ = started.send(Err(error.into()));
                        }
                        None => {
                            let _ = slot.events.send(Err(error.into()));
                        }
                    }
                }
            }
            other => tracing::warn!(
                "store server unix:{}: unexpected message {other:?} for watch {}",
                self.path.display(),
                resp.id
            ),
        }
    }
}

/// Passes one watch's events to its consumer; when the consumer drops its receiver, forgets
/// the watch and tells the server.
async fn forward(
    shared: Arc<Shared>,
    id: RequestId,
    mut events: mpsc::UnboundedReceiver<Result<WatchEvent, StoreError>>,
    out: mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    loop {
        tokio::select! {
            item = events.recv() => match item {
                Some(item) => if out.send(item).await.is_err() { break },
                // The slot is gone (watch ended or client dropped): close the channel.
                None => return,
            },
            _ = out.closed() => break,
        }
    }
    let removed = lock(&shared.watches).remove(&id).is_some();
    if removed {
        shared.cancel_on_server(id).await;
    }
}

/// Owns the connection: serves it until it breaks, then reconnects with backoff and
/// re-subscribes the open watches; stops when the `RemoteStore` is dropped.
async fn supervise(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>, first: UnixStream) {
    let mut next_stream = Some(first);
    let mut backoff = MIN_BACKOFF;
    loop {
        let stream = match next_stream.take() {
            Some(s) => s,
            None => {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                match UnixStream::connect(&shared.path).await {
                    Ok(s) => s,
                    Err(e) => {
                        shared.set_down(format!("cannot connect: {e}"));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        backoff = MIN_BACKOFF;
        let (mut rd, wr) = stream.into_split();
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let conn = Arc::new(Conn {
            out,
            pending: Mutex::new(Some(HashMap::new())),
        });
        let mut writer = tokio::spawn(write_frames(wr, out_rx));
        // Re-subscribe confirmed watches before anyone else can use the connection.
        let resume: Vec<(RequestId, String, Revision)> = lock(&shared.watches)
            .iter()
            .filter(|(_, s)| s.started.is_none())
            .map(|(id, s)| (*id, s.prefix.clone(), s.next))
            .collect();
        for (id, prefix, from) in resume {
            let frame = wire::encode(&Request {
                id,
                op: Op::Watch { prefix, from },
            });
            if conn.out.send(frame).await.is_err() {
                break; // the reader below sees the broken connection
            }
        }
        shared.state.send_replace(ConnState::Up(conn.clone()));
        let reader = async {
            loop {
                match read_frame(&mut rd).await {
                    Ok(Some(frame)) => match serde_json::from_slice::<Response>(&frame) {
                        Ok(resp) => shared.dispatch(&conn, resp),
                        Err(e) => return format!("undecodable message from server: {e}"),
                    },
                    Ok(None) => return "server closed the connection".to_string(),
                    Err(e) => return format!("read: {e}"),
                }
            }
        };
        let why = tokio::select! {
            _ = &mut stop => {
                conn.kill();
                writer.abort();
                break;
            }
            why = reader => why,
            w = &mut writer => match w {
                Ok(Ok(())) => "writer stopped".to_string(),
                Ok(Err(e)) => format!("write: {e}"),
                Err(e) => format!("writer task: {e}"),
            },
        };
        tracing::debug!(
            "store server unix:{}: {why}; reconnecting",
            shared.path.display()
        );
        conn.kill();
        writer.abort();
        // Watches the server never confirmed are retried by their `watch` call.
        lock(&shared.watches).retain(|_, s| s.started.is_none());
        shared.set_down(why);
    }
    shared.state.send_replace(ConnState::Closed);
    lock(&shared.watches).clear();
}
