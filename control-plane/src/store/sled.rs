//! The embedded default store: one sled database in one directory, nothing to install.
//!
//! Layout, all in sled's default tree:
//! - `o` + key → create revision, mod revision (8 bytes each, big-endian), value;
//! - `l` + revision → the event of that revision (the history watches resume from);
//! - `m/rev`, `m/compacted` → the current and compacted revisions.
//!
//! Writers are serialized by one mutex that assigns revisions and applies each change
//! as one atomic sled batch (object, history entry, revision counter). Durability comes
//! from a flusher thread: it takes every change applied since its last flush, makes them
//! durable with one `flush` (group commit: a thousand concurrent writers cost a handful
//! of fsyncs, not a thousand), then marks them durable and publishes their events. A
//! writer answers only once its revision is durable.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use super::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream,
};

const OBJECT: u8 = b'o';
const HISTORY: u8 = b'l';
const META_REVISION: &[u8] = b"m/rev";
const META_COMPACTED: &[u8] = b"m/compacted";
/// Live events buffered per watcher before it falls back to reading the history.
const EVENT_BUFFER: usize = 4096;
/// History entries read at once while a watcher catches up.
const CATCH_UP_BATCH: usize = 1024;

/// The sled-backed [`Store`]. Dropping it flushes what is pending and stops the flusher.
pub struct SledStore {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    db: sled::Db,
    writes: Mutex<WriteState>,
    /// Wakes the flusher when a change is applied.
    flush_wanted: Condvar,
    /// The newest durable revision.
    durable: watch::Sender<Revision>,
    /// Durable changes, in revision order.
    events: broadcast::Sender<Arc<Event>>,
    compacted: AtomicU64,
}

