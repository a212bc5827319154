//! The Deployment controller: rolls pod templates out through ReplicaSets.
//!
//! A Deployment owns one ReplicaSet per template it has had, named
//! `<deployment>-<pod-template-hash>`; the hash (of the template) is also a label of
//! the set, of its selector and of its template, so sets of one deployment never share
//! pods. The set whose template is the deployment's is the *new* one; the others are
//! *old*. A `RollingUpdate` grows the new set and shrinks the old ones within
//! `maxSurge` pods above and `maxUnavailable` pods below `replicas`; `Recreate` scales
//! the old sets to zero, waits for their pods to go, then scales the new one up. Each
//! set carries its revision (`deployment.kubernetes.io/revision`); a template used
//! again (a rollback) makes its set the newest revision. Old sets at zero beyond
//! `revisionHistoryLimit` are deleted. A paused deployment is scaled but not rolled
//! out. Status and the `Available` and `Progressing` conditions (with
//! `ProgressDeadlineExceeded`) follow Kubernetes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use skiff_api::Resource;
use skiff_api::apps::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use skiff_api::core::{Pod, PodTemplateSpec};
use skiff_api::meta::{ObjectMeta, OwnerReference};
use skiff_client::{Action, Api, Client, ObjectRef, Patch, Store, WorkQueue};

use super::events::EventRecorder;
use super::{
    ControllerConfig, Error, Informers, Result, api_error, drive, feed, key, now_rfc3339,
    parse_time, resync,
};

