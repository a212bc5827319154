//! The namespace controller: empties a namespace being deleted, then lets it go.
//!
//! A deleted namespace is marked `Terminating` and held by its `spec.finalizers`
//! (`kubernetes`). This controller deletes every object of every namespaced kind the
//! server serves in it, looks again until nothing is left (objects with finalizers
//! or grace periods take time), then removes `kubernetes` from `spec.finalizers`
//! through the `finalize` subresource, upon which the server removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::Resource;
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_api::batch::Job;
use skiff_api::coordination::Lease;
use skiff_api::core::{ConfigMap, Endpoints, Event, Namespace, Pod, Secret, Service};
use skiff_client::{
    Action, Api, Client, DeleteParams, ListParams, Method, ObjectRef, Store, WorkQueue,
};

use super::{ControllerConfig, Informers, Result, api_error, drive, feed, resync};

/// The finalizer that stands for "this controller has emptied the namespace".
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// The namespace controller. Share it behind an `Arc`.
pub struct NamespaceController {
    client: Client,
    namespaces: Store<Namespace>,
    /// How soon a namespace still holding objects is looked at again.
    recheck: Duration,
}

impl NamespaceController {
    /// A controller over the shared namespace cache.
    pub fn new(client: Client, informers: &Informers, recheck: Duration) -> Self {
        NamespaceController {
            client,
            namespaces: informers.namespaces.store(),
            recheck,
        }
    }

    /// Runs the controller until dropped.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let store = self.namespaces.clone();
        let feeders = async move {
            futures::join!(
                feed(informers.namespaces.subscribe(), q.clone(), |k| vec![k]),
                resync(q.clone(), config.resync_period, || store.keys()),
            );
        };
        let this = self.clone();
        drive("namespace", queue, config.workers, feeders, move |key| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        })
        .await;
    }

    /// Deletes what is left in a terminating namespace, and finalizes it once empty.
    pub async fn reconcile(&self, key: &ObjectRef) -> Result<Action> {
        let Some(namespace) = self.namespaces.get(key) else {
            return Ok(Action::await_change());
        };
        if namespace.metadata.deletion_timestamp.is_none()
            || !namespace
                .spec
                .finalizers
                .iter()
                .any(|f| f == KUBERNETES_FINALIZER)
        {
            return Ok(Action::await_change());
        }
        let name = namespace.metadata.name().to_string();
        // Owners first, so their controllers stop replacing what goes.
        let left = self.purge::<Deployment>(&name).await?
            + self.purge::<ReplicaSet>(&name).await?
            + self.purge::<Job>(&name).await?
            + self.purge::<Pod>(&name).await?
            + self.purge::<Service>(&name).await?
            + self.purge::<Endpoints>(&name).await?
            + self.purge::<ConfigMap>(&name).await?
            + self.purge::<Secret>(&name).await?
            + self.purge::<Lease>(&name).await?
            + self.purge::<Event>(&name).await?;
        if left > 0 {
            tracing::debug!(namespace = name, left, "namespace not empty yet");
            return Ok(Action::requeue_after(self.recheck));
        }
        let mut finalized = namespace.as_ref().clone();
        finalized
            .spec
            .finalizers
            .retain(|f| f != KUBERNETES_FINALIZER);
        finalized.metadata.resource_version = None;
        let body = serde_json::to_value(&finalized).unwrap_or_default();
        let path = format!("/api/v1/namespaces/{name}/finalize");
        match self
            .client
            .request_json(Method::PUT, &path, Some(body))
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = name, "namespace emptied and finalized");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() => Ok(Action::await_change()),
            Err(error) => Err(api_error(format!("finalizing namespace {name}"))(error)),
        }
    }

    /// Deletes every object of kind `K` in `namespace` not already being deleted;
    /// returns how many were there.
    async fn purge<K: Resource>(&self, namespace: &str) -> Result<usize> {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("listing {} in {namespace}", K::PLURAL)))?;
        for object in &list.items {
            let meta = object.meta();
            if meta.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(meta.name(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    return Err(api_error(format!(
                        "deleting {} {namespace}/{}",
                        K::KIND,
                        meta.name()
                    ))(error));
                }
            }
        }
        Ok(list.items.len())
    }
}
