//! The embedded backend: one redb file holding the keyspace, the revision counter and the
//! change history, with watches served in-process. It is the default so that a single host
//! needs no external datastore.
//!
//! Layout (all in one file, all updated in one redb write transaction per store write):
//! - `data`: key -> create_revision (u64 LE) ‖ mod_revision (u64 LE) ‖ value
//! - `meta`: "revision" (last assigned), "compacted" (oldest revision still in history),
//!   "format" (layout version)
//! - `history`: revision -> one encoded event, so a watch can replay from any revision not
//!   yet compacted and then continue live.
//!
//! Watch consistency: every write commits *and* hands its event to live watchers while holding
//! one mutex; a new watch takes a read snapshot and registers itself under the same mutex. So
//! the snapshot contains exactly the revisions <= R and the live feed exactly those > R: no gap,
//! no duplicate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use crate::{Condition, KeyValue, Revision, Store, StoreError, WatchEvent, WatchReceiver};

const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_FORMAT: &str = "format";
/// Bumped when the on-disk layout changes, so an old binary refuses a newer file clearly.
const FORMAT_VERSION: u64 = 1;

const EVENT_PUT: u8 = 1;
const EVENT_DELETE: u8 = 2;

/// Capacity of each watch's outgoing channel; the live feed behind it is unbounded so that a
/// slow watcher never blocks writers.
const WATCH_CHANNEL: usize = 256;

/// The embedded redb-backed store. Cheap to clone-by-Arc; all clones share one file.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// State shared with blocking tasks.
struct Inner {
    db: Database,
    /// For error messages: which file failed.
    path: PathBuf,
    /// Serialises commit + live dispatch against watch registration (see module doc).
    hub: Mutex<Vec<LiveWatcher>>,
}

/// A registered watch's live feed.
struct LiveWatcher {
    prefix: String,
    tx: mpsc::UnboundedSender<WatchEvent>,
}

/// Outcome of a conditional write inside the write transaction.
enum WriteOutcome<T> {
    Done(T, Option<WatchEvent>),
    Conflict(Option<Revision>),
}

fn backend(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: "embedded",
        message: format!("{}: {what}: {e}", path.display()),
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        backend: "embedded",
        message: format!("blocking task failed: {e}"),
    }
}

