//! The etcd v3 backend, for stores that span hosts.
//!
//! Mapping: CAS is an etcd transaction comparing the key's `mod_revision` (Absent:
//! `create_revision == 0`) whose else-branch reads the key, so a conflict reports the current
//! revision atomically; list is a prefix range; watch is an etcd watch with `start_revision`.
//!
//! Failover: one client per endpoint and a "current" index. A transport-level failure moves
//! the index to the next member. Reads are retried there transparently. A write is retried
//! only when it certainly never took effect (connection refused, "no leader"); if its outcome
//! is unknown the error is returned, because blindly re-sending a CAS could turn the caller's
//! own success into a Conflict. Watches resume on the next member from the last revision
//! delivered + 1, so the consumer sees neither a gap nor a duplicate.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;

use crate::{Condition, KeyValue, Revision, Store, StoreError, WatchEvent, WatchReceiver};

/// How long one operation keeps retrying across members before giving up.
const OP_DEADLINE: Duration = Duration::from_secs(10);
/// Per-request timeout, so a request to a member that lost its leader does not hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after every member failed once, before the next round.
const ROUND_BACKOFF: Duration = Duration::from_millis(200);
const WATCH_CHANNEL: usize = 256;

/// A store on an etcd v3 cluster.
pub struct EtcdStore {
    members: Arc<Members>,
}

/// The cluster members we were given and which one we talk to now.
struct Members {
    /// `host:port` as given, for messages.
    endpoints: Vec<String>,
    /// One client per endpoint, so failover is ours to control and observe.
    clients: Vec<Client>,
    /// Index into `clients` of the member in use.
    current: AtomicUsize,
}

/// How an etcd error should be handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The request never took effect (could not connect, member has no leader): safe to
    /// re-send anywhere.
    NotSent,
    /// Transport broke or timed out after sending: the outcome is unknown.
    Unknown,
    /// The cluster answered with a definite error (bad request, compacted, ...).
    Definite,
}

fn classify(e: &etcd_client::Error) -> Failure {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => Failure::NotSent,
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted => {
                let msg = status.message();
                let source = format!("{:?}", std::error::Error::source(status));
                if msg.contains("no leader")
                    || msg.contains("error trying to connect")
                    || msg.contains("tcp connect error")
                    || source.contains("ConnectError")
                    || source.contains("Connection refused")
                {
                    Failure::NotSent
                } else {
                    Failure::Unknown
                }
            }
            _ => Failure::Definite,
        },
        etcd_client::Error::WatchError(_) => Failure::Unknown,
        _ => Failure::Definite,
    }
}

fn kv_from(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = String::from_utf8(kv.key().to_vec()).map_err(|_| StoreError::Backend {
        backend: "etcd",
        message: format!("key {:?} is not UTF-8", String::from_utf8_lossy(kv.key())),
    })?;
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision() as Revision,
        mod_revision: kv.mod_revision() as Revision,
    })
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map(|h| h.revision()).unwrap_or(0).max(0) as Revision
}

fn prefix_opts_get(prefix: &str) -> GetOptions {
    if prefix.is_empty() {
        GetOptions::new().with_all_keys()
    } else {
        GetOptions::new().with_prefix()
    }
}

impl Members {
    fn backend_err(&self, idx: usize, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            backend: "etcd",
            message: format!("{what} via {}: {e}", self.endpoints[idx]),
        }
    }

    /// Moves off member `failed` (unless someone already did).
    fn rotate(&self, failed: usize) {
        let next = (failed + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Runs `op` against the current member, failing over as described in the module doc.
    async fn run<T, F, Fut>(&self, what: &str, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + OP_DEADLINE;
        let mut failures_this_round = 0;
        loop {
            let idx = self.current.load(Ordering::Acquire) % self.clients.len();
            let err = match op(self.clients[idx].clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match classify(&err) {
                Failure::Definite => return Err(self.backend_err(idx, what, err)),
                Failure::Unknown if !idempotent => {
                    self.rotate(idx);
                    return Err(self.backend_err(
                        idx,
                        &format!("{what} (outcome unknown, member failed)"),
                        err,
                    ));
                }
                Failure::Unknown | Failure::NotSent => {
                    self.rotate(idx);
                    if Instant::now() >= deadline {
                        return Err(self.backend_err(
                            idx,
                            &format!("{what} (no member answered within {OP_DEADLINE:?})"),
                            err,
                        ));
                    }
                    failures_this_round += 1;
                    if failures_this_round >= self.clients.len() {
                        failures_this_round = 0;
                        tokio::time::sleep(ROUND_BACKOFF).await;
                    }
                }
            }
        }
    }
}

impl EtcdStore {
    /// Connects to the cluster given as `host:port` endpoints (plain HTTP). Does not require
    /// every member to be up; fails only if no member answers within the operation deadline.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidSpec {
                spec: "etcd://".into(),
                reason: "no endpoints".into(),
            });
        }
        let opts = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from the leader refuses instead of serving stale data.
            .with_require_leader(true);
        let mut clients = Vec::new();
        for ep in endpoints {
            let url = format!("http://{ep}");
            let client = Client::connect([url.as_str()], Some(opts.clone()))
                .await
                .map_err(|e| StoreError::Backend {
                    backend: "etcd",
                    message: format!("connect to {ep}: {e}"),
                })?;
            clients.push(client);
        }
        let store = EtcdStore {
            members: Arc::new(Members {
                endpoints: endpoints.to_vec(),
                clients,
                current: AtomicUsize::new(0),
            }),
        };
        // Prove the cluster answers now, rather than at the first real call.
        store.revision().await?;
        Ok(store)
    }

    /// The endpoint currently in use (after failovers, not necessarily the first given).
    pub fn current_endpoint(&self) -> &str {
        let m = &self.members;
        &m.endpoints[m.current.load(Ordering::Acquire) % m.endpoints.len()]
    }
}