/// The annotation holding a ReplicaSet's (and its Deployment's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Annotations of a Deployment that are its own, not copied to its ReplicaSets (every
/// other one is, `kubernetes.io/change-cause` above all, so that each revision keeps
/// the cause it was made for): Kubernetes' `annotationsToSkip`.
const ANNOTATIONS_NOT_COPIED: &[&str] = &[
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// The Deployment's annotations its ReplicaSets carry.
fn copied_annotations(d: &Deployment) -> impl Iterator<Item = (&String, &String)> {
    d.metadata
        .annotations
        .iter()
        .filter(|(key, _)| !ANNOTATIONS_NOT_COPIED.contains(&key.as_str()))
}
/// The label that keeps the pods of one template apart from another's.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The Deployment controller. Share it behind an `Arc`.
pub struct DeploymentController {
    client: Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: EventRecorder,
    /// The longest a deployment waits before it is looked at again while a deadline
    /// runs.
    max_requeue: Duration,
    /// The last controller of each ReplicaSet seen, to wake it when the set goes.
    owners: Mutex<HashMap<ObjectRef, ObjectRef>>,
}

impl DeploymentController {
    /// A controller over the shared informers' caches.
    pub fn new(
        client: Client,
        informers: &Informers,
        recorder: EventRecorder,
        max_requeue: Duration,
    ) -> Self {
        DeploymentController {
            client,
            deployments: informers.deployments.store(),
            replicasets: informers.replicasets.store(),
            pods: informers.pods.store(),
            recorder,
            max_requeue,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the controller until dropped.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let store = self.deployments.clone();
        let feeders = async move {
            futures::join!(
                feed(informers.deployments.subscribe(), q.clone(), |k| vec![k]),
                feed(informers.replicasets.subscribe(), q.clone(), |k| self
                    .replicaset_changed(&k)),
                feed(informers.pods.subscribe(), q.clone(), |k| self
                    .pod_changed(&k)),
                resync(q.clone(), config.resync_period, || store.keys()),
            );
        };
        let this = self.clone();
        drive("deployment", queue, config.workers, feeders, move |key| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        })
        .await;
    }

    fn replicaset_changed(&self, rs_key: &ObjectRef) -> Vec<ObjectRef> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake: Vec<ObjectRef> = owners.remove(rs_key).into_iter().collect();
        if let Some(rs) = self.replicasets.get(rs_key) {
            let namespace = rs.metadata.namespace().to_string();
            match rs.metadata.controller() {
                Some(owner) if owner.kind == Deployment::KIND => {
                    let d = key(&namespace, &owner.name);
                    owners.insert(rs_key.clone(), d.clone());
                    wake.push(d);
                }
                Some(_) => {}
                None => wake.extend(
                    self.deployments
                        .filter(|d| {
                            d.metadata.namespace() == namespace && selects(d, &rs.metadata.labels)
                        })
                        .iter()
                        .map(|d| ObjectRef::from_obj(d.as_ref())),
                ),
            }
        }
        wake
    }

    /// A pod change matters to a deployment waiting for old pods to go (Recreate).
    fn pod_changed(&self, pod_key: &ObjectRef) -> Vec<ObjectRef> {
        let Some(pod) = self.pods.get(pod_key) else {
            return Vec::new();
        };
        let Some(owner) = pod
            .metadata
            .controller()
            .filter(|o| o.kind == ReplicaSet::KIND)
        else {
            return Vec::new();
        };
        let rs_key = key(pod.metadata.namespace(), &owner.name);
        self.replicasets
            .get(&rs_key)
            .and_then(|rs| {
                rs.metadata
                    .controller()
                    .filter(|o| o.kind == Deployment::KIND)
                    .map(|o| key(pod.metadata.namespace(), &o.name))
            })
            .into_iter()
            .collect()
    }

    /// Brings one deployment's ReplicaSets a step closer to its spec and writes its
    /// status.
    pub async fn reconcile(&self, d_key: &ObjectRef) -> Result<Action> {
        let Some(d) = self.deployments.get(d_key) else {
            return Ok(Action::await_change());
        };
        let d = d.as_ref().clone();
        if d.spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            tracing::warn!(deployment = %d_key, "a deployment without a selector selects nothing");
            return Ok(Action::await_change());
        }
        let sets = self.claim_replicasets(&d).await?;
        let mut rollout = Rollout {
            controller: self,
            d,
            sets,
            new_created: false,
        };
        if rollout.d.metadata.deletion_timestamp.is_some() {
            // Its sets are going with it: only report.
            return rollout.sync_status().await;
        }
        if rollout.d.spec.paused {
            return rollout.sync_paused().await;
        }
        match rollout.d.spec.strategy.type_.as_deref() {
            Some("Recreate") => rollout.recreate().await,
            _ => rollout.rolling_update().await,
        }
    }

    /// The sets this deployment controls, after adopting matching orphans and
    /// releasing owned sets whose labels stopped matching.
    async fn claim_replicasets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>> {
        let namespace = d.metadata.namespace();
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let mut owned = Vec::new();
        for rs in self
            .replicasets
            .filter(|rs| rs.metadata.namespace() == namespace)
        {
            let matches = selects(d, &rs.metadata.labels);
            let patch_owners = |refs: Vec<OwnerReference>| {
                Patch::Merge(json!({ "metadata": {
                    "ownerReferences": refs,
                    "resourceVersion": rs.metadata.resource_version,
                }}))
            };
            match rs.metadata.controller() {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(rs.as_ref().clone());
                    } else if rs.metadata.deletion_timestamp.is_none() {
                        let refs = rs
                            .metadata
                            .owner_references
                            .iter()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        match api.patch(rs.metadata.name(), &patch_owners(refs)).await {
                            Ok(_) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => {
                                return Err(api_error(format!(
                                    "releasing replicaset {}",
                                    rs.metadata.name()
                                ))(e));
                            }
                        }
                    }
                }
                Some(_) => {}
                None if matches
                    && rs.metadata.deletion_timestamp.is_none()
                    && d.metadata.deletion_timestamp.is_none() =>
                {
                    let mut refs = rs.metadata.owner_references.clone();
                    refs.push(controller_ref(d));
                    match api.patch(rs.metadata.name(), &patch_owners(refs)).await {
                        Ok(adopted) => owned.push(adopted),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            return Err(api_error(format!(
                                "adopting replicaset {}",
                                rs.metadata.name()
                            ))(e));
                        }
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }
}

/// One reconcile of one deployment: the deployment, its sets as they are changed.
struct Rollout<'a> {
    controller: &'a DeploymentController,
    d: Deployment,
    sets: Vec<ReplicaSet>,
    /// A new set was created in this reconcile (for the Progressing condition).
    new_created: bool,
}

