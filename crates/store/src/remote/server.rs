//! The store server: owns one `Store` and serves it to any number of clients over a Unix
//! socket (see `wire` for the protocol).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

use super::wire::{self, Op, Reply, Request, RequestId, Response, WireError, REMOTE};
use super::{read_frame, write_frames};
use crate::{Revision, Store, StoreError};

/// Mode of the socket file: only the owner (the lab runs everything as root) may connect,
/// since whoever connects can rewrite the whole datastore.
const SOCKET_MODE: u32 = 0o600;

/// Frames queued for one connection's writer before request tasks wait (backpressure on a
/// client that sends but does not read).
const OUT_QUEUE: usize = 1024;

/// Requests of one connection executing at once; the reader stops reading beyond this.
const MAX_IN_FLIGHT: usize = 1024;

/// How long shutdown waits for in-flight requests to be answered before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Longest path a Unix socket address holds (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

fn err(message: String) -> StoreError {
    StoreError::Backend {
        backend: REMOTE,
        message,
    }
}

/// The socket file we created, identified by inode so that shutdown removes it only if it is
/// still ours (a successor server may have replaced it). Removed on drop, so an aborted or
/// panicking server does not leave it behind.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound, not yet running store server. Split from `run` so that a caller can report
/// "ready" once clients can connect.
pub struct StoreServer {
    store: Arc<dyn Store>,
    listener: UnixListener,
    socket: SocketFile,
    /// What is served, e.g. `file:/var/lib/seam/seam.redb`; reported to `info` requests.
    serving: Arc<str>,
}

/// Serves `store` on the Unix socket `path` until `shutdown` completes, then stops accepting,
/// answers the requests already received, closes every connection and removes the socket.
pub async fn serve_unix(
    store: Arc<dyn Store>,
    path: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    StoreServer::bind(store, path, "a seam store")
        .await?
        .run(shutdown)
        .await
}

