//! The garbage collector: deletes what nobody owns any more, and carries out the
//! `foregroundDeletion` and `orphan` finalizers the API server records for the
//! `Foreground` and `Orphan` propagation policies.
//!
//! It covers the kinds controllers own or are owned by: Pods, ReplicaSets,
//! Deployments and Jobs. For one object:
//!
//! - being deleted with `orphan`: remove its owner reference from every dependent,
//!   then the finalizer;
//! - being deleted with `foregroundDeletion`: delete every dependent (in the
//!   foreground too, so grandchildren go first), and once no dependent that blocks
//!   owner deletion is left, remove the finalizer;
//! - with owner references whose owners are all gone (by uid): delete it (background);
//!   some gone: drop the dangling references.
//!
//! "Gone" is decided by the caches first and confirmed with a live read, so an owner
//! the cache has not seen yet is never taken for gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use skiff_api::Resource;
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_api::batch::Job;
use skiff_api::core::Pod;
use skiff_api::meta::{ObjectMeta, OwnerReference};
use skiff_client::path::ResourcePath;
use skiff_client::{Action, Client, Method, ObjectRef, Patch, Store, WorkQueue};

use super::{ControllerConfig, Informers, Result, api_error, drive, feed, resync};

/// The finalizer of foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of orphaning deletion.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// A kind the collector covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `v1` Pod.
    Pod,
    /// `apps/v1` ReplicaSet.
    ReplicaSet,
    /// `apps/v1` Deployment.
    Deployment,
    /// `batch/v1` Job.
    Job,
}

impl Kind {
    /// The kind an owner reference names, if covered.
    fn of(reference: &OwnerReference) -> Option<Kind> {
        match (reference.api_version.as_str(), reference.kind.as_str()) {
            ("v1", "Pod") => Some(Kind::Pod),
            ("apps/v1", "ReplicaSet") => Some(Kind::ReplicaSet),
            ("apps/v1", "Deployment") => Some(Kind::Deployment),
            ("batch/v1", "Job") => Some(Kind::Job),
            _ => None,
        }
    }

    fn path(self, namespace: &str, name: &str) -> String {
        let (group, plural) = match self {
            Kind::Pod => (Pod::GROUP, Pod::PLURAL),
            Kind::ReplicaSet => (ReplicaSet::GROUP, ReplicaSet::PLURAL),
            Kind::Deployment => (Deployment::GROUP, Deployment::PLURAL),
            Kind::Job => (Job::GROUP, Job::PLURAL),
        };
        ResourcePath {
            group,
            version: "v1",
            plural,
            namespace: Some(namespace),
            name: Some(name),
            subresource: None,
        }
        .build()
    }
}

/// One object the collector looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GcKey {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace and name.
    pub key: ObjectRef,
}

/// The garbage collector. Share it behind an `Arc`.
pub struct GarbageCollector {
    client: Client,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
    /// The owners each object last had, to wake them when it goes (a foreground
    /// deletion waits for it).
    owners: Mutex<HashMap<GcKey, Vec<GcKey>>>,
}