/// The outcome of one CAS transaction.
enum TxnOutcome {
    Applied(Revision),
    /// The compare failed; the key's current mod_revision (None: absent).
    Failed(Option<Revision>),
}

async fn cas_txn(
    client: Client,
    key: String,
    cmp: Vec<Compare>,
    then: Vec<TxnOp>,
) -> Result<TxnOutcome, etcd_client::Error> {
    let mut client = client;
    let txn = Txn::new()
        .when(cmp)
        .and_then(then)
        .or_else(vec![TxnOp::get(key, None)]);
    let resp = client.txn(txn).await?;
    let rev = header_rev(resp.header());
    if resp.succeeded() {
        return Ok(TxnOutcome::Applied(rev));
    }
    let current = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => Some(g.kvs().first().map(|kv| kv.mod_revision() as Revision)),
        _ => None,
    });
    Ok(TxnOutcome::Failed(current.flatten()))
}

/// The compares that make a write conditional (empty: unconditional).
fn compares(key: &str, condition: Condition) -> Vec<Compare> {
    match condition {
        Condition::Always => vec![],
        Condition::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
        // create_revision > 0 makes Revision(0) fail on an absent key (whose mod_revision is 0).
        Condition::Revision(r) => vec![
            Compare::create_revision(key, CompareOp::Greater, 0),
            Compare::mod_revision(key, CompareOp::Equal, r as i64),
        ],
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self
            .members
            .run(&format!("get {key:?}"), true, |mut c| {
                let key = key.to_string();
                async move { c.get(key, None).await }
            })
            .await?;
        resp.kvs().first().map(kv_from).transpose()
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition,
    ) -> Result<Revision, StoreError> {
        let what = format!("put {key:?}");
        let cmp = compares(key, condition);
        let outcome = self
            .members
            .run(&what, false, |c| {
                let then = vec![TxnOp::put(key, value.clone(), None)];
                cas_txn(c, key.to_string(), cmp.clone(), then)
            })
            .await?;
        match outcome {
            TxnOutcome::Applied(rev) => Ok(rev),
            TxnOutcome::Failed(current) => Err(StoreError::Conflict {
                key: key.to_string(),
                current,
            }),
        }
    }

    async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<Option<Revision>, StoreError> {
        let what = format!("delete {key:?}");
        match condition {
            Condition::Always => {
                let resp = self
                    .members
                    .run(&what, false, |mut c| {
                        let key = key.to_string();
                        async move { c.delete(key, None).await }
                    })
                    .await?;
                Ok((resp.deleted() > 0).then(|| header_rev(resp.header())))
            }
            Condition::Absent => {
                // Nothing to delete if absent; a conflict if present.
                let outcome = self
                    .members
                    .run(&what, false, |c| {
                        cas_txn(c, key.to_string(), compares(key, condition), vec![])
                    })
                    .await?;
                match outcome {
                    TxnOutcome::Applied(_) => Ok(None),
                    TxnOutcome::Failed(current) => Err(StoreError::Conflict {
                        key: key.to_string(),
                        current,
                    }),
                }
            }
            Condition::Revision(_) => {
                let outcome = self
                    .members
                    .run(&what, false, |c| {
                        cas_txn(
                            c,
                            key.to_string(),
                            compares(key, condition),
                            vec![TxnOp::delete(key, None)],
                        )
                    })
                    .await?;
                match outcome {
                    TxnOutcome::Applied(rev) => Ok(Some(rev)),
                    TxnOutcome::Failed(current) => Err(StoreError::Conflict {
                        key: key.to_string(),
                        current,
                    }),
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let resp = self
            .members
            .run(&format!("list {prefix:?}"), true, |mut c| {
                let prefix = prefix.to_string();
                async move { c.get(prefix.clone(), Some(prefix_opts_get(&prefix))).await }
            })
            .await?;
        // etcd returns a range sorted by key (byte order, which is UTF-8 string order).
        let kvs = resp
            .kvs()
            .iter()
            .map(kv_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((kvs, header_rev(resp.header())))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver, StoreError> {
        let next = if from == 0 {
            self.revision().await? + 1
        } else {
            from
        };
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        tokio::spawn(watch_task(
            self.members.clone(),
            prefix.to_string(),
            next,
            tx,
        ));
        Ok(rx)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let result = self
            .members
            .run(
                &format!("compact to {revision}"),
                true,
                |mut c| async move {
                    // Physical: return only once the history is gone, so later watches see it.
                    c.compact(
                        revision as i64,
                        Some(CompactionOptions::new().with_physical()),
                    )
                    .await
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // Compacting at or below the current compaction point is a no-op for us.
            Err(StoreError::Backend { message, .. })
                if message.contains("required revision has been compacted") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .members
            .run("read revision", true, |mut c| async move {
                c.get(vec![0u8], Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await?;
        Ok(header_rev(resp.header()))
    }
}

/// Why one watch connection ended.
enum WatchEnd {
    /// The consumer is gone (or the watch ended with an error it was told about).
    Done,
    /// The stream broke; resume elsewhere.
    Broken,
}

/// Keeps one logical watch alive across member failures: `next` is the first revision the
/// consumer has not seen yet.
async fn watch_task(
    members: Arc<Members>,
    prefix: String,
    mut next: Revision,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    let mut failures_this_round = 0;
    loop {
        if tx.is_closed() {
            return;
        }
        let idx = members.current.load(Ordering::Acquire) % members.clients.len();
        match watch_once(&members, idx, &prefix, &mut next, &tx).await {
            WatchEnd::Done => return,
            WatchEnd::Broken => {
                members.rotate(idx);
                failures_this_round += 1;
                if failures_this_round >= members.clients.len() {
                    failures_this_round = 0;
                    tokio::select! {
                        _ = tokio::time::sleep(ROUND_BACKOFF) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    }
}

/// One watch connection to member `idx`, from `*next`; advances `*next` as events are delivered.
async fn watch_once(
    members: &Members,
    idx: usize,
    prefix: &str,
    next: &mut Revision,
    tx: &mpsc::Sender<Result<WatchEvent, StoreError>>,
) -> WatchEnd {
    let mut client = members.clients[idx].clone();
    let mut opts = WatchOptions::new().with_start_revision(*next as i64);
    opts = if prefix.is_empty() {
        opts.with_all_keys()
    } else {
        opts.with_prefix()
    };
    let mut stream = match client.watch(prefix, Some(opts)).await {
        Ok(s) => s,
        Err(_) => return WatchEnd::Broken,
    };
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = tx.closed() => return WatchEnd::Done,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(_) => return WatchEnd::Broken,
        };
        if resp.compact_revision() > 0 {
            let err = StoreError::Compacted {
                requested: *next,
                compacted: resp.compact_revision() as Revision,
            };
            let _ = tx.send(Err(err)).await;
            return WatchEnd::Done;
        }
        if resp.canceled() {
            // Not compaction: e.g. the member lost its leader. Resume elsewhere.
            return WatchEnd::Broken;
        }
        let mut highest = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision() as Revision;
            if rev < *next {
                continue; // already delivered before a reconnect
            }
            let item = match ev.event_type() {
                EventType::Put => kv_from(kv).map(WatchEvent::Put),
                EventType::Delete => kv_from(kv).map(|kv| WatchEvent::Delete {
                    key: kv.key,
                    revision: rev,
                }),
            };
            let fatal = item.is_err();
            if tx.send(item).await.is_err() || fatal {
                return WatchEnd::Done;
            }
            highest = Some(rev);
        }
        // All events of one revision arrive in one response, so advance after the batch.
        if let Some(rev) = highest {
            *next = rev + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let st = |code, msg: &str| etcd_client::Error::GRpcStatus(tonic::Status::new(code, msg));
        assert_eq!(
            classify(&st(Code::Unavailable, "etcdserver: no leader")),
            Failure::NotSent
        );
        assert_eq!(
            classify(&st(
                Code::Unavailable,
                "error trying to connect: tcp connect error"
            )),
            Failure::NotSent
        );
        assert_eq!(
            classify(&st(Code::Unavailable, "etcdserver: request timed out")),
            Failure::Unknown
        );
        assert_eq!(
            classify(&st(Code::Unavailable, "etcdserver: leader changed")),
            Failure::Unknown
        );
        assert_eq!(
            classify(&st(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            )),
            Failure::Definite
        );
        assert_eq!(
            classify(&st(
                Code::InvalidArgument,
                "etcdserver: key is not provided"
            )),
            Failure::Definite
        );
    }

    #[test]
    fn conditions_map_to_compares() {
        assert!(compares("k", Condition::Always).is_empty());
        assert_eq!(compares("k", Condition::Absent).len(), 1);
        assert_eq!(compares("k", Condition::Revision(0)).len(), 2);
    }
}
