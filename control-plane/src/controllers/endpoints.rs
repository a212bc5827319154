//! The endpoints controller: each Service with a selector gets an Endpoints object of
//! the same name listing the pods it selects.
//!
//! A selected pod with an IP (`status.podIP`), not being deleted and not finished, is
//! in `addresses` when it is ready (condition `Ready` `True`, or always with
//! `publishNotReadyAddresses`) and in `notReadyAddresses` otherwise, with its node and
//! a reference to it. Ports are the service's, with `targetPort` resolved per pod (a
//! number, or the name of a container port); pods that resolve to the same ports
//! share a subset. The Endpoints object is written only when it differs, and deleted
//! with its Service. A Service without a selector is left alone (its Endpoints are
//! managed by hand).

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::IntOrString;
use skiff_api::core::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service, ServicePort,
};
use skiff_api::meta::ObjectMeta;
use skiff_client::{Action, Api, Client, DeleteParams, ObjectRef, Store, WorkQueue};

use super::{
    ControllerConfig, Informers, Result, api_error, drive, feed, object_reference, resync,
};

/// The endpoints controller. Share it behind an `Arc`.
pub struct EndpointsController {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

impl EndpointsController {
    /// A controller over the shared informers' caches.
    pub fn new(client: Client, informers: &Informers) -> Self {
        EndpointsController {
            client,
            services: informers.services.store(),
            pods: informers.pods.store(),
            endpoints: informers.endpoints.store(),
        }
    }

    /// Runs the controller until dropped.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let q = queue.clone();
        let services = self.services.clone();
        let feeders = async move {
            futures::join!(
                feed(informers.services.subscribe(), q.clone(), |k| vec![k]),
                // A hand edit (or delete) of an Endpoints object is repaired.
                feed(informers.endpoints.subscribe(), q.clone(), |k| vec![k]),
                // A pod change may concern any service of its namespace, before or after.
                feed(informers.pods.subscribe(), q.clone(), |k| {
                    let namespace = k.namespace.clone().unwrap_or_default();
                    services
                        .filter(|s| s.metadata.namespace() == namespace)
                        .iter()
                        .map(|s| ObjectRef::from_obj(s.as_ref()))
                        .collect()
                }),
                resync(q.clone(), config.resync_period, || self.services.keys()),
            );
        };
        let this = self.clone();
        drive("endpoints", queue, config.workers, feeders, move |key| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        })
        .await;
    }

    /// Makes the Endpoints of one service match its pods.
    pub async fn reconcile(&self, key: &ObjectRef) -> Result<Action> {
        let namespace = key.namespace.clone().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &namespace);
        let Some(service) = self.services.get(key) else {
            if self.endpoints.get(key).is_some() {
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(error) if error.is_not_found() => {}
                    Err(error) => {
                        return Err(api_error(format!("deleting the endpoints of {key}"))(error));
                    }
                }
            }
            return Ok(Action::await_change());
        };
        if service.spec.selector.is_empty() {
            return Ok(Action::await_change());
        }
        let pods = self.pods.filter(|p| {
            p.metadata.namespace() == namespace
                && service
                    .spec
                    .selector
                    .iter()
                    .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        });
        let subsets = subsets_for(&service, pods.iter().map(|p| p.as_ref()));
        let existing = self.endpoints.get(key);
        if let Some(existing) = &existing
            && existing.subsets == subsets
            && existing.metadata.labels == service.metadata.labels
        {
            return Ok(Action::await_change());
        }
        let mut wanted = Endpoints {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(namespace.clone()),
                labels: service.metadata.labels.clone(),
                ..ObjectMeta::default()
            },
            subsets,
        };
        match existing {
            Some(existing) => {
                wanted.metadata.resource_version = existing.metadata.resource_version.clone();
                wanted.metadata.annotations = existing.metadata.annotations.clone();
                api.replace(&key.name, &wanted)
                    .await
                    .map_err(api_error(format!("updating the endpoints of {key}")))?;
            }
            None => {
                api.create(&wanted)
                    .await
                    .map_err(api_error(format!("creating the endpoints of {key}")))?;
            }
        }
        Ok(Action::await_change())
    }
}

/// The subsets of `service` over the pods it selects.
pub fn subsets_for<'a>(
    service: &Service,
    pods: impl Iterator<Item = &'a Pod>,
) -> Vec<EndpointSubset> {
    // Ports (as a sortable key) → the subset of the pods serving exactly those.
    let mut groups: BTreeMap<Vec<(String, i32, String)>, EndpointSubset> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod.status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some()
            || matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
        {
            continue;
        }
        let ports: Vec<EndpointPort> = service
            .spec
            .ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone(),
                    port: target_port(port, pod)?,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !service.spec.ports.is_empty() {
            // None of the service's ports exists on this pod.
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: None,
            node_name: pod.spec.node_name.clone().filter(|n| !n.is_empty()),
            target_ref: Some(object_reference(pod)).map(|mut r| {
                r.api_version = None;
                r.resource_version = None;
                r
            }),
        };
        let group_key = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let subset = groups.entry(group_key).or_insert_with(|| EndpointSubset {
            ports: ports.clone(),
            ..EndpointSubset::default()
        });
        if pod.is_ready() || service.spec.publish_not_ready_addresses {
            subset.addresses.push(address);
        } else {
            subset.not_ready_addresses.push(address);
        }
    }
    groups
        .into_values()
        .map(|mut subset| {
            subset.addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            subset.not_ready_addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
            subset
        })
        .collect()
}

/// The pod's port a service port leads to: `targetPort` as a number, or the container
/// port of that name; `port` when no target is given.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP")
                        == port.protocol.as_deref().unwrap_or("TCP")
            })
            .map(|p| p.container_port),
    }
}