impl Rollout<'_> {
    fn name(&self) -> String {
        format!("{}/{}", self.d.metadata.namespace(), self.d.metadata.name())
    }

    fn replicas(&self) -> i32 {
        self.d.spec.replicas.unwrap_or(1).max(0)
    }

    /// The index of the new set: the oldest whose template is the deployment's.
    fn new_index(&self) -> Option<usize> {
        let mut candidates: Vec<usize> = (0..self.sets.len())
            .filter(|&i| templates_equal(&self.sets[i].spec.template, &self.d.spec.template))
            .collect();
        candidates.sort_by_key(|&i| creation_order(&self.sets[i]));
        candidates.first().copied()
    }

    fn old_indices(&self) -> Vec<usize> {
        let new = self.new_index();
        let mut old: Vec<usize> = (0..self.sets.len()).filter(|&i| Some(i) != new).collect();
        old.sort_by_key(|&i| creation_order(&self.sets[i]));
        old
    }

    fn api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.controller.client.clone(), self.d.metadata.namespace())
    }

    /// The new set, made the newest revision; created (when `create`) if missing.
    async fn new_replicaset(&mut self, create: bool) -> Result<Option<usize>> {
        let max_old = self
            .old_indices()
            .iter()
            .map(|&i| revision(&self.sets[i]))
            .max()
            .unwrap_or(0);
        let next_revision = max_old + 1;
        if let Some(i) = self.new_index() {
            let rs = &self.sets[i];
            let min_ready = self.d.spec.min_ready_seconds;
            let stale_revision = revision(rs) <= max_old;
            // The Deployment's annotations as they are now (a rollback or a new cause
            // on the same template): Kubernetes copies them to the new set on every sync.
            let stale_annotations = copied_annotations(&self.d)
                .any(|(key, value)| rs.metadata.annotations.get(key) != Some(value));
            if stale_revision || stale_annotations || rs.spec.min_ready_seconds != min_ready {
                let revision = if stale_revision {
                    next_revision
                } else {
                    revision(rs)
                };
                let mut annotations: serde_json::Map<String, serde_json::Value> =
                    copied_annotations(&self.d)
                        .map(|(key, value)| (key.clone(), value.clone().into()))
                        .collect();
                annotations.insert(REVISION_ANNOTATION.into(), revision.to_string().into());
                let patch = Patch::Merge(json!({
                    "metadata": { "annotations": annotations },
                    "spec": { "minReadySeconds": min_ready },
                }));
                let name = rs.metadata.name().to_string();
                self.sets[i] =
                    self.api()
                        .patch(&name, &patch)
                        .await
                        .map_err(api_error(format!(
                            "updating the revision of replicaset {name}"
                        )))?;
            }
            self.sync_revision_annotation(revision(&self.sets[i]))
                .await?;
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision_count = self.d.status.collision_count;
        let hash = pod_template_hash(&self.d.spec.template, collision_count);
        let initial = match self.d.spec.strategy.type_.as_deref() {
            Some("Recreate") => self.replicas(),
            _ => self.new_replicas_for_rolling(None, 0)?,
        };
        let rs = new_replicaset_object(&self.d, &hash, next_revision, initial);
        let api = self.api();
        let created = match api.create(&rs).await {
            Ok(created) => created,
            Err(error) if error.is_already_exists() => {
                let name = rs.metadata.name().to_string();
                let existing = api
                    .get(&name)
                    .await
                    .map_err(api_error(format!("reading replicaset {name}")))?;
                let ours = existing.metadata.controller().map(|o| o.uid.as_str())
                    == self.d.metadata.uid.as_deref();
                if ours && templates_equal(&existing.spec.template, &self.d.spec.template) {
                    existing
                } else {
                    // A hash collision: the next attempt hashes with a new count.
                    let mut d = self.d.clone();
                    d.status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    self.controller.write_status(&d).await?;
                    return Err(Error::InvalidSpec {
                        object: self.name(),
                        message: format!(
                            "replicaset {name} exists with another template; retrying with collision count {}",
                            collision_count.unwrap_or(0) + 1
                        ),
                    });
                }
            }
            Err(error) => {
                self.controller
                    .recorder
                    .warning(
                        &self.d,
                        "FailedCreate",
                        &format!(
                            "Failed to create new replica set {}: {error}",
                            rs.metadata.name()
                        ),
                    )
                    .await;
                return Err(api_error(format!(
                    "creating a replicaset for {}",
                    self.name()
                ))(error));
            }
        };
        if initial > 0 {
            self.controller
                .recorder
                .normal(
                    &self.d,
                    "ScalingReplicaSet",
                    &format!(
                        "Scaled up replica set {} to {initial}",
                        created.metadata.name()
                    ),
                )
                .await;
        }
        self.new_created = true;
        let rev = revision(&created);
        self.sets.push(created);
        self.sync_revision_annotation(rev).await?;
        match self.new_index() {
            Some(i) => Ok(Some(i)),
            None => Err(Error::InvalidSpec {
                object: self.name(),
                message: "the created replicaset's template differs from the deployment's".into(),
            }),
        }
    }

    /// The deployment carries its new set's revision.
    async fn sync_revision_annotation(&mut self, revision: i64) -> Result<()> {
        let text = revision.to_string();
        if self.d.metadata.annotations.get(REVISION_ANNOTATION) == Some(&text) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.controller.client.clone(), self.d.metadata.namespace());
        let patch = Patch::Merge(json!({
            "metadata": { "annotations": { REVISION_ANNOTATION: text } },
        }));
        let updated = api
            .patch(self.d.metadata.name(), &patch)
            .await
            .map_err(api_error(format!(
                "annotating the revision of {}",
                self.name()
            )))?;
        self.d.metadata = updated.metadata;
        Ok(())
    }

    /// Sets `spec.replicas` of set `i`, with an event.
    async fn scale(&mut self, i: usize, replicas: i32) -> Result<()> {
        let rs = &self.sets[i];
        let before = rs.spec.replicas.unwrap_or(0);
        if before == replicas {
            return Ok(());
        }
        let name = rs.metadata.name().to_string();
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        self.sets[i] = self
            .api()
            .patch(&name, &patch)
            .await
            .map_err(api_error(format!(
                "scaling replicaset {name} to {replicas}"
            )))?;
        let direction = if replicas > before { "up" } else { "down" };
        self.controller
            .recorder
            .normal(
                &self.d,
                "ScalingReplicaSet",
                &format!("Scaled {direction} replica set {name} to {replicas} from {before}"),
            )
            .await;
        Ok(())
    }

    /// maxSurge and maxUnavailable as numbers: surge rounded up, unavailable down, and
    /// not both zero (Kubernetes' `ResolveFenceposts`).
    fn fenceposts(&self) -> Result<(i32, i32)> {
        resolve_fenceposts(&self.d.spec.strategy, self.replicas()).map_err(|message| {
            Error::InvalidSpec {
                object: self.name(),
                message,
            }
        })
    }

    /// How many pods may be unavailable: 0 for Recreate or no replicas.
    fn max_unavailable(&self) -> i32 {
        if self.d.spec.strategy.type_.as_deref() == Some("Recreate") || self.replicas() == 0 {
            return 0;
        }
        self.fenceposts()
            .map(|(_, u)| u.min(self.replicas()))
            .unwrap_or(0)
    }

    /// What the new set may grow to now: up to `replicas + maxSurge` pods in all sets,
    /// counting pods of old sets until their set reports them gone.
    fn new_replicas_for_rolling(&self, new: Option<usize>, new_replicas: i32) -> Result<i32> {
        let (surge, _) = self.fenceposts()?;
        let current: i32 = self
            .sets
            .iter()
            .map(|rs| rs.spec.replicas.unwrap_or(0).max(rs.status.replicas))
            .sum::<i32>()
            - new.map_or(0, |i| {
                let rs = &self.sets[i];
                rs.spec.replicas.unwrap_or(0).max(rs.status.replicas)
            })
            + new_replicas;
        let max_total = self.replicas() + surge;
        if current >= max_total {
            return Ok(new_replicas);
        }
        let up = (max_total - current)
            .min(self.replicas() - new_replicas)
            .max(0);
        Ok(new_replicas + up)
    }

    async fn rolling_update(&mut self) -> Result<Action> {
        let Some(new) = self.new_replicaset(true).await? else {
            return self.sync_status().await;
        };
        // Scale the new set up (or down to `replicas`).
        let current = self.sets[new].spec.replicas.unwrap_or(0);
        let target = if current > self.replicas() {
            self.replicas()
        } else {
            self.new_replicas_for_rolling(Some(new), current)?
        };
        if target != current {
            self.scale(new, target).await?;
            return self.sync_status().await;
        }
        if self.scale_down_old_for_rolling(new).await? {
            return self.sync_status().await;
        }
        if self.is_complete() {
            self.cleanup().await?;
        }
        self.sync_status().await
    }

    /// What set `i` really has available: its status, but never more than its spec. A
    /// set told to shrink keeps reporting the pods it is about to delete until it has
    /// deleted them (and its status can say it observed the new spec before that), so
    /// counting past the spec would let a rollout take more pods down than maxUnavailable
    /// allows.
    fn available(&self, i: usize) -> i32 {
        let rs = &self.sets[i];
        rs.status
            .available_replicas
            .min(rs.spec.replicas.unwrap_or(0))
    }

    /// Shrinks old sets while at least `replicas - maxUnavailable` pods stay available
    /// (Kubernetes' `reconcileOldReplicaSets`): first their unavailable pods, then
    /// available ones as new pods become available.
    async fn scale_down_old_for_rolling(&mut self, new: usize) -> Result<bool> {
        let old = self.old_indices();
        let spec = |rs: &ReplicaSet| rs.spec.replicas.unwrap_or(0);
        let old_pods: i32 = old.iter().map(|&i| spec(&self.sets[i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = self.sets.iter().map(spec).sum();
        let min_available = self.replicas() - self.max_unavailable();
        let new_unavailable = spec(&self.sets[new]) - self.available(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old pods first: removing them costs no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let replicas = spec(&self.sets[i]);
            let healthy = self.available(i);
            if replicas == 0 || replicas <= healthy {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - healthy);
            self.scale(i, replicas - down).await?;
            cleaned += down;
        }
        // Then available ones, as far as availability allows.
        let available: i32 = (0..self.sets.len()).map(|i| self.available(i)).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let replicas = spec(&self.sets[i]);
                if replicas == 0 {
                    continue;
                }
                let down = replicas.min(total - scaled);
                self.scale(i, replicas - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn recreate(&mut self) -> Result<Action> {
        let mut scaled = false;
        for i in self.old_indices() {
            if self.sets[i].spec.replicas.unwrap_or(0) > 0 {
                self.scale(i, 0).await?;
                scaled = true;
            }
        }
        if scaled || self.old_pods_running() {
            return self.sync_status().await;
        }
        let Some(new) = self.new_replicaset(true).await? else {
            return self.sync_status().await;
        };
        let replicas = self.replicas();
        self.scale(new, replicas).await?;
        if self.is_complete() {
            self.cleanup().await?;
        }
        self.sync_status().await
    }

    /// Whether any pod of an old set still runs (or an old set still reports pods).
    fn old_pods_running(&self) -> bool {
        let old = self.old_indices();
        if old.iter().any(|&i| self.sets[i].status.replicas > 0) {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|&i| self.sets[i].metadata.uid.as_deref())
            .collect();
        let namespace = self.d.metadata.namespace();
        !self
            .controller
            .pods
            .filter(|p| {
                p.metadata.namespace() == namespace
                    && p.metadata
                        .controller()
                        .is_some_and(|o| uids.contains(&o.uid.as_str()))
                    && !matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed"))
            })
            .is_empty()
    }

    /// Paused: no rollout, but the replica count still applies (added to the newest
    /// active set, removed from the oldest first), and old history is trimmed.
    async fn sync_paused(&mut self) -> Result<Action> {
        let new = self.new_replicaset(false).await?;
        let spec = |rs: &ReplicaSet| rs.spec.replicas.unwrap_or(0);
        let total: i32 = self.sets.iter().map(spec).sum();
        let diff = self.replicas() - total;
        if diff > 0 {
            let target = new.or_else(|| {
                (0..self.sets.len())
                    .filter(|&i| spec(&self.sets[i]) > 0)
                    .max_by_key(|&i| revision(&self.sets[i]))
            });
            if let Some(i) = target {
                let replicas = spec(&self.sets[i]) + diff;
                self.scale(i, replicas).await?;
            }
        } else if diff < 0 {
            let mut excess = -diff;
            let mut order = self.old_indices();
            order.extend(new);
            for i in order {
                if excess == 0 {
                    break;
                }
                let replicas = spec(&self.sets[i]);
                let down = replicas.min(excess);
                if down > 0 {
                    self.scale(i, replicas - down).await?;
                    excess -= down;
                }
            }
        }
        self.cleanup().await?;
        self.sync_status().await
    }

    /// Updated, available and as many as wanted, with nothing of old sets left.
    fn is_complete(&self) -> bool {
        let status = self.calculate_status();
        status.updated_replicas == self.replicas()
            && status.replicas == self.replicas()
            && status.available_replicas == self.replicas()
    }

    /// Deletes the oldest old sets at zero beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self) -> Result<()> {
        let limit = self.d.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut candidates: Vec<usize> = self
            .old_indices()
            .into_iter()
            .filter(|&i| {
                let rs = &self.sets[i];
                rs.spec.replicas.unwrap_or(0) == 0
                    && rs.status.replicas == 0
                    && rs.metadata.deletion_timestamp.is_none()
                    && rs.status.observed_generation >= rs.metadata.generation.unwrap_or(0)
            })
            .collect();
        if candidates.len() <= limit {
            return Ok(());
        }
        candidates.sort_by_key(|&i| (revision(&self.sets[i]), creation_order(&self.sets[i])));
        let api = self.api();
        let doomed: Vec<usize> = candidates[..candidates.len() - limit].to_vec();
        for &i in &doomed {
            let name = self.sets[i].metadata.name().to_string();
            match api
                .delete(&name, &skiff_client::DeleteParams::default())
                .await
            {
                Ok(_) => {
                    tracing::info!(deployment = %self.name(), replicaset = name, "deleted old replicaset")
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(api_error(format!("deleting old replicaset {name}"))(e)),
            }
        }
        let mut i = 0;
        self.sets.retain(|_| {
            i += 1;
            !doomed.contains(&(i - 1))
        });
        Ok(())
    }

    fn calculate_status(&self) -> DeploymentStatus {
        let new = self.new_index();
        let spec_total: i32 = self
            .sets
            .iter()
            .map(|rs| rs.spec.replicas.unwrap_or(0))
            .sum();
        let available: i32 = self
            .sets
            .iter()
            .map(|rs| rs.status.available_replicas)
            .sum();
        DeploymentStatus {
            observed_generation: self.d.metadata.generation.unwrap_or(0),
            replicas: self.sets.iter().map(|rs| rs.status.replicas).sum(),
            updated_replicas: new.map_or(0, |i| self.sets[i].status.replicas),
            ready_replicas: self.sets.iter().map(|rs| rs.status.ready_replicas).sum(),
            available_replicas: available,
            unavailable_replicas: (spec_total - available).max(0),
            conditions: self.d.status.conditions.clone(),
            collision_count: self.d.status.collision_count,
        }
    }

    /// Computes and writes the status with its conditions; requeues to catch the
    /// progress deadline.
    async fn sync_status(&mut self) -> Result<Action> {
        let mut status = self.calculate_status();
        let now = SystemTime::now();
        let now_text = now_rfc3339();
        let replicas = self.replicas();
        let new_name = self
            .new_index()
            .map(|i| self.sets[i].metadata.name().to_string())
            .unwrap_or_default();

        // Available.
        if status.available_replicas >= replicas - self.max_unavailable() {
            set_condition(
                &mut status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now_text,
            );
        } else {
            set_condition(
                &mut status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now_text,
            );
        }

        // Progressing.
        let deadline = self
            .d
            .spec
            .progress_deadline_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64));
        let old = &self.d.status;
        let current = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned();
        let mut requeue = None;
        let complete = status.updated_replicas == replicas
            && status.replicas == replicas
            && status.available_replicas == replicas;
        if self.d.spec.paused {
            set_condition(
                &mut status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &now_text,
            );
        } else if deadline.is_some() {
            let was_paused =
                current.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused");
            if self.new_created {
                set_condition(
                    &mut status,
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set {new_name:?}"),
                    &now_text,
                );
            } else if complete {
                set_condition(
                    &mut status,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet {new_name:?} has successfully progressed."),
                    &now_text,
                );
            } else if was_paused {
                set_condition(
                    &mut status,
                    "Progressing",
                    "Unknown",
                    "DeploymentResumed",
                    "Deployment is resumed",
                    &now_text,
                );
            } else if status.updated_replicas > old.updated_replicas
                || status.ready_replicas > old.ready_replicas
                || status.available_replicas > old.available_replicas
                || status.replicas < old.replicas
                || current.is_none()
            {
                set_condition(
                    &mut status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet {new_name:?} is progressing."),
                    &now_text,
                );
            }
            // Timed out: no progress for progressDeadlineSeconds.
            let progressing = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Progressing")
                .cloned();
            if let (Some(deadline), Some(c)) = (deadline, progressing)
                && !complete
                && c.reason.as_deref() != Some("NewReplicaSetAvailable")
                && c.reason.as_deref() != Some("ProgressDeadlineExceeded")
            {
                let since = c
                    .last_update_time
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(now);
                match (since + deadline).duration_since(now) {
                    Ok(left) if !left.is_zero() => {
                        requeue = Some(left + Duration::from_millis(100))
                    }
                    _ => set_condition(
                        &mut status,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet {new_name:?} has timed out progressing."),
                        &now_text,
                    ),
                }
            }
        }
        if status != self.d.status {
            let mut d = self.d.clone();
            d.status = status;
            self.controller.write_status(&d).await?;
        }
        Ok(match requeue {
            Some(wait) => Action::requeue_after(wait.min(self.controller.max_requeue)),
            None => Action::await_change(),
        })
    }
}

impl DeploymentController {
    async fn write_status(&self, d: &Deployment) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), d.metadata.namespace());
        let name = d.metadata.name();
        match api.replace_status(name, d).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) if error.is_conflict() => {
                let Some(mut latest) = api
                    .get_opt(name)
                    .await
                    .map_err(api_error(format!("reading deployment {name}")))?
                else {
                    return Ok(());
                };
                if latest.metadata.generation != d.metadata.generation {
                    // The spec changed: the next reconcile computes a new status.
                    return Ok(());
                }
                latest.status = d.status.clone();
                api.replace_status(name, &latest)
                    .await
                    .map(drop)
                    .map_err(api_error(format!(
                        "writing the status of deployment {name}"
                    )))
            }
            Err(error) => Err(api_error(format!(
                "writing the status of deployment {name}"
            ))(error)),
        }
    }
}

