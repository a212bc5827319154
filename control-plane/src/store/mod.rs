//! The watchable key-value store under the API server.
//!
//! One trait, [`Store`], with the operations the API server needs and etcd offers:
//! get, list by prefix, create (fails if the key exists), compare-and-swap update and
//! delete on a key's revision, watch a prefix from a revision, and compaction of the
//! history a watch resumes from. Every change gets the next value of one global
//! revision counter; an object's `resourceVersion` is the revision of its last change.
//!
//! A write is acknowledged only once it is durable: after a crash, everything a caller
//! was told succeeded is still there. Watch events are published only after that point,
//! so a watcher never sees a change that a crash could take back.
//!
//! Two backends: [`sled::SledStore`], embedded, the default; and [`etcd::EtcdStore`],
//! which several API servers can share.

pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod sled;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

/// A position in the store's history; every write takes the next one.
pub type Revision = u64;

/// A key with its value and the revisions of its creation and last change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// What a change did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was removed.
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new value; for a delete, the last value the key had.
    /// `kv.mod_revision` is the revision of this change in both cases.
    pub kv: KeyValue,
    /// The value before this change, if the key existed: lets a filtered watch tell
    /// an object that stopped matching from one that never did.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of this change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A page of a prefix listing.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Keys in ascending order.
    pub items: Vec<KeyValue>,
    /// The store revision the listing reflects; a watch from it misses nothing.
    pub revision: Revision,
    /// Whether keys past the last one returned remain (the listing hit `limit`).
    pub more: bool,
}

/// Which part of a prefix to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (pagination).
    pub start_after: Option<String>,
    /// At most this many keys; `None` lists them all.
    pub limit: Option<usize>,
}

/// The stream of changes a watch delivers, oldest first.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    /// A compare-and-swap saw another revision than the caller expected.
    #[error("key {key} is at revision {current}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The history a watch asked for was compacted away.
    #[error("revision {requested} has been compacted; the oldest kept is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The value is larger than the backend takes (etcd's `--max-request-bytes`, 1.5 MiB
    /// by default, is below the API server's 3 MiB body limit).
    #[error("the value of {key} is larger than the store takes: {detail}")]
    TooLarge { key: String, detail: String },
    /// A watcher fell too far behind and was dropped; it should resume from its last revision.
    #[error("watch fell behind and was closed")]
    WatchLagged,
    #[error("store backend failed: {0}")]
    Backend(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// The operations the API server needs of its storage; see the module docs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in order, as of one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError>;

    /// Creates `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Replaces `key`'s value if its revision is still `expected`; otherwise `Conflict`
    /// (or `NotFound`).
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Removes `key`, if `expected` is `None` or still its revision. Returns the last
    /// value, with `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Changes under `prefix` with a revision greater than `after`, then every new one as
    /// it becomes durable. Fails with `Compacted` if that history is gone.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Forgets the history before `revision`: watches from older revisions get `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the newest durable change.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The oldest revision a watch can still start after.
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;
}