struct WriteState {
    revision: Revision,
    /// Applied but not yet flushed, in revision order.
    unflushed: Vec<Event>,
    closing: bool,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            // We flush ourselves, exactly when a writer waits for durability.
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let revision = read_u64(&db, META_REVISION)?;
        let compacted = read_u64(&db, META_COMPACTED)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let shared = Arc::new(Shared {
            db,
            writes: Mutex::new(WriteState {
                revision,
                unflushed: Vec::new(),
                closing: false,
            }),
            flush_wanted: Condvar::new(),
            durable: watch::Sender::new(revision),
            events,
            compacted: AtomicU64::new(compacted),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sled-flusher".into())
                .spawn(move || shared.flush_loop())
                .map_err(|e| StoreError::Backend(format!("starting the flusher thread: {e}")))?
        };
        Ok(SledStore {
            shared,
            flusher: Some(flusher),
        })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.shared.lock_writes().closing = true;
        self.shared.flush_wanted.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl Shared {
    fn lock_writes(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding the lock leaves no half-applied batch (batches are
        // atomic), so the state is still consistent.
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn flush_loop(&self) {
        loop {
            let batch = {
                let mut state = self.lock_writes();
                while state.unflushed.is_empty() && !state.closing {
                    state = self
                        .flush_wanted
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if state.unflushed.is_empty() {
                    return;
                }
                std::mem::take(&mut state.unflushed)
            };
            let mut delay = Duration::from_millis(10);
            while let Err(error) = self.db.flush() {
                tracing::error!(%error, "flushing the store failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            let newest = batch.last().map(Event::revision).unwrap_or_default();
            // Durable first, then published: whoever sees an event can read its revision.
            self.durable.send_replace(newest);
            for event in batch {
                let _ = self.events.send(Arc::new(event));
            }
        }
    }

    /// Applies one change under the write lock and queues it for the flusher. Returns
    /// the event; the caller then waits for its revision to be durable.
    fn apply(
        &self,
        key: &str,
        decide: impl FnOnce(Option<KeyValue>, Revision) -> Result<(EventKind, KeyValue), StoreError>,
    ) -> Result<Event, StoreError> {
        let mut state = self.lock_writes();
        let prev = self.get_now(key)?;
        let revision = state.revision + 1;
        let (kind, kv) = decide(prev.clone(), revision)?;
        let event = Event { kind, kv, prev };

        let mut batch = sled::Batch::default();
        match kind {
            EventKind::Put => batch.insert(object_key(key), encode_object(&event.kv)),
            EventKind::Delete => batch.remove(object_key(key)),
        }
        batch.insert(history_key(revision).to_vec(), encode_event(&event));
        batch.insert(META_REVISION, &revision.to_be_bytes());
        self.db.apply_batch(batch).map_err(backend)?;

        state.revision = revision;
        state.unflushed.push(event.clone());
        drop(state);
        self.flush_wanted.notify_one();
        Ok(event)
    }

    async fn wait_durable(&self, revision: Revision) {
        let mut durable = self.durable.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = durable.wait_for(|d| *d >= revision).await;
    }

    fn get_now(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.db.get(object_key(key)).map_err(backend)? {
            Some(raw) => Ok(Some(decode_object(key.to_string(), &raw)?)),
            None => Ok(None),
        }
    }

    /// Events under `prefix` with revisions in `from..=to`, at most `CATCH_UP_BATCH`
    /// of them scanned; returns them and the next revision to read.
    fn read_history(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
    ) -> Result<(Vec<Event>, Revision), StoreError> {
        let mut events = Vec::new();
        let mut next = from;
        let range = history_key(from).to_vec()..=history_key(to).to_vec();
        for entry in self.db.range(range).take(CATCH_UP_BATCH) {
            let (raw_key, raw) = entry.map_err(backend)?;
            let event = decode_event(&raw)?;
            next = revision_of_history_key(&raw_key)? + 1;
            if event.kv.key.starts_with(prefix) {
                events.push(event);
            }
        }
        if next == from {
            next = to + 1;
        }
        // Entries may have been removed by a compaction while we read.
        let compacted = self.compacted.load(Ordering::SeqCst);
        if from <= compacted {
            return Err(StoreError::Compacted {
                requested: from - 1,
                compacted,
            });
        }
        Ok((events, next))
    }
}

#[async_trait]
impl Store for SledStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let kv = self.shared.get_now(key)?;
        if let Some(kv) = &kv {
            // Never show a change a crash could still take back.
            self.shared.wait_durable(kv.mod_revision).await;
        }
        Ok(kv)
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let limit = options.limit.unwrap_or(usize::MAX);
        let (items, more, revision) = {
            // Holding the write lock makes the listing one consistent revision.
            let state = self.shared.lock_writes();
            let mut start = object_key(prefix);
            if let Some(after) = &options.start_after {
                start = object_key(after);
                start.push(0);
            }
            let mut items = Vec::new();
            let mut more = false;
            let object_prefix = object_key(prefix);
            for entry in self.shared.db.range(start..) {
                let (raw_key, raw) = entry.map_err(backend)?;
                if !raw_key.starts_with(&object_prefix) {
                    break;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                let key = String::from_utf8(raw_key[1..].to_vec())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                items.push(decode_object(key, &raw)?);
            }
            (items, more, state.revision)
        };
        self.shared.wait_durable(revision).await;
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let event = self.shared.apply(key, |prev, revision| match prev {
            Some(_) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            None => Ok((
                EventKind::Put,
                KeyValue {
                    key: key.to_string(),
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                },
            )),
        })?;
        self.shared.wait_durable(event.revision()).await;
        Ok(event.kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let event = self.shared.apply(key, |prev, revision| match prev {
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Some(prev) if prev.mod_revision != expected => Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: prev.mod_revision,
            }),
            Some(prev) => Ok((
                EventKind::Put,
                KeyValue {
                    key: key.to_string(),
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                },
            )),
        })?;
        self.shared.wait_durable(event.revision()).await;
        Ok(event.kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let event = self.shared.apply(key, |prev, revision| match prev {
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Some(prev) if expected.is_some_and(|e| e != prev.mod_revision) => {
                Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or_default(),
                    current: prev.mod_revision,
                })
            }
            Some(prev) => Ok((
                EventKind::Delete,
                KeyValue {
                    mod_revision: revision,
                    ..prev
                },
            )),
        })?;
        self.shared.wait_durable(event.revision()).await;
        Ok(event.kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the history, so nothing falls between the two.
        let live = self.shared.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let watcher = Watcher {
            shared: self.shared.clone(),
            prefix: prefix.to_string(),
            next: after + 1,
            backlog: VecDeque::new(),
            live,
            durable: self.shared.durable.subscribe(),
            failed: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            |mut w| async move {
                let item = w.next_event().await?;
                Some((item, w))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let current = *shared.durable.borrow();
            let revision = revision.min(current);
            if revision <= shared.compacted.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Announce first: a watcher reading the history from now on sees it is gone.
            shared.compacted.store(revision, Ordering::SeqCst);
            shared
                .db
                .insert(META_COMPACTED, &revision.to_be_bytes())
                .map_err(backend)?;
            let range = history_key(0).to_vec()..=history_key(revision).to_vec();
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for entry in shared.db.range(range) {
                let (key, _) = entry.map_err(backend)?;
                batch.remove(key);
                count += 1;
                if count % 10_000 == 0 {
                    shared
                        .db
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(backend)?;
                }
            }
            shared.db.apply_batch(batch).map_err(backend)?;
            shared.db.flush().map_err(backend)?;
            tracing::debug!(revision, removed = count, "compacted store history");
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Backend(format!("compaction task failed: {e}")))?
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(*self.shared.durable.borrow())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }
}

/// One watch: reads the history until it has caught up with what is durable, then
/// follows the live events; if it falls behind those, it goes back to the history.
struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// The next revision this watcher has not yet looked at.
    next: Revision,
    backlog: VecDeque<Event>,
    live: broadcast::Receiver<Arc<Event>>,
    durable: watch::Receiver<Revision>,
    failed: bool,
}

impl Watcher {
    async fn next_event(&mut self) -> Option<Result<Event, StoreError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Some(Ok(event));
            }
            let durable = *self.durable.borrow_and_update();
            if self.next <= durable {
                match self.shared.read_history(&self.prefix, self.next, durable) {
                    Ok((events, next)) => {
                        self.backlog.extend(events);
                        self.next = next;
                        continue;
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some(Err(error));
                    }
                }
            }
            match self.live.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision != self.next {
                        // Already seen (< next), or a gap (> next) the history fills:
                        // events are durable before they are published.
                        continue;
                    }
                    self.next = revision + 1;
                    if event.kv.key.starts_with(&self.prefix) {
                        return Some(Ok(Event::clone(&event)));
                    }
                }
                // Missed live events are in the history; the loop reads them from there.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn backend(error: sled::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn read_u64(db: &sled::Db, key: &[u8]) -> Result<u64, StoreError> {
    match db.get(key).map_err(backend)? {
        Some(raw) => Ok(u64::from_be_bytes(raw.as_ref().try_into().map_err(
            |_| StoreError::Corrupt(format!("{} is not 8 bytes", String::from_utf8_lossy(key))),
        )?)),
        None => Ok(0),
    }
}

fn object_key(key: &str) -> Vec<u8> {
    let mut raw = Vec::with_capacity(key.len() + 1);
    raw.push(OBJECT);
    raw.extend_from_slice(key.as_bytes());
    raw
}

fn history_key(revision: Revision) -> [u8; 9] {
    let mut raw = [0u8; 9];
    raw[0] = HISTORY;
    raw[1..].copy_from_slice(&revision.to_be_bytes());
    raw
}

fn revision_of_history_key(raw: &[u8]) -> Result<Revision, StoreError> {
    raw.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("history key is not 9 bytes".into()))
}

fn encode_object(kv: &KeyValue) -> Vec<u8> {
    let mut raw = Vec::with_capacity(16 + kv.value.len());
    raw.extend_from_slice(&kv.create_revision.to_be_bytes());
    raw.extend_from_slice(&kv.mod_revision.to_be_bytes());
    raw.extend_from_slice(&kv.value);
    raw
}

fn decode_object(key: String, raw: &[u8]) -> Result<KeyValue, StoreError> {
    let mut reader = Reader(raw);
    let create_revision = reader.u64()?;
    let mod_revision = reader.u64()?;
    Ok(KeyValue {
        key,
        value: Bytes::copy_from_slice(reader.0),
        create_revision,
        mod_revision,
    })
}

/// `kind, key, value, create, mod, [prev value, prev create, prev mod]`, with lengths.
fn encode_event(event: &Event) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64 + event.kv.key.len() + event.kv.value.len());
    raw.push(match event.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    put_bytes(&mut raw, event.kv.key.as_bytes());
    put_bytes(&mut raw, &event.kv.value);
    raw.extend_from_slice(&event.kv.create_revision.to_be_bytes());
    raw.extend_from_slice(&event.kv.mod_revision.to_be_bytes());
    if let Some(prev) = &event.prev {
        put_bytes(&mut raw, &prev.value);
        raw.extend_from_slice(&prev.create_revision.to_be_bytes());
        raw.extend_from_slice(&prev.mod_revision.to_be_bytes());
    }
    raw
}

fn decode_event(raw: &[u8]) -> Result<Event, StoreError> {
    let mut reader = Reader(raw);
    let kind = match reader.take(1)?[0] {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => return Err(StoreError::Corrupt(format!("unknown event kind {other}"))),
    };
    let key = String::from_utf8(reader.bytes()?.to_vec())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let value = Bytes::copy_from_slice(reader.bytes()?);
    let kv = KeyValue {
        key: key.clone(),
        value,
        create_revision: reader.u64()?,
        mod_revision: reader.u64()?,
    };
    let prev = if reader.0.is_empty() {
        None
    } else {
        let value = Bytes::copy_from_slice(reader.bytes()?);
        Some(KeyValue {
            key,
            value,
            create_revision: reader.u64()?,
            mod_revision: reader.u64()?,
        })
    };
    Ok(Event { kind, kv, prev })
}

fn put_bytes(raw: &mut Vec<u8>, bytes: &[u8]) {
    raw.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    raw.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Corrupt("record is truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sled_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(|| async {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SledStore::open(dir.path()).expect("open");
            (Box::new(store) as Box<dyn Store>, dir)
        })
        .await;
    }

    #[tokio::test]
    async fn reopening_keeps_objects_revisions_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (kv, compacted) = {
            let store = SledStore::open(dir.path()).unwrap();
            store.create("/a", Bytes::from_static(b"1")).await.unwrap();
            let kv = store
                .update("/a", Bytes::from_static(b"2"), 1)
                .await
                .unwrap();
            store.create("/b", Bytes::from_static(b"3")).await.unwrap();
            store.compact(2).await.unwrap();
            (kv, store.compacted_revision().await.unwrap())
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.get("/a").await.unwrap(), Some(kv));
        assert_eq!(store.current_revision().await.unwrap(), 3);
        assert_eq!(compacted, 2);
        assert_eq!(store.compacted_revision().await.unwrap(), 2);
        let next = store.create("/c", Bytes::from_static(b"4")).await.unwrap();
        assert_eq!(
            next.mod_revision, 4,
            "revisions continue after a restart, never going back"
        );
    }

    #[test]
    fn events_round_trip_through_the_history_encoding() {
        let kv = KeyValue {
            key: "/k".into(),
            value: Bytes::from_static(b"v"),
            create_revision: 3,
            mod_revision: 9,
        };
        for event in [
            Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: None,
            },
            Event {
                kind: EventKind::Delete,
                kv: kv.clone(),
                prev: Some(KeyValue {
                    mod_revision: 5,
                    ..kv.clone()
                }),
            },
        ] {
            assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
        }
        assert!(
            decode_event(&[0, 0, 0]).is_err(),
            "a truncated record is an error, not a panic"
        );
    }
}