impl GarbageCollector {
    /// A collector over the shared informers' caches.
    pub fn new(client: Client, informers: &Informers) -> Self {
        GarbageCollector {
            client,
            pods: informers.pods.store(),
            replicasets: informers.replicasets.store(),
            deployments: informers.deployments.store(),
            jobs: informers.jobs.store(),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the collector until dropped.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let feeders = async move {
            futures::join!(
                feed(informers.pods.subscribe(), q.clone(), |k| self
                    .changed(Kind::Pod, k)),
                feed(informers.replicasets.subscribe(), q.clone(), |k| self
                    .changed(Kind::ReplicaSet, k)),
                feed(informers.deployments.subscribe(), q.clone(), |k| self
                    .changed(Kind::Deployment, k)),
                feed(informers.jobs.subscribe(), q.clone(), |k| self
                    .changed(Kind::Job, k)),
                resync(q.clone(), config.resync_period, || self.interesting()),
            );
        };
        let this = self.clone();
        drive(
            "garbage-collector",
            queue,
            config.workers,
            feeders,
            move |key| {
                let this = this.clone();
                async move { this.reconcile(&key).await }
            },
        )
        .await;
    }

    /// The metadata of the object, from the cache.
    fn meta(&self, key: &GcKey) -> Option<ObjectMeta> {
        match key.kind {
            Kind::Pod => self.pods.get(&key.key).map(|o| o.metadata.clone()),
            Kind::ReplicaSet => self.replicasets.get(&key.key).map(|o| o.metadata.clone()),
            Kind::Deployment => self.deployments.get(&key.key).map(|o| o.metadata.clone()),
            Kind::Job => self.jobs.get(&key.key).map(|o| o.metadata.clone()),
        }
    }

    /// Every cached object of `namespace` whose metadata `keep` accepts.
    fn objects(&self, mut keep: impl FnMut(&ObjectMeta) -> bool) -> Vec<(GcKey, ObjectMeta)> {
        fn collect<K: Resource>(
            kind: Kind,
            store: &Store<K>,
            keep: &mut dyn FnMut(&ObjectMeta) -> bool,
            out: &mut Vec<(GcKey, ObjectMeta)>,
        ) {
            for object in store.filter(|o| keep(o.meta())) {
                out.push((
                    GcKey {
                        kind,
                        key: ObjectRef::from_obj(object.as_ref()),
                    },
                    object.meta().clone(),
                ));
            }
        }
        let mut out = Vec::new();
        collect(Kind::Pod, &self.pods, &mut keep, &mut out);
        collect(Kind::ReplicaSet, &self.replicasets, &mut keep, &mut out);
        collect(Kind::Deployment, &self.deployments, &mut keep, &mut out);
        collect(Kind::Job, &self.jobs, &mut keep, &mut out);
        out
    }

    /// What to look at after a change of `key`: the object itself; when it is being
    /// deleted or gone, its dependents; when it is gone, its owners.
    fn changed(&self, kind: Kind, key: ObjectRef) -> Vec<GcKey> {
        let this = GcKey { kind, key };
        let namespace = this.key.namespace.clone().unwrap_or_default();
        let mut wake = vec![this.clone()];
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        match self.meta(&this) {
            Some(meta) => {
                let mine: Vec<GcKey> = meta
                    .owner_references
                    .iter()
                    .filter_map(|r| {
                        Some(GcKey {
                            kind: Kind::of(r)?,
                            key: ObjectRef::new(&r.name).within(&namespace),
                        })
                    })
                    .collect();
                if mine.is_empty() {
                    owners.remove(&this);
                } else {
                    owners.insert(this.clone(), mine);
                }
                if meta.deletion_timestamp.is_some() {
                    let uid = meta.uid.clone().unwrap_or_default();
                    wake.extend(
                        self.objects(|m| {
                            m.namespace() == namespace
                                && m.owner_references.iter().any(|r| r.uid == uid)
                        })
                        .into_iter()
                        .map(|(k, _)| k),
                    );
                }
            }
            None => {
                wake.extend(owners.remove(&this).unwrap_or_default());
                wake.extend(
                    self.objects(|m| {
                        m.namespace() == namespace
                            && m.owner_references
                                .iter()
                                .any(|r| Kind::of(r) == Some(kind) && r.name == this.key.name)
                    })
                    .into_iter()
                    .map(|(k, _)| k),
                );
            }
        }
        wake
    }

    /// Everything the collector may have to act on, for the periodic resync.
    fn interesting(&self) -> Vec<GcKey> {
        self.objects(|m| {
            !m.owner_references.is_empty()
                || (m.deletion_timestamp.is_some()
                    && m.finalizers
                        .iter()
                        .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER))
        })
        .into_iter()
        .map(|(k, _)| k)
        .collect()
    }

