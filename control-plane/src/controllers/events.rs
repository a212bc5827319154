//! [`EventRecorder`]: `v1 Event`s about what controllers do, for `kubectl describe` and
//! `get events`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use skiff_api::core::{Event, EventSource};
use skiff_api::meta::{ObjectMeta, ObjectReference};
use skiff_api::{Resource, meta};
use skiff_client::{Api, Client, Patch};

use super::{now_rfc3339, object_reference};

/// How many distinct events the recorder remembers for counting repeats; past that it
/// forgets them all and starts again (bounded memory).
const AGGREGATION_CAPACITY: usize = 4096;

/// Records events in the namespace of the object they are about (`default` for
/// cluster-scoped objects), with `involvedObject`, `count`, `firstTimestamp` and
/// `lastTimestamp`. The same event (object, type, reason, message) repeated bumps the
/// count of the first instead of writing a new one. Recording never fails a
/// reconcile: errors are logged. Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    /// (object uid, type, reason, message) → (event namespace, name, count).
    seen: Arc<Mutex<HashMap<EventKey, Recorded>>>,
}

type EventKey = (String, String, String, String);
/// Where an event was written (namespace, name) and its count.
type Recorded = (String, String, i32);

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("component", &self.component)
            .finish()
    }
}

impl EventRecorder {
    /// A recorder whose events name `component` as their source.
    pub fn new(client: Client, component: &str) -> Self {
        EventRecorder {
            client,
            component: component.to_string(),
            seen: Arc::default(),
        }
    }

    /// A `Normal` event about `object`.
    pub async fn normal<K: Resource>(&self, object: &K, reason: &str, message: &str) {
        self.record(object_reference(object), "Normal", reason, message)
            .await;
    }

    /// A `Warning` event about `object`.
    pub async fn warning<K: Resource>(&self, object: &K, reason: &str, message: &str) {
        self.record(object_reference(object), "Warning", reason, message)
            .await;
    }

    /// Records an event of `type_` (`Normal`, `Warning`) about `involved`.
    pub async fn record(
        &self,
        involved: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let namespace = involved
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key: EventKey = (
            involved.uid.clone().unwrap_or_default(),
            type_.into(),
            reason.into(),
            message.into(),
        );
        let now = now_rfc3339();
        let repeat = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some((ns, name, count)) = repeat
            && ns == namespace
        {
            let patch = Patch::Merge(serde_json::json!({
                "count": count + 1, "lastTimestamp": now,
            }));
            match api.patch(&name, &patch).await {
                Ok(_) => {
                    self.remember(key, namespace, name, count + 1);
                    return;
                }
                // Gone (expired, or deleted with its namespace): write a new one.
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    tracing::debug!(%error, reason, "could not update an event");
                    return;
                }
            }
        }
        // Named as Kubernetes names them: the object's name and the time in hex.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{}.{nanos:x}", involved.name.as_deref().unwrap_or("object"));
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..meta::ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message.into()),
            source: EventSource {
                component: Some(self.component.clone()),
                host: None,
            },
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            type_: Some(type_.into()),
            reporting_component: Some(self.component.clone()),
            ..Event::default()
        };
        match api.create(&event).await {
            Ok(created) => {
                let name = created.metadata.name().to_string();
                self.remember(key, namespace, name, 1);
            }
            Err(error) => tracing::debug!(%error, reason, "could not record an event"),
        }
    }

    fn remember(&self, key: EventKey, namespace: String, name: String, count: i32) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= AGGREGATION_CAPACITY && !seen.contains_key(&key) {
            seen.clear();
        }
        seen.insert(key, (namespace, name, count));
    }
}
