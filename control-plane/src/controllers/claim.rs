//! What the controllers that own pods (ReplicaSet, Job) do to pods alike, as Kubernetes'
//! `ControllerRefManager` and `PodControl`: adopting orphans (a pod without a controller
//! that an owner's selector matches, only after a live read shows the owner still stands)
//! and deleting pods under expectations, with events.

use futures::future::join_all;
use serde_json::json;
use skiff_api::Resource;
use skiff_api::core::Pod;
use skiff_api::meta::OwnerReference;
use skiff_api::meta::Preconditions;
use skiff_client::{Api, Client, DeleteParams, ObjectRef, Patch, Store};

use super::events::EventRecorder;
use super::expectations::Expectations;
use super::{Result, api_error, key};

/// Whether `owner`, as the cache has it, is still the live object: not being deleted, and
/// not replaced by a namesake. Read from the API server, not the cache.
pub(crate) async fn owner_still_current<K: Resource>(client: &Client, owner: &K) -> Result<bool> {
    let meta = owner.meta();
    let namespace = meta.namespace();
    let fresh = Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(meta.name())
        .await
        .map_err(api_error(format!(
            "reading {} {namespace}/{} before adopting",
            K::KIND.to_lowercase(),
            meta.name()
        )))?;
    Ok(fresh.is_some_and(|f| f.meta().uid == meta.uid && f.meta().deletion_timestamp.is_none()))
}

/// Makes `reference` the controller of `pod` (guarded by the pod's resourceVersion);
/// `None` if the pod is gone.
pub(crate) async fn adopt(
    pods_api: &Api<Pod>,
    pod: &Pod,
    reference: OwnerReference,
    owner: &str,
) -> Result<Option<Pod>> {
    let mut refs = pod.metadata.owner_references.clone();
    refs.push(reference);
    let patch = Patch::Merge(json!({ "metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }}));
    match pods_api.patch(pod.metadata.name(), &patch).await {
        Ok(pod) => {
            tracing::info!(pod = pod.metadata.name(), owner, "adopted pod");
            Ok(Some(pod))
        }
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(api_error(format!(
            "adopting pod {} into {owner}",
            pod.metadata.name()
        ))(error)),
    }
}

/// Deletes `victims` for `owner` (whose key is `owner_key`), each guarded by its uid so a
/// namesake created since is never deleted. Every deletion is expected first, so a lagging
/// cache does not make the owner act twice; a failed one is no longer expected. Events:
/// `SuccessfulDelete`, `FailedDelete`. Returns the first failure.
pub(crate) async fn delete_pods<K: Resource>(
    owner: &K,
    owner_key: &ObjectRef,
    victims: &[&Pod],
    pods_api: &Api<Pod>,
    expectations: &Expectations,
    recorder: &EventRecorder,
) -> Result<()> {
    for pod in victims {
        expectations.expect_deletion(owner_key, ObjectRef::from_obj(*pod));
    }
    let results = join_all(victims.iter().map(|pod| async move {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        pods_api.delete(pod.metadata.name(), &params).await
    }))
    .await;
    let mut failure = None;
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(_) => {
                let message = format!("Deleted pod: {}", pod.metadata.name());
                recorder.normal(owner, "SuccessfulDelete", &message).await;
            }
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                expectations.deletion_failed(owner_key, &ObjectRef::from_obj(*pod));
                let message = format!("Error deleting: {error}");
                recorder.warning(owner, "FailedDelete", &message).await;
                failure.get_or_insert(error);
            }
        }
    }
    match failure {
        Some(error) => Err(api_error(format!(
            "deleting pods of {} {owner_key}",
            K::KIND.to_lowercase()
        ))(error)),
        None => Ok(()),
    }
}

/// The owners of kind `K` a change of `pod` concerns: its controller, if it is a `K` (the
/// first value, for the caller to remember), else every `K` in its namespace whose
/// selector matches it (`selects`), each a candidate to adopt it.
pub(crate) fn owners_of_pod<K: Resource>(
    pod: &Pod,
    owners: &Store<K>,
    selects: impl Fn(&K, &std::collections::BTreeMap<String, String>) -> bool,
) -> (Option<ObjectRef>, Vec<ObjectRef>) {
    let namespace = pod.metadata.namespace();
    match pod.metadata.controller() {
        Some(owner) if owner.kind == K::KIND && owner.api_version == K::api_version() => {
            (Some(key(namespace, &owner.name)), Vec::new())
        }
        Some(_) => (None, Vec::new()),
        None => {
            let candidates = owners
                .filter(|o| o.meta().namespace() == namespace && selects(o, &pod.metadata.labels))
                .iter()
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect();
            (None, candidates)
        }
    }
}
