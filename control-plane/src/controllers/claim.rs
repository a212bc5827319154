//! Adopting orphans, shared by the controllers that own pods (ReplicaSet, Job), as
//! Kubernetes' `ControllerRefManager`: a pod without a controller that an owner's selector
//! matches is adopted, but only after a live read shows the owner still stands.

use serde_json::json;
use skiff_api::Resource;
use skiff_api::core::Pod;
use skiff_api::meta::OwnerReference;
use skiff_client::{Api, Client, Patch};

use super::{Result, api_error};

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
