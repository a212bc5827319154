//! The node authorizer: a node reads only the ConfigMaps and Secrets its pods use.
//!
//! RBAC cannot say "the Secrets of pods bound to me": which those are is in the pods. As
//! Kubernetes' Node authorizer does, [`NodeGraph`] keeps, from a watch of every pod, which
//! ConfigMaps and Secrets each node's pods reference ([`PodSpec::references`]: volumes,
//! `env` and `envFrom`), and a node `NAME` may `get` such an object, or `list`/`watch` it
//! with the field selector `metadata.name=...` (how the node agent follows one object),
//! and nothing else of those kinds.
//!
//! The graph follows the store a moment behind: a node told of a new pod by its own watch
//! may ask for the pod's Secret before the graph has seen the binding. So a miss is
//! checked against the store itself before it is refused: the pods of the namespace are
//! scanned, decoding only those whose stored bytes name the node. A refusal costs a scan;
//! an allowed read, a hash lookup.
//!
//! A pod's deletion reaches the graph as late: for that moment (milliseconds; as long as
//! the store's watch lags) its node may still read what the pod used, as in Kubernetes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use skiff_api::core::{PodReference, PodSpec};

use super::rbac::Action;
use crate::store::{Event, EventKind, ListOptions, Revision, Store, StoreError};

/// The store prefix of pods.
const PODS_PREFIX: &str = "/core/pods/";

/// The kinds the node authorizer decides reads of.
pub const GUARDED: [&str; 2] = ["configmaps", "secrets"];

/// What a bound pod uses.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bound {
    node: String,
    namespace: String,
    references: Vec<PodReference>,
}

/// One node's use of one object, counted over its pods.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Use {
    node: String,
    namespace: String,
    kind: &'static str,
    name: String,
}

#[derive(Default)]
struct State {
    /// Bound pods, by store key.
    pods: HashMap<String, Bound>,
    /// How many pods of each node use each object.
    uses: HashMap<Use, usize>,
}

impl State {
    fn add(&mut self, key: String, bound: Bound) {
        if self.pods.contains_key(&key) {
            // A bound pod's node and spec stay as they are: nothing to count again.
            return;
        }
        for reference in &bound.references {
            *self.uses.entry(use_of(&bound, reference)).or_default() += 1;
        }
        self.pods.insert(key, bound);
    }

    fn remove(&mut self, key: &str) {
        let Some(bound) = self.pods.remove(key) else {
            return;
        };
        for reference in &bound.references {
            let entry = use_of(&bound, reference);
            if let Some(count) = self.uses.get_mut(&entry) {
                *count -= 1;
                if *count == 0 {
                    self.uses.remove(&entry);
                }
            }
        }
    }
}

fn use_of(bound: &Bound, reference: &PodReference) -> Use {
    Use {
        node: bound.node.clone(),
        namespace: bound.namespace.clone(),
        kind: reference.kind,
        name: reference.name.clone(),
    }
}

/// The part of a stored pod the graph needs.
#[derive(Deserialize)]
struct StoredPod {
    #[serde(default)]
    metadata: skiff_api::ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
}

/// The pod stored as `bytes`, if it is bound to a node (to `node`, when given). Bytes
/// that cannot name the node are not decoded: the store holds compact JSON, so a bound
/// pod's bytes hold `"nodeName":"NAME"`.
fn bound_pod(bytes: &[u8], node: Option<&str>) -> Option<Bound> {
    let needle = match node {
        Some(node) => format!("\"nodeName\":\"{node}\""),
        None => "\"nodeName\":".to_string(),
    };
    memchr::memmem::find(bytes, needle.as_bytes())?;
    let pod: StoredPod = serde_json::from_slice(bytes).ok()?;
    let node_name = pod.spec.node_name.clone().filter(|n| !n.is_empty())?;
    if node.is_some_and(|node| node != node_name) {
        return None;
    }
    Some(Bound {
        node: node_name,
        namespace: pod.metadata.namespace().to_string(),
        references: pod.spec.references(),
    })
}

/// Which ConfigMaps and Secrets each node's pods use, kept from the store's watch.
#[derive(Default)]
pub struct NodeGraph {
    state: RwLock<State>,
}

impl NodeGraph {
    /// Whether a pod bound to `node` in `namespace` uses the `kind` object `name`, as
    /// far as the graph has followed the store.
    fn uses(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
        let Some(kind) = GUARDED.into_iter().find(|k| *k == kind) else {
            return false;
        };
        let entry = Use {
            node: node.to_string(),
            namespace: namespace.to_string(),
            kind,
            name: name.to_string(),
        };
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .uses
            .contains_key(&entry)
    }