/// maxSurge and maxUnavailable of `strategy` as numbers of pods for `replicas`:
/// percentages of surge rounded up, of unavailability down, and never both zero
/// (Kubernetes' `ResolveFenceposts`). Absent values are 25%.
pub fn resolve_fenceposts(
    strategy: &skiff_api::apps::DeploymentStrategy,
    replicas: i32,
) -> std::result::Result<(i32, i32), String> {
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let default = skiff_api::IntOrString::from("25%");
    let surge = rolling
        .max_surge
        .as_ref()
        .unwrap_or(&default)
        .scaled_value(replicas, true)?;
    let unavailable = rolling
        .max_unavailable
        .as_ref()
        .unwrap_or(&default)
        .scaled_value(replicas, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge.max(0), unavailable.max(0)))
}

/// Sets a condition: a change of status moves `lastTransitionTime`; any change of
/// reason or message moves `lastUpdateTime`.
fn set_condition(
    status: &mut DeploymentStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let existing = status.conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        // Unchanged; but a ReplicaSetUpdated set again is new progress: its time moves.
        Some(c)
            if c.status == value
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
                && reason != "ReplicaSetUpdated" => {}
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now.to_string());
            }
            c.status = value.to_string();
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
            c.last_update_time = Some(now.to_string());
        }
        None => status.conditions.push(DeploymentCondition {
            type_: type_.to_string(),
            status: value.to_string(),
            last_update_time: Some(now.to_string()),
            last_transition_time: Some(now.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
        }),
    }
}

