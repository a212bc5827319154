//! The ReplicaSet controller: keeps `spec.replicas` pods of the template running.
//!
//! For one ReplicaSet: claim the pods of its namespace (adopt matching orphans,
//! release owned pods whose labels stopped matching), count the active ones (not
//! being deleted, not Succeeded or Failed), create the missing ones in slow-start
//! batches or delete the least valuable surplus, then write the status if it changed.
//! [`Expectations`] keep it from acting again before its informer has seen its own
//! creates and deletes.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use serde_json::json;
use skiff_api::apps::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use skiff_api::core::Pod;
use skiff_api::meta::{ObjectMeta, OwnerReference};
use skiff_api::{LabelSelector, Resource};
use skiff_client::{Action, Api, Client, ObjectRef, Patch, Store, WorkQueue};

use super::claim;
use super::events::EventRecorder;
use super::expectations::Expectations;
use super::{
    ControllerConfig, Error, Informers, Result, api_error, drive, feed, parse_time, resync,
};

/// At most this many pods are created or deleted by one reconcile (Kubernetes'
/// `burstReplicas`); the rest follow in the next.
pub const BURST_REPLICAS: usize = 500;

/// The ReplicaSet controller. Share it behind an `Arc`.
pub struct ReplicaSetController {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: EventRecorder,
    /// The last controller of each pod seen, to wake it when the pod goes (the store
    /// no longer has a deleted pod to ask).
    owners: Mutex<HashMap<ObjectRef, ObjectRef>>,
}

impl ReplicaSetController {
    /// A controller over the shared informers' caches.
    pub fn new(
        client: Client,
        informers: &Informers,
        recorder: EventRecorder,
        expectations_timeout: Duration,
    ) -> Self {
        Self::with_stores(
            client,
            informers.replicasets.store(),
            informers.pods.store(),
            recorder,
            expectations_timeout,
        )
    }

    /// A controller over the given caches (tests feed them by hand to make them lag).
    pub fn with_stores(
        client: Client,
        replicasets: Store<ReplicaSet>,
        pods: Store<Pod>,
        recorder: EventRecorder,
        expectations_timeout: Duration,
    ) -> Self {
        ReplicaSetController {
            client,
            replicasets,
            pods,
            expectations: Expectations::new(expectations_timeout),
            recorder,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The expectations of this controller (for tests and diagnostics).
    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// Runs the controller until dropped: ReplicaSet and pod changes feed the queue.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let rs_store = self.replicasets.clone();
        let q = queue.clone();
        let feeders = async move {
            let queue = q;
            futures::join!(
                feed(informers.replicasets.subscribe(), queue.clone(), |k| vec![
                    k
                ]),
                feed(informers.pods.subscribe(), queue.clone(), |k| self
                    .pod_changed(&k)),
                resync(queue.clone(), config.resync_period, || rs_store.keys()),
            );
        };
        let this = self.clone();
        drive("replicaset", queue, config.workers, feeders, move |key| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        })
        .await;
    }

    /// The ReplicaSets to reconcile after a change of the pod `pod_key`: its controller
    /// (now and before), or, for an orphan, every set in its namespace that selects it.
    pub fn pod_changed(&self, pod_key: &ObjectRef) -> Vec<ObjectRef> {
        self.expectations.observed(pod_key);
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let previous = owners.remove(pod_key);
        let mut wake: Vec<ObjectRef> = previous.into_iter().collect();
        if let Some(pod) = self.pods.get(pod_key) {
            let (controller, candidates) = claim::owners_of_pod(&pod, &self.replicasets, selects);
            if let Some(rs) = controller {
                owners.insert(pod_key.clone(), rs.clone());
                wake.push(rs);
            }
            wake.extend(candidates);
        }
        wake.dedup();
        wake
    }

    /// Brings the pods of one ReplicaSet to its spec, and its status to the pods.
    pub async fn reconcile(&self, rs_key: &ObjectRef) -> Result<Action> {
        let Some(rs) = self.replicasets.get(rs_key) else {
            self.expectations.forget(rs_key);
            return Ok(Action::await_change());
        };
        let namespace = rs.metadata.namespace().to_string();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // Checked before claiming, so a pod seen after this check waits for the next round.
        let satisfied = self.expectations.satisfied(rs_key, &self.pods);
        let owned = self.claim_pods(&rs, &pods_api).await?;
        let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| is_active(p)).collect();

