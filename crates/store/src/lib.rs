//! Seam's datastore: one trait that every backend implements, so IPAM, resources and the
//! agent are written once and run on an embedded file (one machine) or on etcd (many).
//!
//! The model is etcd's: a flat keyspace of strings, one global revision counter that every
//! write advances, compare-and-swap on a key's modification revision, and watches that can
//! resume from any revision not yet compacted.

use std::sync::Arc;

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod remote;
mod spec;

pub use embedded::EmbeddedStore;
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use remote::{serve_unix, RemoteStore, StoreServer};
pub use spec::DatastoreSpec;

/// The environment variable every seam command reads when `--datastore` is not given.
pub const DATASTORE_ENV: &str = "SEAM_DATASTORE";

/// Where the embedded store lives when neither `--datastore` nor `SEAM_DATASTORE` says otherwise.
pub const DEFAULT_DATASTORE: &str = "file:/var/lib/seam/seam.redb";

/// The datastore spec to use when the user gave none: `SEAM_DATASTORE` if set and non-empty,
/// else the default embedded file. For clap users that want a computed default.
pub fn default_spec() -> String {
    match std::env::var(DATASTORE_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => DEFAULT_DATASTORE.to_string(),
    }
}

/// Opens the datastore named by `spec` (`file:PATH`, `etcd://HOST:PORT[,HOST:PORT...]` or
/// `unix:PATH`, a store server's socket), so every command picks its backend at run time from
/// the same option.
pub async fn open(spec: &str) -> Result<Arc<dyn Store>, StoreError> {
    match DatastoreSpec::parse(spec)? {
        DatastoreSpec::File(path) => Ok(Arc::new(EmbeddedStore::open(&path).await?)),
        DatastoreSpec::Unix(path) => Ok(Arc::new(RemoteStore::connect(&path).await?)),
        #[cfg(feature = "etcd")]
        DatastoreSpec::Etcd(endpoints) => Ok(Arc::new(EtcdStore::connect(&endpoints).await?)),
        #[cfg(not(feature = "etcd"))]
        DatastoreSpec::Etcd(_) => Err(StoreError::InvalidSpec {
            spec: spec.to_string(),
            reason: "etcd support is not compiled into this binary (build with the `etcd` cargo feature)".into(),
        }),
    }
}

/// A store-wide, monotonically increasing revision. Every successful write gets a new one.
pub type Revision = u64;

/// A stored key with the revisions that CAS and watches need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since it was last absent).
    pub create_revision: Revision,
    /// Revision of the last write to this key; the value `put_if` compares against.
    pub mod_revision: Revision,
}

/// The condition a write is made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional.
    Always,
    /// Only if the key does not exist (create).
    Absent,
    /// Only if the key exists with exactly this `mod_revision` (compare-and-swap).
    Revision(Revision),
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, revision: Revision },
}

impl WatchEvent {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// Errors every backend reports the same way, so callers can retry on `Conflict` and
/// re-list on `Compacted` without knowing which backend they talk to.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold. `current` is the key's mod_revision now (None: absent).
    #[error("conflict on {key}: current revision is {current:?}")]
    Conflict {
        key: String,
        current: Option<Revision>,
    },
    /// A watch asked for history older than the compaction point.
    #[error("revision {requested} is compacted (oldest available is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The datastore option could not be understood.
    #[error("invalid datastore {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },
    /// The backend failed (I/O, corruption, network, cluster unavailable).
    #[error("{backend} backend: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

/// Watch events in revision order, without gaps or duplicates. Backends resume by themselves
/// after a broken connection (etcd: on another endpoint, from the last revision delivered). An
/// `Err` item (e.g. `Compacted`) ends the watch: the channel closes after it, and the caller
/// re-lists and watches again. Otherwise the channel closes only when the store shuts down.
pub type WatchReceiver = tokio::sync::mpsc::Receiver<Result<WatchEvent, StoreError>>;

/// The one datastore interface (get / put-if-revision / delete / list by prefix / watch).
/// Object-safe so that `--datastore` can pick the backend at run time.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// One key, or None.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Write `value` if `condition` holds; returns the new revision.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        condition: Condition,
    ) -> Result<Revision, StoreError>;
    /// Delete if `condition` holds. Returns the revision of the delete, or None if the key was
    /// absent (and the condition allowed that).
    async fn delete(&self, key: &str, condition: Condition)
        -> Result<Option<Revision>, StoreError>;
    /// Every key starting with `prefix`, in key order, with the store revision they were read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;
    /// Changes under `prefix` with revision >= `from` (etcd semantics: pass list's revision + 1).
    /// `from == 0` means "from the next write" (etcd's convention for no start revision).
    /// A `from` older than the compaction point fails with `Compacted`, either here or as the
    /// first item of the channel.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchReceiver, StoreError>;
    /// Drop history older than `revision`; later watches from before it fail with `Compacted`.
    /// Compacting to a revision at or below the current compaction point is a no-op; to a
    /// revision above the current store revision is an error.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// The current store revision.
    async fn revision(&self) -> Result<Revision, StoreError>;
}