/// Whether the deployment's selector selects `labels`.
fn selects(d: &Deployment, labels: &BTreeMap<String, String>) -> bool {
    d.spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.is_empty() && s.matches(labels))
}

fn controller_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: Deployment::api_version(),
        kind: Deployment::KIND.into(),
        name: d.metadata.name().into(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The revision annotation of a set; 0 when missing or not a number.
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Oldest first; the name breaks ties.
fn creation_order(rs: &ReplicaSet) -> (Option<SystemTime>, String) {
    (
        rs.metadata
            .creation_timestamp
            .as_deref()
            .and_then(parse_time),
        rs.metadata.name().to_string(),
    )
}

/// A template without the `pod-template-hash` label.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    template.metadata.labels.remove(POD_TEMPLATE_HASH_LABEL);
    template
}

/// Whether two templates are the same but for the hash label.
pub fn templates_equal(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The stable hash of a pod template (and collision count): FNV-1a (32 bits) over the
/// template's JSON (struct fields in a fixed order, maps sorted), written with
/// Kubernetes' safe alphabet (no vowels, no confusable digits).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let json = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    eat(&json);
    if let Some(count) = collision_count {
        eat(&count.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// The ReplicaSet of the deployment's template with `hash`.
fn new_replicaset_object(d: &Deployment, hash: &str, revision: i64, replicas: i32) -> ReplicaSet {
    let mut template = d.spec.template.clone();
    template
        .metadata
        .labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut selector = d.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut annotations: BTreeMap<String, String> = copied_annotations(d)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
    ReplicaSet {
        api_version: ReplicaSet::api_version(),
        kind: ReplicaSet::KIND.into(),
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.metadata.name())),
            namespace: d.metadata.namespace.clone(),
            labels: template.metadata.labels.clone(),
            annotations,
            owner_references: vec![controller_ref(d)],
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector: Some(selector),
            template,
        },
        ..ReplicaSet::default()
    }
}