/// Encodes a data-table value.
fn encode_entry(create: Revision, modr: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modr.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a data-table value into a KeyValue (None: record too short, i.e. corrupt).
fn decode_entry(key: &str, raw: &[u8]) -> Option<KeyValue> {
    if raw.len() < 16 {
        return None;
    }
    let create = u64::from_le_bytes(raw[0..8].try_into().ok()?);
    let modr = u64::from_le_bytes(raw[8..16].try_into().ok()?);
    Some(KeyValue {
        key: key.to_string(),
        value: raw[16..].to_vec(),
        create_revision: create,
        mod_revision: modr,
    })
}

/// Encodes a history event: kind ‖ create_revision ‖ key length (u32 LE) ‖ key ‖ value.
fn encode_event(ev: &WatchEvent) -> Vec<u8> {
    let (kind, create, key, value): (u8, u64, &str, &[u8]) = match ev {
        WatchEvent::Put(kv) => (EVENT_PUT, kv.create_revision, &kv.key, &kv.value),
        WatchEvent::Delete { key, .. } => (EVENT_DELETE, 0, key, &[]),
    };
    let mut out = Vec::with_capacity(13 + key.len() + value.len());
    out.push(kind);
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a history event stored at `revision` (None: corrupt).
fn decode_event(revision: Revision, raw: &[u8]) -> Option<WatchEvent> {
    let kind = *raw.first()?;
    let create = u64::from_le_bytes(raw.get(1..9)?.try_into().ok()?);
    let klen = u32::from_le_bytes(raw.get(9..13)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(raw.get(13..13 + klen)?)
        .ok()?
        .to_string();
    let value = raw.get(13 + klen..)?.to_vec();
    match kind {
        EVENT_PUT => Some(WatchEvent::Put(KeyValue {
            key,
            value,
            create_revision: create,
            mod_revision: revision,
        })),
        EVENT_DELETE if value.is_empty() => Some(WatchEvent::Delete { key, revision }),
        _ => None,
    }
}

fn event_key(ev: &WatchEvent) -> &str {
    match ev {
        WatchEvent::Put(kv) => &kv.key,
        WatchEvent::Delete { key, .. } => key,
    }
}

impl Inner {
    fn lock_hub(&self) -> MutexGuard<'_, Vec<LiveWatcher>> {
        // A panic while holding the lock cannot leave the list half-updated in a way that
        // matters (it is only pushed to / filtered), so recover from poisoning.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        backend(&self.path, what, e)
    }

    fn read_meta(&self, txn: &ReadTransaction) -> Result<(Revision, Revision), StoreError> {
        let meta = txn
            .open_table(META)
            .map_err(|e| self.err("open meta table", e))?;
        let get = |name: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(name)
                .map_err(|e| self.err("read meta", e))?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        Ok((get(META_REVISION)?, get(META_COMPACTED)?))
    }

    /// Runs one conditional write: `decide` sees the key's current entry and the next
    /// revision and returns what to store (Some(value): put; None: delete) or a conflict.
    /// Commit and live dispatch happen under the hub lock.
    #[allow(clippy::type_complexity)]
    fn write<T>(
        &self,
        key: &str,
        decide: impl FnOnce(
            Option<&KeyValue>,
            Revision,
        ) -> Result<Option<(Option<Vec<u8>>, T)>, Option<Revision>>,
        absent_result: T,
    ) -> Result<T, StoreError> {
        let mut hub = self.lock_hub();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.err("begin write", e))?;
        let outcome = {
            let mut data = txn
                .open_table(DATA)
                .map_err(|e| self.err("open data table", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| self.err("open meta table", e))?;
            let mut history = txn
                .open_table(HISTORY)
                .map_err(|e| self.err("open history table", e))?;
            let current = match data.get(key).map_err(|e| self.err("read key", e))? {
                Some(raw) => Some(
                    decode_entry(key, raw.value())
                        .ok_or_else(|| self.err("corrupt record", format!("key {key:?}")))?,
                ),
                None => None,
            };
            let last = meta
                .get(META_REVISION)
                .map_err(|e| self.err("read meta", e))?
                .map(|v| v.value())
                .unwrap_or(0);
            let rev = last + 1;
            match decide(current.as_ref(), rev) {
                Err(cur) => WriteOutcome::Conflict(cur),
                Ok(None) => WriteOutcome::Done(absent_result, None),
                Ok(Some((Some(value), out))) => {
                    let create = current.as_ref().map(|kv| kv.create_revision).unwrap_or(rev);
                    data.insert(key, encode_entry(create, rev, &value).as_slice())
                        .map_err(|e| self.err("write key", e))?;
                    let ev = WatchEvent::Put(KeyValue {
                        key: key.to_string(),
                        value,
                        create_revision: create,
                        mod_revision: rev,
                    });
                    history
                        .insert(rev, encode_event(&ev).as_slice())
                        .map_err(|e| self.err("write history", e))?;
                    meta.insert(META_REVISION, rev)
                        .map_err(|e| self.err("write meta", e))?;
                    WriteOutcome::Done(out, Some(ev))
                }
                Ok(Some((None, out))) => {
                    data.remove(key).map_err(|e| self.err("delete key", e))?;
                    let ev = WatchEvent::Delete {
                        key: key.to_string(),
                        revision: rev,
                    };
                    history
                        .insert(rev, encode_event(&ev).as_slice())
                        .map_err(|e| self.err("write history", e))?;
                    meta.insert(META_REVISION, rev)
                        .map_err(|e| self.err("write meta", e))?;
                    WriteOutcome::Done(out, Some(ev))
                }
            }
        };
        match outcome {
            WriteOutcome::Conflict(current) => {
                txn.abort().map_err(|e| self.err("abort", e))?;
                Err(StoreError::Conflict {
                    key: key.to_string(),
                    current,
                })
            }
            WriteOutcome::Done(out, None) => {
                txn.abort().map_err(|e| self.err("abort", e))?;
                Ok(out)
            }
            WriteOutcome::Done(out, Some(ev)) => {
                txn.commit().map_err(|e| self.err("commit", e))?;
                // Dispatch in commit order (we still hold the hub lock); drop dead watchers.
                hub.retain(|w| {
                    !event_key(&ev).starts_with(w.prefix.as_str()) || w.tx.send(ev.clone()).is_ok()
                });
                hub.retain(|w| !w.tx.is_closed());
                Ok(out)
            }
        }
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed, with parent directories) the redb file at `path`.
    pub async fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(join_error)?
    }

    fn open_blocking(path: PathBuf) -> Result<EmbeddedStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| backend(&path, "create parent directory", e))?;
        }
        let db = Database::create(&path).map_err(|e| backend(&path, "open", e))?;
        let inner = Inner {
            db,
            path,
            hub: Mutex::new(Vec::new()),
        };
        // Create the tables and check the layout version once, so readers never see a file
        // without tables.
        let txn = inner
            .db
            .begin_write()
            .map_err(|e| inner.err("begin write", e))?;
        {
            txn.open_table(DATA)
                .map_err(|e| inner.err("open data table", e))?;
            txn.open_table(HISTORY)
                .map_err(|e| inner.err("open history table", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| inner.err("open meta table", e))?;
            let format = meta
                .get(META_FORMAT)
                .map_err(|e| inner.err("read meta", e))?
                .map(|v| v.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)
                        .map_err(|e| inner.err("write meta", e))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(inner.err(
                        "unsupported layout",
                        format!("file format {other}, this build reads format {FORMAT_VERSION}"),
                    ))
                }
            }
        }
        txn.commit().map_err(|e| inner.err("commit", e))?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The oldest revision still replayable by a watch (0: never compacted).
    pub async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.blocking(|inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| inner.err("begin read", e))?;
            Ok(inner.read_meta(&txn)?.1)
        })
        .await
    }

    /// Verifies the file's invariants: every stored mod_revision and history revision is <= the
    /// revision counter, history holds nothing older than the compaction point, and each key's
    /// current entry matches its latest history event (when that event is still in history).
    /// Used after a crash and by `seam` diagnostics; returns a description of the first
    /// violation as a Backend error.
    pub async fn check_consistency(&self) -> Result<(), StoreError> {
        self.blocking(|inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| inner.err("begin read", e))?;
            let (rev, compacted) = inner.read_meta(&txn)?;
            let bad = |m: String| inner.err("inconsistent file", m);
            let data = txn
                .open_table(DATA)
                .map_err(|e| inner.err("open data table", e))?;
            let history = txn
                .open_table(HISTORY)
                .map_err(|e| inner.err("open history table", e))?;
            let mut latest: std::collections::BTreeMap<String, WatchEvent> = Default::default();
            for item in history.iter().map_err(|e| inner.err("scan history", e))? {
                let (k, v) = item.map_err(|e| inner.err("scan history", e))?;
                let r = k.value();
                if r > rev {
                    return Err(bad(format!(
                        "history revision {r} is above the revision counter {rev}"
                    )));
                }
                if r < compacted {
                    return Err(bad(format!(
                        "history revision {r} is below the compaction point {compacted}"
                    )));
                }
                let ev = decode_event(r, v.value())
                    .ok_or_else(|| bad(format!("corrupt history record at revision {r}")))?;
                latest.insert(event_key(&ev).to_string(), ev);
            }
            for item in data.iter().map_err(|e| inner.err("scan data", e))? {
                let (k, v) = item.map_err(|e| inner.err("scan data", e))?;
                let key = k.value();
                let kv = decode_entry(key, v.value())
                    .ok_or_else(|| bad(format!("corrupt record for key {key:?}")))?;
                if kv.mod_revision > rev
                    || kv.create_revision > kv.mod_revision
                    || kv.create_revision == 0
                {
                    return Err(bad(format!(
                        "key {key:?} has create/mod revisions {}/{} with counter {rev}",
                        kv.create_revision, kv.mod_revision
                    )));
                }
                match latest.remove(key) {
                    Some(WatchEvent::Put(h)) if h == kv => {}
                    None if kv.mod_revision < compacted => {}
                    other => {
                        return Err(bad(format!(
                            "key {key:?} = {kv:?} but its latest history event is {other:?}"
                        )))
                    }
                }
            }
            // Keys left in `latest` must have been deleted last.
            if let Some((key, ev)) = latest
                .into_iter()
                .find(|(_, ev)| matches!(ev, WatchEvent::Put(_)))
            {
                return Err(bad(format!(
                    "key {key:?} is missing but history's last event for it is {ev:?}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(join_error)?
    }
}

/// Sends every history event in `from..=upto` under `prefix` from the snapshot `txn`.
/// Returns false if the receiver went away.
fn replay(
    inner_path: &Path,
    txn: ReadTransaction,
    prefix: &str,
    from: Revision,
    upto: Revision,
    out: &mpsc::Sender<Result<WatchEvent, StoreError>>,
) -> bool {
    let send = |item| out.blocking_send(item).is_ok();
    let history = match txn.open_table(HISTORY) {
        Ok(t) => t,
        Err(e) => return send(Err(backend(inner_path, "open history table", e))),
    };
    let range = match history.range(from..=upto) {
        Ok(r) => r,
        Err(e) => return send(Err(backend(inner_path, "scan history", e))),
    };
    for item in range {
        let item = item
            .map_err(|e| backend(inner_path, "scan history", e))
            .and_then(|(k, v)| {
                decode_event(k.value(), v.value()).ok_or_else(|| {
                    backend(
                        inner_path,
                        "corrupt history record",
                        format!("revision {}", k.value()),
                    )
                })
            });
        match item {
            Ok(ev) if !event_key(&ev).starts_with(prefix) => {}
            Ok(ev) => {
                if !send(Ok(ev)) {
                    return false;
                }
            }
            Err(e) => {
                send(Err(e));
                return false;
            }
        }
    }
    true
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.blocking(move |inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| inner.err("begin read", e))?;
            let data = txn
                .open_table(DATA)
                .map_err(|e| inner.err("open data table", e))?;
            let raw = data
                .get(key.as_str())
                .map_err(|e| inner.err("read key", e))?;
            match raw {
                None => Ok(None),
                Some(raw) => decode_entry(&key, raw.value())
                    .map(Some)
                    .ok_or_else(|| inner.err("corrupt record", format!("key {key:?}"))),
            }
        })
        .await
    }

    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition,
    ) -> Result<Revision, StoreError> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner.write(
                &key,
                |current, rev| {
                    let ok = match condition {
                        Condition::Always => true,
                        Condition::Absent => current.is_none(),
                        Condition::Revision(r) => current.is_some_and(|kv| kv.mod_revision == r),
                    };
                    if ok {
                        Ok(Some((Some(value), rev)))
                    } else {
                        Err(current.map(|kv| kv.mod_revision))
                    }
                },
                0,
            )
        })
        .await
    }

    async fn delete(
        &self,
        key: &str,
        condition: Condition,
    ) -> Result<Option<Revision>, StoreError> {
        let key = key.to_string();
        self.blocking(move |inner| {
            inner.write(
                &key,
                |current, rev| match (condition, current) {
                    (Condition::Always | Condition::Absent, None) => Ok(None),
                    (Condition::Always, Some(_)) => Ok(Some((None, Some(rev)))),
                    (Condition::Revision(r), Some(kv)) if kv.mod_revision == r => {
                        Ok(Some((None, Some(rev))))
                    }
                    (_, current) => Err(current.map(|kv| kv.mod_revision)),
                },
                None,
            )
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_string();
        self.blocking(move |inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| inner.err("begin read", e))?;
            let (rev, _) = inner.read_meta(&txn)?;
            let data = txn
                .open_table(DATA)
                .map_err(|e| inner.err("open data table", e))?;
            let mut out = Vec::new();
            for item in data
                .range(prefix.as_str()..)
                .map_err(|e| inner.err("scan data", e))?
            {
                let (k, v) = item.map_err(|e| inner.err("scan data", e))?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(
                    decode_entry(key, v.value())
                        .ok_or_else(|| inner.err("corrupt record", format!("key {key:?}")))?,
                );
            }
            Ok((out, rev))
        })
        .await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver, StoreError> {
        let prefix_owned = prefix.to_string();
        let (snapshot, upto, from, live) = self
            .blocking(move |inner| {
                let mut hub = inner.lock_hub();
                let txn = inner
                    .db
                    .begin_read()
                    .map_err(|e| inner.err("begin read", e))?;
                let (rev, compacted) = inner.read_meta(&txn)?;
                let from = if from == 0 { rev + 1 } else { from };
                if from < compacted {
                    return Err(StoreError::Compacted {
                        requested: from,
                        compacted,
                    });
                }
                let (tx, rx) = mpsc::unbounded_channel();
                hub.push(LiveWatcher {
                    prefix: prefix_owned,
                    tx,
                });
                Ok((txn, rev, from, rx))
            })
            .await?;
        let (out, rx) = mpsc::channel(WATCH_CHANNEL);
        let path = self.inner.path.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut live = live;
            if from <= upto {
                let out2 = out.clone();
                let replayed = tokio::task::spawn_blocking(move || {
                    replay(&path, snapshot, &prefix, from, upto, &out2)
                })
                .await;
                if !matches!(replayed, Ok(true)) {
                    return;
                }
            } else {
                drop(snapshot);
            }
            loop {
                tokio::select! {
                    ev = live.recv() => match ev {
                        // Live events are all > upto; `from` may be in the future.
                        Some(ev) if ev.revision() < from => {}
                        Some(ev) => if out.send(Ok(ev)).await.is_err() { return },
                        None => return, // store dropped
                    },
                    _ = out.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.blocking(move |inner| {
            let _hub = inner.lock_hub();
            let txn = inner
                .db
                .begin_write()
                .map_err(|e| inner.err("begin write", e))?;
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| inner.err("open meta table", e))?;
                let rev = meta
                    .get(META_REVISION)
                    .map_err(|e| inner.err("read meta", e))?
                    .map(|v| v.value())
                    .unwrap_or(0);
                let compacted = meta
                    .get(META_COMPACTED)
                    .map_err(|e| inner.err("read meta", e))?
                    .map(|v| v.value())
                    .unwrap_or(0);
                if revision > rev {
                    return Err(inner.err(
                        "compact",
                        format!("revision {revision} is in the future (current revision is {rev})"),
                    ));
                }
                if revision <= compacted {
                    return Ok(());
                }
                let mut history = txn
                    .open_table(HISTORY)
                    .map_err(|e| inner.err("open history table", e))?;
                history
                    .retain_in(..revision, |_, _| false)
                    .map_err(|e| inner.err("compact history", e))?;
                meta.insert(META_COMPACTED, revision)
                    .map_err(|e| inner.err("write meta", e))?;
            }
            txn.commit().map_err(|e| inner.err("commit", e))
        })
        .await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.blocking(|inner| {
            let txn = inner
                .db
                .begin_read()
                .map_err(|e| inner.err("begin read", e))?;
            Ok(inner.read_meta(&txn)?.0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_and_event_codecs_round_trip() {
        let raw = encode_entry(3, 7, b"v");
        assert_eq!(
            decode_entry("k", &raw),
            Some(KeyValue {
                key: "k".into(),
                value: b"v".to_vec(),
                create_revision: 3,
                mod_revision: 7
            })
        );
        assert_eq!(decode_entry("k", &raw[..15]), None);
        let put = WatchEvent::Put(KeyValue {
            key: "a/b".into(),
            value: b"xyz".to_vec(),
            create_revision: 2,
            mod_revision: 9,
        });
        assert_eq!(decode_event(9, &encode_event(&put)), Some(put));
        let del = WatchEvent::Delete {
            key: "a/b".into(),
            revision: 10,
        };
        assert_eq!(decode_event(10, &encode_event(&del)), Some(del));
        let mut bad = encode_event(&WatchEvent::Delete {
            key: "k".into(),
            revision: 1,
        });
        bad[0] = 9;
        assert_eq!(decode_event(1, &bad), None);
        assert_eq!(decode_event(1, &[EVENT_PUT, 0, 0]), None);
    }
}
