//! A cache of one kind kept current by a [`watcher`]: [`Store`], and [`Informer`] which
//! runs the watcher for it and tells controllers which objects changed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use skiff_api::Resource;
use tokio::sync::broadcast;

use crate::api::Api;
use crate::error::Result;
use crate::watcher::{Event, WatcherParams, watcher};

/// The key of an object in a [`Store`]: its namespace (none for cluster-scoped kinds)
/// and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// The key of a cluster-scoped object.
    pub fn new(name: &str) -> Self {
        ObjectRef {
            namespace: None,
            name: name.to_string(),
        }
    }

    /// This key in `namespace`.
    pub fn within(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// The key of `object`.
    pub fn from_obj<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectRef {
            namespace: meta.namespace.clone().filter(|ns| !ns.is_empty()),
            name: meta.name().to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `namespace/name`, or `name` for cluster-scoped objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A read-only view of the objects of one kind, as last seen by a watcher. Cheap to
/// clone; reads never wait for writes for long (a short lock, never held across
/// `.await`).
pub struct Store<K> {
    inner: Arc<StoreInner<K>>,
}

struct StoreInner<K> {
    objects: RwLock<HashMap<ObjectRef, Arc<K>>>,
    /// `true` once the first complete list arrived.
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<K> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ObjectRef, Arc<K>>> {
        // A panic while writing leaves a map that is still a map: keep serving it.
        self.inner.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The object with this key.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<ObjectRef> {
        self.read().keys().cloned().collect()
    }

    /// The objects `keep` accepts.
    pub fn filter(&self, mut keep: impl FnMut(&K) -> bool) -> Vec<Arc<K>> {
        self.read().values().filter(|o| keep(o)).cloned().collect()
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first complete list has arrived (before, the store may be missing
    /// objects that exist).
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until the first complete list has arrived.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

/// The writing side of a [`Store`]: applies watcher events.
pub struct Writer<K> {
    store: Store<K>,
}

/// A new empty store and its writer.
pub fn store<K: Resource>() -> (Store<K>, Writer<K>) {
    let store = Store {
        inner: Arc::new(StoreInner {
            objects: RwLock::new(HashMap::new()),
            ready: tokio::sync::watch::Sender::new(false),
        }),
    };
    (store.clone(), Writer { store })
}

impl<K: Resource> Writer<K> {
    /// The store this writer fills.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Applies one event and returns the keys whose object changed: appeared, changed,
    /// went. A `Restarted` replaces the whole content; its keys are those of the new
    /// list and those that were known and are not in it any more.
    pub fn apply(&mut self, event: &Event<K>) -> Vec<ObjectRef> {
        let mut objects = self
            .store
            .inner
            .objects
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let changed = match event {
            Event::Applied(object) => {
                let key = ObjectRef::from_obj(object);
                objects.insert(key.clone(), Arc::new(object.clone()));
                vec![key]
            }
            Event::Deleted(object) => {
                let key = ObjectRef::from_obj(object);
                objects.remove(&key);
                vec![key]
            }
            Event::Restarted(list) => {
                let new: HashMap<ObjectRef, Arc<K>> = list
                    .iter()
                    .map(|o| (ObjectRef::from_obj(o), Arc::new(o.clone())))
                    .collect();
                let mut changed: Vec<ObjectRef> = new.keys().cloned().collect();
                changed.extend(objects.keys().filter(|k| !new.contains_key(k)).cloned());
                *objects = new;
                changed
            }
        };
        drop(objects);
        if matches!(event, Event::Restarted(_)) {
            self.store.inner.ready.send_replace(true);
        }
        changed
    }
}

/// Applies every event of `stream` to `writer`, passing the events on.
pub fn reflector<K: Resource, S>(mut writer: Writer<K>, stream: S) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<Event<K>>>,
{
    stream.map(move |event| {
        if let Ok(event) = &event {
            writer.apply(event);
        }
        event
    })
}

/// How many changed keys an informer buffers for a slow subscriber before that
/// subscriber falls back to a full resync from the store.
const CHANGES_CAPACITY: usize = 1024;

/// A watcher and its [`Store`], run on a task that stops when the informer is dropped.
/// Subscribers learn the keys of changed objects, to enqueue them.
pub struct Informer<K> {
    store: Store<K>,
    changes: broadcast::Sender<ObjectRef>,
    _task: AbortOnDrop,
}

impl<K> fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Informer")
            .field("store", &self.store)
            .finish()
    }
}

impl<K: Resource> Informer<K> {
    /// Starts watching `api` (on a new task: call within a tokio runtime). Watch
    /// errors are logged and retried by the watcher.
    pub fn new(api: Api<K>, params: WatcherParams) -> Self {
        let (store, mut writer) = store::<K>();
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let sender = changes.clone();
        let task = tokio::spawn(async move {
            let events = watcher(api, params);
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        for key in writer.apply(&event) {
                            // No subscriber is not an error.
                            let _ = sender.send(key);
                        }
                    }
                    Err(error) => tracing::warn!(kind = K::KIND, %error, "watch failed, retrying"),
                }
            }
        });
        Informer {
            store,
            changes,
            _task: AbortOnDrop(task),
        }
    }

    /// The cache this informer keeps current.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The keys of objects that change from now on, preceded by every key in the
    /// store now (so a late subscriber misses nothing; a key may come twice, which a
    /// [`WorkQueue`](crate::WorkQueue) folds). See [`Changes`].
    pub fn subscribe(&self) -> Changes<K> {
        let receiver = self.changes.subscribe();
        let pending = self.store.keys().into_iter().collect();
        Changes {
            receiver,
            store: self.store.clone(),
            pending,
        }
    }
}

/// The changed keys of an [`Informer`], from [`Informer::subscribe`].
pub struct Changes<K> {
    receiver: broadcast::Receiver<ObjectRef>,
    store: Store<K>,
    /// Keys to hand out before reading the channel again.
    pending: VecDeque<ObjectRef>,
}

impl<K> Changes<K> {
    /// The next changed key; `None` once the informer is dropped. A subscriber that
    /// fell more than the buffer behind gets every key of the store again (a resync),
    /// which is correct for level-triggered controllers.
    pub async fn next(&mut self) -> Option<ObjectRef> {
        loop {
            if let Some(key) = self.pending.pop_front() {
                return Some(key);
            }
            match self.receiver.recv().await {
                Ok(key) => return Some(key),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "informer subscriber lagged, resyncing from the store"
                    );
                    let keys: HashSet<ObjectRef> = self.store.keys().into_iter().collect();
                    self.pending.extend(keys);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A task that is aborted when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