/// Why a rollback template could not be found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// The deployment has no earlier revision to go back to.
    #[error("no rollout history found for deployment {0:?}")]
    NoHistory(String),
    /// No set of the deployment has the revision asked for.
    #[error("unable to find the specified revision {0} in the history of deployment {1:?}")]
    RevisionNotFound(i64, String),
}

/// The pod template to put into `deployment` to roll back (`skiff rollout undo`):
/// that of its ReplicaSet with revision `to_revision`, or — `None` or `Some(0)` — of
/// the revision before the current one. `replicasets` may hold any sets; only those
/// the deployment controls count. The `pod-template-hash` label is removed.
pub fn rollback_template(
    deployment: &Deployment,
    replicasets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> std::result::Result<PodTemplateSpec, RollbackError> {
    let name = deployment.metadata.name().to_string();
    let uid = deployment.metadata.uid.as_deref();
    let owned: Vec<&ReplicaSet> = replicasets
        .iter()
        .filter(|rs| rs.metadata.controller().map(|o| o.uid.as_str()) == uid && uid.is_some())
        .collect();
    let target = match to_revision.filter(|&r| r != 0) {
        Some(wanted) => owned
            .iter()
            .find(|rs| revision(rs) == wanted)
            .ok_or(RollbackError::RevisionNotFound(wanted, name))?,
        None => {
            let current = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
            owned
                .iter()
                .filter(|rs| revision(rs) < current && revision(rs) > 0)
                .max_by_key(|rs| revision(rs))
                .ok_or(RollbackError::NoHistory(name))?
        }
    };
    Ok(without_hash(&target.spec.template))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "main", "image": image }] },
        }))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        let strategy = |surge: Value, unavailable: Value| {
            serde_json::from_value::<skiff_api::apps::DeploymentStrategy>(json!({
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable },
            }))
            .unwrap()
        };
        assert_eq!(
            resolve_fenceposts(&strategy(json!("25%"), json!("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(&strategy(json!(2), json!("50%")), 3),
            Ok((2, 1))
        );
        assert_eq!(
            resolve_fenceposts(&strategy(json!("10%"), json!("10%")), 3),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(&strategy(json!(0), json!("10%")), 3),
            Ok((0, 1))
        );
        assert!(resolve_fenceposts(&strategy(json!("x"), json!(1)), 3).is_err());
    }

    #[test]
    fn the_template_hash_is_stable_and_ignores_its_own_label() {
        let a = pod_template_hash(&template("a.wasm"), None);
        assert_eq!(a, pod_template_hash(&template("a.wasm"), None));
        assert_ne!(a, pod_template_hash(&template("b.wasm"), None));
        assert_ne!(a, pod_template_hash(&template("a.wasm"), Some(1)));
        let mut labelled = template("a.wasm");
        labelled
            .metadata
            .labels
            .insert(POD_TEMPLATE_HASH_LABEL.into(), a.clone());
        assert_eq!(a, pod_template_hash(&labelled, None));
        assert!(
            a.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{a}"
        );
    }

    fn owned_set(d: &Deployment, image: &str, rev: i64) -> ReplicaSet {
        let hash = pod_template_hash(&template(image), None);
        let mut d = d.clone();
        d.spec.template = template(image);
        new_replicaset_object(&d, &hash, rev, 0)
    }

    #[test]
    fn rollback_picks_the_previous_or_the_named_revision() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "web", "uid": "u1" },
            "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": template("c.wasm") },
        }))
        .unwrap();
        let sets = vec![
            owned_set(&d, "a.wasm", 1),
            owned_set(&d, "b.wasm", 2),
            owned_set(&d, "c.wasm", 3),
        ];
        let image = |t: PodTemplateSpec| t.spec.containers[0].image.clone().unwrap_or_default();
        assert_eq!(image(rollback_template(&d, &sets, None).unwrap()), "b.wasm");
        assert_eq!(
            image(rollback_template(&d, &sets, Some(0)).unwrap()),
            "b.wasm"
        );
        let first = rollback_template(&d, &sets, Some(1)).unwrap();
        assert_eq!(image(first.clone()), "a.wasm");
        assert!(!first.metadata.labels.contains_key(POD_TEMPLATE_HASH_LABEL));
        assert_eq!(
            rollback_template(&d, &sets, Some(7)),
            Err(RollbackError::RevisionNotFound(7, "web".into()))
        );
        assert_eq!(
            rollback_template(&d, &sets[2..], None),
            Err(RollbackError::NoHistory("web".into()))
        );
        // Sets of another deployment do not count.
        d.metadata.uid = Some("u2".into());
        assert!(rollback_template(&d, &sets, Some(1)).is_err());
    }
}