    /// Acts on one object.
    pub async fn reconcile(&self, key: &GcKey) -> Result<Action> {
        let Some(meta) = self.meta(key) else {
            return Ok(Action::await_change());
        };
        let namespace = meta.namespace().to_string();
        let uid = meta.uid.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_some() {
            if meta.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                return self.orphan_dependents(key, &meta).await;
            }
            if meta.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                return self.delete_dependents_first(key, &meta).await;
            }
            return Ok(Action::await_change());
        }
        if meta.owner_references.is_empty() {
            return Ok(Action::await_change());
        }
        let mut dangling = Vec::new();
        for reference in &meta.owner_references {
            if !self.owner_exists(&namespace, reference).await? {
                dangling.push(reference.uid.clone());
            }
        }
        if dangling.is_empty() {
            return Ok(Action::await_change());
        }
        if dangling.len() == meta.owner_references.len() {
            tracing::info!(kind = ?key.kind, object = %key.key, "deleting an object whose owners are gone");
            self.delete(key, &uid, "Background").await?;
        } else {
            let keep: Vec<&OwnerReference> = meta
                .owner_references
                .iter()
                .filter(|r| !dangling.contains(&r.uid))
                .collect();
            self.patch_meta(key, &meta, json!({ "ownerReferences": keep }))
                .await?;
        }
        Ok(Action::await_change())
    }

    /// Whether the owner `reference` names exists with its uid: the cache says so, or
    /// a live read does. Kinds the collector does not cover are taken to exist.
    async fn owner_exists(&self, namespace: &str, reference: &OwnerReference) -> Result<bool> {
        let Some(kind) = Kind::of(reference) else {
            return Ok(true);
        };
        let owner = GcKey {
            kind,
            key: ObjectRef::new(&reference.name).within(namespace),
        };
        if self
            .meta(&owner)
            .is_some_and(|m| m.uid.as_deref() == Some(reference.uid.as_str()))
        {
            return Ok(true);
        }
        let path = kind.path(namespace, &reference.name);
        match self.client.request_json(Method::GET, &path, None).await {
            Ok(object) => Ok(object.pointer("/metadata/uid").and_then(|u| u.as_str())
                == Some(reference.uid.as_str())),
            Err(error) if error.is_not_found() => Ok(false),
            Err(error) => Err(api_error(format!("reading owner {path}"))(error)),
        }
    }

    fn dependents_of(&self, namespace: &str, uid: &str) -> Vec<(GcKey, ObjectMeta)> {
        self.objects(|m| {
            m.namespace() == namespace && m.owner_references.iter().any(|r| r.uid == uid)
        })
    }

    async fn orphan_dependents(&self, key: &GcKey, meta: &ObjectMeta) -> Result<Action> {
        let uid = meta.uid.clone().unwrap_or_default();
        for (dependent, dmeta) in self.dependents_of(meta.namespace(), &uid) {
            let keep: Vec<&OwnerReference> = dmeta
                .owner_references
                .iter()
                .filter(|r| r.uid != uid)
                .collect();
            self.patch_meta(&dependent, &dmeta, json!({ "ownerReferences": keep }))
                .await?;
        }
        self.remove_finalizer(key, meta, ORPHAN_FINALIZER).await?;
        Ok(Action::await_change())
    }

    async fn delete_dependents_first(&self, key: &GcKey, meta: &ObjectMeta) -> Result<Action> {
        let uid = meta.uid.clone().unwrap_or_default();
        let mut blocking = 0;
        for (dependent, dmeta) in self.dependents_of(meta.namespace(), &uid) {
            let blocks = dmeta
                .owner_references
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if dmeta.deletion_timestamp.is_none() {
                let duid = dmeta.uid.clone().unwrap_or_default();
                self.delete(&dependent, &duid, "Foreground").await?;
            }
        }
        if blocking == 0 {
            self.remove_finalizer(key, meta, FOREGROUND_FINALIZER)
                .await?;
        }
        // Otherwise the dependents' going wakes this owner (see `changed`).
        Ok(Action::await_change())
    }

    async fn delete(&self, key: &GcKey, uid: &str, policy: &str) -> Result<()> {
        let path = key.kind.path(
            key.key.namespace.as_deref().unwrap_or_default(),
            &key.key.name,
        );
        let options = json!({
            "apiVersion": "v1", "kind": "DeleteOptions",
            "propagationPolicy": policy,
            "preconditions": { "uid": uid },
        });
        match self
            .client
            .request_json(Method::DELETE, &path, Some(options))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or a namesake: nothing of ours to delete.
            Err(error) if error.is_not_found() || error.is_conflict() => Ok(()),
            Err(error) => Err(api_error(format!("deleting {path}"))(error)),
        }
    }

    async fn remove_finalizer(
        &self,
        key: &GcKey,
        meta: &ObjectMeta,
        finalizer: &str,
    ) -> Result<()> {
        let rest: Vec<&String> = meta.finalizers.iter().filter(|f| *f != finalizer).collect();
        self.patch_meta(key, meta, json!({ "finalizers": rest }))
            .await
    }

    /// Merge-patches `metadata` at the cached resourceVersion (a conflict is retried
    /// with back-off, after the cache caught up).
    async fn patch_meta(
        &self,
        key: &GcKey,
        meta: &ObjectMeta,
        fields: serde_json::Value,
    ) -> Result<()> {
        let path = key.kind.path(meta.namespace(), meta.name());
        let mut metadata = fields;
        metadata["resourceVersion"] = json!(meta.resource_version);
        let patch = Patch::Merge(json!({ "metadata": metadata }));
        match self.client.request_patch(&path, &patch).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(api_error(format!("patching the metadata of {path}"))(error)),
        }
    }
}