    /// Reads every pod anew; returns the revision to watch from.
    async fn rebuild(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let page = store.list(PODS_PREFIX, ListOptions::default()).await?;
        let mut state = State::default();
        for kv in &page.items {
            if let Some(bound) = bound_pod(&kv.value, None) {
                state.add(kv.key.clone(), bound);
            }
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(page.revision)
    }

    fn apply(&self, event: &Event) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event.kind {
            EventKind::Delete => state.remove(&event.kv.key),
            EventKind::Put => {
                if state.pods.contains_key(&event.kv.key) {
                    return;
                }
                if let Some(bound) = bound_pod(&event.kv.value, None) {
                    state.add(event.kv.key.clone(), bound);
                }
            }
        }
    }

    /// Keeps the graph current from the store's watch, forever; after a watch error a
    /// fresh listing and watch a second later.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            if let Err(error) = self.follow_once(store.as_ref()).await {
                tracing::warn!(%error, "watching pods for the node authorizer failed; rebuilding");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn follow_once(&self, store: &dyn Store) -> Result<(), StoreError> {
        let revision = self.rebuild(store).await?;
        let mut events = store.watch(PODS_PREFIX, revision).await?;
        while let Some(event) = events.next().await {
            self.apply(&event?);
        }
        Ok(())
    }
}

/// Whether node `node` may do `action` by the node authorizer: a read of one ConfigMap or
/// Secret (by its path, or a `metadata.name` field selector) that a pod bound to it uses.
pub async fn allows(graph: &NodeGraph, store: &dyn Store, node: &str, action: &Action) -> bool {
    let Action::Resource {
        verb,
        group,
        resource,
        subresource: None,
        namespace: Some(namespace),
        name: Some(name),
    } = action
    else {
        return false;
    };
    if !group.is_empty()
        || !GUARDED.contains(&resource.as_str())
        || !matches!(verb.as_str(), "get" | "list" | "watch")
    {
        return false;
    }
    if graph.uses(node, namespace, resource, name) {
        return true;
    }
    // The graph may not have seen the pod yet: ask the store.
    let prefix = format!("{PODS_PREFIX}{namespace}/");
    let Ok(page) = store.list(&prefix, ListOptions::default()).await else {
        return false;
    };
    page.items.iter().any(|kv| {
        bound_pod(&kv.value, Some(node)).is_some_and(|bound| {
            bound
                .references
                .iter()
                .any(|r| r.kind == resource.as_str() && r.name == *name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, node: Option<&str>, secret: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "namespace": namespace },
            "spec": {
                "nodeName": node,
                "containers": [{ "name": "main", "image": "m.wasm",
                    "envFrom": [{ "secretRef": { "name": secret } }] }],
                "volumes": [{ "name": "v", "configMap": { "name": "files" } }],
            },
            "status": { "phase": "Running" },
        }))
        .unwrap()
    }

    fn put(key: &str, value: Vec<u8>) -> Event {
        Event {
            kind: EventKind::Put,
            kv: crate::store::KeyValue {
                key: key.into(),
                value: value.into(),
                create_revision: 1,
                mod_revision: 1,
            },
            prev: None,
        }
    }

    #[test]
    fn a_node_uses_what_its_bound_pods_reference_until_they_go() {
        let graph = NodeGraph::default();
        graph.apply(&put("/core/pods/a/p", pod("a", None, "db")));
        assert!(!graph.uses("n1", "a", "secrets", "db"), "not bound yet");
        graph.apply(&put("/core/pods/a/p", pod("a", Some("n1"), "db")));
        graph.apply(&put("/core/pods/a/q", pod("a", Some("n1"), "db")));
        assert!(graph.uses("n1", "a", "secrets", "db"));
        assert!(graph.uses("n1", "a", "configmaps", "files"));
        assert!(!graph.uses("n2", "a", "secrets", "db"), "another node");
        assert!(!graph.uses("n1", "b", "secrets", "db"), "another namespace");
        assert!(!graph.uses("n1", "a", "configmaps", "db"), "another kind");
        assert!(!graph.uses("n1", "a", "pods", "p"), "not a guarded kind");
        // One of two pods gone: still used; both gone: no more.
        let mut gone = put("/core/pods/a/p", pod("a", Some("n1"), "db"));
        gone.kind = EventKind::Delete;
        graph.apply(&gone);
        assert!(graph.uses("n1", "a", "secrets", "db"));
        gone.kv.key = "/core/pods/a/q".into();
        graph.apply(&gone);
        assert!(!graph.uses("n1", "a", "secrets", "db"));
    }

    #[test]
    fn only_bytes_naming_the_node_are_decoded() {
        assert!(bound_pod(&pod("a", Some("n1"), "db"), Some("n1")).is_some());
        assert!(bound_pod(&pod("a", Some("n10"), "db"), Some("n1")).is_none());
        assert!(bound_pod(&pod("a", None, "db"), None).is_none());
        assert!(bound_pod(b"not json \"nodeName\":\"n1\"", Some("n1")).is_none());
    }
}