impl StoreServer {
    /// Creates the socket at `path` (mode 0600, parent directories created). A socket file
    /// left by a crashed server is replaced; a live server on `path`, or a file that is not a
    /// socket, is an error.
    pub async fn bind(
        store: Arc<dyn Store>,
        path: &Path,
        serving: impl Into<String>,
    ) -> Result<StoreServer, StoreError> {
        let shown = path.display();
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(err(format!(
                "socket path {shown} is {} bytes long; Unix sockets allow at most {MAX_SOCKET_PATH}",
                path.as_os_str().len()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                err(format!(
                    "cannot create directory {} for socket {shown}: {e}",
                    parent.display()
                ))
            })?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path).await {
                Ok(_) => {
                    return Err(err(format!(
                        "another store server is already listening on {shown}"
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::info!("replacing stale socket {shown} (nobody listening)");
                    std::fs::remove_file(path)
                        .map_err(|e| err(format!("cannot remove stale socket {shown}: {e}")))?;
                }
                Err(e) => {
                    return Err(err(format!(
                        "cannot tell whether socket {shown} is in use: {e}"
                    )))
                }
            },
            Ok(_) => {
                return Err(err(format!(
                    "{shown} exists and is not a socket; refusing to replace it"
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot inspect {shown}: {e}"))),
        }
        let listener = bind_private(path)?;
        let m = std::fs::symlink_metadata(path)
            .map_err(|e| err(format!("cannot inspect new socket {shown}: {e}")))?;
        Ok(StoreServer {
            store,
            listener,
            socket: SocketFile {
                path: path.to_path_buf(),
                dev: m.dev(),
                ino: m.ino(),
            },
            serving: Arc::from(serving.into()),
        })
    }

    /// The socket path clients connect to.
    pub fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Accepts and serves connections until `shutdown` completes (see `serve_unix`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let StoreServer {
            store,
            listener,
            socket,
            serving,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(serve_conn(
                            store.clone(),
                            serving.clone(),
                            stream,
                            stop_rx.clone(),
                        ));
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: keep serving the clients we have.
                        tracing::warn!("accept on {}: {e}", socket.path.display());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        // New clients get "no such file" (and retry) instead of a listener nobody serves.
        drop(listener);
        drop(socket);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} store connections still busy after {SHUTDOWN_GRACE:?}; closing them",
                conns.len()
            );
        }
        Ok(())
    }
}

/// Binds `path` so that it is never connectable with a wider mode than `SOCKET_MODE`: bind a
/// temporary name in the same directory, chmod, then rename into place (rename keeps the
/// listening socket). Falls back to bind + chmod when the temporary name would be too long.
fn bind_private(path: &Path) -> Result<UnixListener, StoreError> {
    let shown = path.display();
    let dir = path.parent().unwrap_or(Path::new(""));
    let tmp = dir.join(format!(".seam-store.{}.tmp", std::process::id()));
    let chmod = |p: &Path| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| err(format!("cannot set mode of socket {}: {e}", p.display())))
    };
    if tmp.as_os_str().len() <= MAX_SOCKET_PATH {
        let _ = std::fs::remove_file(&tmp); // left by a crashed server with our pid
        let listener = UnixListener::bind(&tmp)
            .map_err(|e| err(format!("cannot listen on {}: {e}", tmp.display())))?;
        let placed = chmod(&tmp).and_then(|()| {
            std::fs::rename(&tmp, path)
                .map_err(|e| err(format!("cannot move socket into place at {shown}: {e}")))
        });
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(listener)
    } else {
        let listener =
            UnixListener::bind(path).map_err(|e| err(format!("cannot listen on {shown}: {e}")))?;
        if let Err(e) = chmod(path) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(listener)
    }
}

/// The live watches of one connection, by watch (request) id, so `cancel_watch` and the end
/// of the connection can stop them.
type Watches = Arc<Mutex<HashMap<RequestId, AbortHandle>>>;

fn lock(w: &Watches) -> std::sync::MutexGuard<'_, HashMap<RequestId, AbortHandle>> {
    // A panic while holding this lock cannot leave the map inconsistent (single operations).
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves one client connection: reads requests, runs each in its own task (so a slow one
/// does not hold up the rest), streams watch events, until EOF, a protocol error or shutdown.
async fn serve_conn(
    store: Arc<dyn Store>,
    serving: Arc<str>,
    stream: UnixStream,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    let writer = tokio::spawn(write_frames(wr, out_rx));
    let watches: Watches = Default::default();
    let mut requests = JoinSet::new();
    let mut stopping = false;
    loop {
        let frame = tokio::select! {
            _ = stop.wait_for(|s| *s) => { stopping = true; break }
            f = read_frame(&mut rd) => f,
        };
        while requests.try_join_next().is_some() {}
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("store client: {e}; closing its connection");
                break;
            }
        };
        let Request { id, op } = match serde_json::from_slice::<Request>(&frame) {
            Ok(r) => r,
            Err(e) => {
                // Answer by id when there is one, so the client learns what it got wrong.
                #[derive(serde::Deserialize)]
                struct IdOnly {
                    id: RequestId,
                }
                match serde_json::from_slice::<IdOnly>(&frame) {
                    Ok(IdOnly { id }) => {
                        let error = err(format!("bad request {id}: {e}"));
                        let _ = out.send(error_frame(id, error)).await;
                        continue;
                    }
                    Err(_) => {
                        tracing::warn!("store client sent an undecodable frame ({e}); closing");
                        break;
                    }
                }
            }
        };
        match op {
            Op::Watch { prefix, from } => {
                let duplicate = {
                    let mut live = lock(&watches);
                    match live.entry(id) {
                        Entry::Occupied(_) => true,
                        Entry::Vacant(slot) => {
                            // Spawned while holding the lock: the task's own removal at its
                            // end waits until its handle is in the map.
                            let task = tokio::spawn(run_watch(
                                store.clone(),
                                id,
                                prefix,
                                from,
                                out.clone(),
                                watches.clone(),
                            ));
                            slot.insert(task.abort_handle());
                            false
                        }
                    }
                };
                if duplicate {
                    let error = err(format!("watch id {id} is already in use"));
                    let _ = out.send(error_frame(id, error)).await;
                }
            }
            Op::CancelWatch { watch } => {
                if let Some(task) = lock(&watches).remove(&watch) {
                    task.abort();
                }
                let _ = out
                    .send(wire::encode(&Response {
                        id,
                        reply: Reply::Done,
                    }))
                    .await;
            }
            op => {
                if requests.len() >= MAX_IN_FLIGHT {
                    requests.join_next().await;
                }
                let (store, serving, out) = (store.clone(), serving.clone(), out.clone());
                requests.spawn(async move {
                    let reply = unary(&*store, &serving, op)
                        .await
                        .unwrap_or_else(|e| Reply::Error { error: e.into() });
                    let _ = out.send(wire::encode(&Response { id, reply })).await;
                });
            }
        }
    }
    for (_, task) in lock(&watches).drain() {
        task.abort();
    }
    if stopping {
        // Answer what was received; the client then sees a clean close.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while requests.join_next().await.is_some() {}
        })
        .await;
    } else {
        // The client is gone: writes it started still complete in the store (dropping the
        // set would abort them halfway through their await), their answers go nowhere.
        requests.detach_all();
    }
    drop(out);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, writer).await;
}