        let managed = satisfied && rs.metadata.deletion_timestamp.is_none();
        let mut manage_error = None;
        if managed && let Err(failure) = self.manage_replicas(&rs, rs_key, &active, &pods_api).await
        {
            manage_error = Some(failure);
        }
        // Pods just deleted no longer count: a status that still showed them available
        // would let a Deployment scale down more than its maxUnavailable allows.
        let active: Vec<Arc<Pod>> = {
            let (_, deleting) = self.expectations.pending(rs_key);
            if deleting == 0 {
                active
            } else {
                active
                    .into_iter()
                    .filter(|p| {
                        !self
                            .expectations
                            .is_expected_deletion(rs_key, &ObjectRef::from_obj(p.as_ref()))
                    })
                    .collect()
            }
        };

        let min_ready = rs.spec.min_ready_seconds.unwrap_or(0).max(0) as u64;
        let now = SystemTime::now();
        let mut status = calculate_status(&rs, &active, now);
        // ReplicaFailure tells users why pods are missing; it goes once pods could be
        // managed again.
        match &manage_error {
            Some((reason, error)) => {
                let condition = ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    last_transition_time: Some(super::now_rfc3339()),
                    reason: Some((*reason).into()),
                    message: Some(super::error_chain(error)),
                };
                let old = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure");
                let same = old.is_some_and(|c| {
                    c.reason == condition.reason && c.message == condition.message
                });
                if !same {
                    status.conditions.retain(|c| c.type_ != "ReplicaFailure");
                    status.conditions.push(condition);
                }
            }
            None if managed => status.conditions.retain(|c| c.type_ != "ReplicaFailure"),
            None => {}
        }
        if status != rs.status {
            self.write_status(&rs, status).await?;
        }
        if let Some((_, error)) = manage_error {
            return Err(error);
        }
        // A pod ready now becomes available once it has been ready for minReadySeconds.
        let next = active
            .iter()
            .filter_map(|p| ready_since(p))
            .filter_map(|since| {
                let due = since + Duration::from_secs(min_ready);
                due.duration_since(now).ok()
            })
            .filter(|wait| !wait.is_zero())
            .min();
        Ok(match next {
            Some(wait) if min_ready > 0 => Action::requeue_after(wait + Duration::from_millis(50)),
            _ => Action::await_change(),
        })
    }

    /// The pods this set owns after adopting matching orphans and releasing owned pods
    /// that no longer match.
    async fn claim_pods(&self, rs: &ReplicaSet, pods_api: &Api<Pod>) -> Result<Vec<Arc<Pod>>> {
        let namespace = rs.metadata.namespace();
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self.pods.filter(|p| p.metadata.namespace() == namespace);
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for pod in candidates {
            let matches = selects(rs, &pod.metadata.labels);
            match pod.metadata.controller() {
                Some(owner) if owner.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if pod.metadata.deletion_timestamp.is_none() {
                        self.release(rs, &pod, pods_api).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if !matches
                        || pod.metadata.deletion_timestamp.is_some()
                        || rs.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    // As Kubernetes, check once with a live read that the set is not
                    // being deleted (or replaced by a namesake) before adopting.
                    if may_adopt.is_none() {
                        may_adopt = Some(claim::owner_still_current(&self.client, rs).await?);
                    }
                    if may_adopt == Some(true)
                        && let Some(adopted) = claim::adopt(
                            pods_api,
                            &pod,
                            controller_ref(rs),
                            &format!("replicaset {}", rs.metadata.name()),
                        )
                        .await?
                    {
                        owned.push(Arc::new(adopted));
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn release(&self, rs: &ReplicaSet, pod: &Pod, pods_api: &Api<Pod>) -> Result<()> {
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let refs: Vec<&OwnerReference> = pod
            .metadata
            .owner_references
            .iter()
            .filter(|r| r.uid != uid)
            .collect();
        let patch = Patch::Merge(json!({ "metadata": {
            "ownerReferences": refs,
            "resourceVersion": pod.metadata.resource_version,
        }}));
        match pods_api.patch(pod.metadata.name(), &patch).await {
            Ok(_) => {
                tracing::info!(
                    pod = pod.metadata.name(),
                    rs = rs.metadata.name(),
                    "released pod"
                );
                Ok(())
            }
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(api_error(format!(
                "releasing pod {} from replicaset {}",
                pod.metadata.name(),
                rs.metadata.name()
            ))(error)),
        }
    }

    /// Creates or deletes pods so that `active` becomes `spec.replicas`.
    async fn manage_replicas(
        &self,
        rs: &ReplicaSet,
        rs_key: &ObjectRef,
        active: &[Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<(), (&'static str, Error)> {
        let wanted = rs.spec.replicas.unwrap_or(1).max(0) as usize;
        if active.len() < wanted {
            let missing = (wanted - active.len()).min(BURST_REPLICAS);
            self.create_pods(rs, rs_key, missing, pods_api)
                .await
                .map_err(|e| ("FailedCreate", e))
        } else if active.len() > wanted {
            let surplus = (active.len() - wanted).min(BURST_REPLICAS);
            let mut ranked: Vec<&Arc<Pod>> = active.iter().collect();
            ranked.sort_by_cached_key(|p| deletion_rank(p));
            self.delete_pods(rs, rs_key, &ranked[..surplus], pods_api)
                .await
                .map_err(|e| ("FailedDelete", e))
        } else {
            Ok(())
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, ...: the first failure stops it, so a
    /// create that cannot succeed (quota, a bad template) fails once, not `count` times.
    async fn create_pods(
        &self,
        rs: &ReplicaSet,
        rs_key: &ObjectRef,
        count: usize,
        pods_api: &Api<Pod>,
    ) -> Result<()> {
        let template = pod_from_template(rs);
        let mut remaining = count;
        let mut batch = 1;
        while remaining > 0 {
            let size = batch.min(remaining);
            let results = join_all((0..size).map(|_| pods_api.create(&template))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        self.expectations
                            .expect_creation(rs_key, ObjectRef::from_obj(&pod));
                        self.recorder
                            .normal(
                                rs,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", pod.metadata.name()),
                            )
                            .await;
                    }
                    Err(error) => {
                        self.recorder
                            .warning(rs, "FailedCreate", &format!("Error creating: {error}"))
                            .await;
                        failure.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = failure {
                return Err(api_error(format!(
                    "creating pods for replicaset {rs_key} ({} skipped)",
                    remaining - size
                ))(error));
            }
            remaining -= size;
            batch *= 2;
        }
        Ok(())
    }

    async fn delete_pods(
        &self,
        rs: &ReplicaSet,
        rs_key: &ObjectRef,
        victims: &[&Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<()> {
        let victims: Vec<&Pod> = victims.iter().map(|pod| pod.as_ref()).collect();
        claim::delete_pods(
            rs,
            rs_key,
            &victims,
            pods_api,
            &self.expectations,
            &self.recorder,
        )
        .await
    }

    async fn write_status(&self, rs: &ReplicaSet, status: ReplicaSetStatus) -> Result<()> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), rs.metadata.namespace());
        let name = rs.metadata.name();
        let mut updated = rs.clone();
        updated.status = status.clone();
        match api.replace_status(name, &updated).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) if error.is_conflict() => {
                // The set changed since the cache saw it: write onto the latest.
                let Some(mut latest) = api
                    .get_opt(name)
                    .await
                    .map_err(api_error(format!("reading replicaset {name}")))?
                else {
                    return Ok(());
                };
                latest.status = ReplicaSetStatus {
                    observed_generation: status.observed_generation,
                    ..status
                };
                api.replace_status(name, &latest)
                    .await
                    .map(drop)
                    .map_err(api_error(format!(
                        "writing the status of replicaset {name}"
                    )))
            }
            Err(error) => Err(api_error(format!(
                "writing the status of replicaset {name}"
            ))(error)),
        }
    }
}

/// Whether the set's selector selects `labels`. A set without a selector selects
/// nothing (validation requires one).
pub(crate) fn selects(
    rs: &ReplicaSet,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    rs.spec
        .selector
        .as_ref()
        .is_some_and(|s: &LabelSelector| !s.is_empty() && s.matches(labels))
}

/// Not being deleted and not finished: a pod that counts toward `replicas`.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// The owner reference a set puts on its pods.
pub(crate) fn controller_ref(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: ReplicaSet::api_version(),
        kind: ReplicaSet::KIND.into(),
        name: rs.metadata.name().into(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod of the set's template, named `<set>-<random>` by the server.
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = &rs.spec.template;
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name())),
            namespace: rs.metadata.namespace.clone(),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            finalizers: template.metadata.finalizers.clone(),
            owner_references: vec![controller_ref(rs)],
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        ..Pod::default()
    }
}

/// When the pod's `Ready` condition last became `True`, if it is ready.
fn ready_since(pod: &Pod) -> Option<SystemTime> {
    let condition = pod.condition("Ready")?;
    if condition.status != "True" {
        return None;
    }
    condition
        .last_transition_time
        .as_deref()
        .and_then(parse_time)
}

/// Ready for at least `min_ready` seconds at `now` (Kubernetes' `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready: u64, now: SystemTime) -> bool {
    if !pod.is_ready() {
        return false;
    }
    if min_ready == 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| since + Duration::from_secs(min_ready) <= now)
}

/// How valuable a pod is; the lowest goes first when scaling down (Kubernetes'
/// `ActivePods` order): unscheduled before scheduled, Pending before Unknown before
/// Running, not ready before ready, ready for less time before more, more restarts
/// before fewer, newer before older.
pub fn deletion_rank(pod: &Pod) -> impl Ord + use<> {
    let scheduled = pod.spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let phase = match pod.status.phase.as_deref() {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    };
    let ready = pod.is_ready();
    let ready_since = if ready {
        Reverse(ready_since(pod))
    } else {
        Reverse(None)
    };
    let restarts: i32 = pod
        .status
        .container_statuses
        .iter()
        .map(|c| c.restart_count)
        .sum();
    let created = pod
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(parse_time);
    (
        scheduled,
        phase,
        ready,
        ready_since,
        Reverse(restarts),
        Reverse(created),
        // Equal in every way (created in the same second): any fixed order will do.
        Reverse(pod.metadata.name().to_string()),
    )
}

/// The status the set's active pods give.
fn calculate_status(rs: &ReplicaSet, active: &[Arc<Pod>], now: SystemTime) -> ReplicaSetStatus {
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0).max(0) as u64;
    let template_labels = &rs.spec.template.metadata.labels;
    let count = |keep: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| keep(p)).count() as i32;
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        }),
        ready_replicas: count(&|p| p.is_ready()),
        available_replicas: count(&|p| is_available(p, min_ready, now)),
        observed_generation: rs.metadata.generation.unwrap_or(0),
        conditions: rs.status.conditions.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, restarts: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "creationTimestamp": "2024-01-01T00:00:00Z" },
            "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "x" }] },
            "status": {
                "phase": phase,
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" },
                                  "lastTransitionTime": "2024-01-01T00:00:10Z" }],
                "containerStatuses": [{ "name": "c", "restartCount": restarts }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_least_valuable_pods_rank_first() {
        let mut pods = [
            pod("ready-old", Some("n"), "Running", true, 0),
            pod("crashy", Some("n"), "Running", false, 5),
            pod("unscheduled", None, "Pending", false, 0),
            pod("pending", Some("n"), "Pending", false, 0),
            pod("not-ready", Some("n"), "Running", false, 0),
        ];
        pods.sort_by_cached_key(deletion_rank);
        let order: Vec<&str> = pods.iter().map(|p| p.metadata.name()).collect();
        assert_eq!(
            order,
            ["unscheduled", "pending", "crashy", "not-ready", "ready-old"]
        );
    }

    #[test]
    fn available_means_ready_for_min_ready_seconds() {
        let p = pod("p", Some("n"), "Running", true, 0);
        let ready_at = parse_time("2024-01-01T00:00:10Z").unwrap();
        assert!(is_available(&p, 0, ready_at));
        assert!(!is_available(&p, 5, ready_at + Duration::from_secs(4)));
        assert!(is_available(&p, 5, ready_at + Duration::from_secs(5)));
        let not_ready = pod("q", Some("n"), "Running", false, 0);
        assert!(!is_available(&not_ready, 0, ready_at));
    }
}
