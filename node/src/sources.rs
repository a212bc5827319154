//! Watches of the ConfigMaps and Secrets this node's pods use: one per object, shared by
//! every pod that uses it, ended with the last of them.
//!
//! A node may read only the ConfigMaps and Secrets of its own pods (the API server's node
//! authorizer), so it cannot watch them all; it follows each one by name, as the kubelet
//! does, with `fieldSelector=metadata.name=NAME`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use skiff_api::Resource;
use skiff_api::core::{ConfigMap, Secret};
use skiff_client::watcher::Event;
use skiff_client::{Api, Client, WatcherParams, watcher};
use tokio::sync::{broadcast, watch};

use crate::AbortOnDrop;

/// Which object: `kind` is `configmap` or `secret`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    namespace: String,
    name: String,
}

/// One object's watch.
struct Shared {
    /// Rings on every change after the first listing.
    changes: broadcast::Sender<()>,
    /// `true` once the first listing is done: changes from then on are seen.
    listed: watch::Receiver<bool>,
    _task: AbortOnDrop,
}

/// The watches, by object; each lives as long as a [`Subscription`] holds it.
pub struct SourceWatches {
    client: Client,
    watches: Mutex<HashMap<Key, Weak<Shared>>>,
}

/// A pod's hold on one object's watch.
pub struct Subscription {
    changes: broadcast::Receiver<()>,
    shared: Arc<Shared>,
}

impl SourceWatches {
    pub fn new(client: Client) -> SourceWatches {
        SourceWatches {
            client,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Follows the `kind` (`configmap` or `secret`) object `namespace/name`, starting a
    /// watch unless one is running.
    pub fn subscribe(&self, kind: &'static str, namespace: &str, name: &str) -> Subscription {
        let key = Key {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        watches.retain(|_, shared| shared.strong_count() > 0);
        let shared = match watches.get(&key).and_then(Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(self.start(&key));
                watches.insert(key, Arc::downgrade(&shared));
                shared
            }
        };
        Subscription {
            changes: shared.changes.subscribe(),
            shared,
        }
    }

    fn start(&self, key: &Key) -> Shared {
        let (changes, _) = broadcast::channel(16);
        let (listed_tx, listed) = watch::channel(false);
        let params = WatcherParams::fields(&format!("metadata.name={}", key.name));
        let task = match key.kind {
            "configmap" => {
                let api = Api::<ConfigMap>::namespaced(self.client.clone(), &key.namespace);
                tokio::spawn(follow(api, params, changes.clone(), listed_tx))
            }
            _ => {
                let api = Api::<Secret>::namespaced(self.client.clone(), &key.namespace);
                tokio::spawn(follow(api, params, changes.clone(), listed_tx))
            }
        };
        Shared {
            changes,
            listed,
            _task: AbortOnDrop(task),
        }
    }
}

/// Watches one object for ever: marks `listed` after the first listing, rings `changes`
/// on every event after it (a relist after a gap rings too: something may have changed).
async fn follow<K: Resource>(
    api: Api<K>,
    params: WatcherParams,
    changes: broadcast::Sender<()>,
    listed: watch::Sender<bool>,
) {
    let events = watcher(api, params);
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Restarted(_)) if !*listed.borrow() => {
                listed.send_replace(true);
            }
            Ok(_) => {
                // No pod listening is not an error.
                let _ = changes.send(());
            }
            Err(error) => tracing::warn!(kind = K::KIND, %error, "watch failed, retrying"),
        }
    }
}

impl Subscription {
    /// Resolves once the watch has listed the object, so that any change after this
    /// moment is seen.
    pub async fn listed(&self) {
        let mut listed = self.shared.listed.clone();
        // The sender lives in the watch task, as long as `shared`.
        let _ = listed.wait_for(|done| *done).await;
    }

    /// Resolves at the object's next change.
    pub async fn changed(&mut self) {
        loop {
            match self.changes.recv().await {
                // Missed rings are still a change.
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}