fn error_frame(id: RequestId, e: StoreError) -> Vec<u8> {
    wire::encode(&Response {
        id,
        reply: Reply::Error { error: e.into() },
    })
}

/// Runs one request that has exactly one answer.
async fn unary(store: &dyn Store, serving: &str, op: Op) -> Result<Reply, StoreError> {
    Ok(match op {
        Op::Get { key } => Reply::Value {
            kv: store.get(&key).await?.map(Into::into),
        },
        Op::Put {
            key,
            value,
            condition,
        } => Reply::Revision {
            revision: store.put(&key, value, condition.into()).await?,
        },
        Op::Delete { key, condition } => Reply::Deleted {
            revision: store.delete(&key, condition.into()).await?,
        },
        Op::List { prefix } => {
            let (kvs, revision) = store.list(&prefix).await?;
            Reply::List {
                kvs: kvs.into_iter().map(Into::into).collect(),
                revision,
            }
        }
        Op::Compact { revision } => {
            store.compact(revision).await?;
            Reply::Done
        }
        Op::Revision => Reply::Revision {
            revision: store.revision().await?,
        },
        Op::Info => Reply::Info {
            serving: serving.to_string(),
            revision: store.revision().await?,
        },
        Op::Watch { .. } | Op::CancelWatch { .. } => {
            return Err(err("watch requests are not single-answer requests".into()))
        }
    })
}

/// Runs one watch: answers `watch_started` (with `from == 0` resolved to the next revision, so
/// the client can resume from a concrete revision), then streams events until the store's
/// watch ends, the client cancels or the connection closes.
async fn run_watch(
    store: Arc<dyn Store>,
    id: RequestId,
    prefix: String,
    from: Revision,
    out: mpsc::Sender<Vec<u8>>,
    watches: Watches,
) {
    let started = async {
        let from = if from == 0 {
            store.revision().await? + 1
        } else {
            from
        };
        let rx = store.watch(&prefix, from).await?;
        Ok::<_, StoreError>((from, rx))
    }
    .await;
    let send = |reply: Reply| out.send(wire::encode(&Response { id, reply }));
    match started {
        Err(e) => {
            let _ = out.send(error_frame(id, e)).await;
        }
        Ok((from, mut rx)) => {
            if send(Reply::WatchStarted { from }).await.is_ok() {
                loop {
                    let reply = match rx.recv().await {
                        Some(Ok(ev)) => Reply::Event { event: ev.into() },
                        Some(Err(e)) => Reply::Error {
                            error: WireError::from(e),
                        },
                        None => Reply::WatchClosed,
                    };
                    let last = !matches!(reply, Reply::Event { .. });
                    if send(reply).await.is_err() || last {
                        break;
                    }
                }
            }
        }
    }
    lock(&watches).remove(&id);
}
