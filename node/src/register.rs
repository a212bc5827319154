//! The node's own objects: its Node (capacity, addresses, conditions, info) and its
//! Lease in `kube-node-lease`, renewed as the heartbeat.

use std::sync::Arc;

use ipnet::Ipv4Net;
use std::time::SystemTime;

use serde_json::json;
use skiff_api::coordination::Lease;
use skiff_api::core::Node;
use skiff_client::{Api, Patch};

use crate::NodeContext;
use crate::fabric::FABRIC_ANNOTATION;
use crate::ipam::PodIps;

/// Creates the Node, or brings an existing one's status up to date. Returns the node's pod
/// range, which the API server gives a new Node.
pub async fn register(
    ctx: &NodeContext,
    api_port: u16,
    fabric_port: u16,
) -> Result<Option<Ipv4Net>, skiff_client::Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let config = &ctx.config;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = total_memory().unwrap_or(8 * 1024 * 1024 * 1024);
    let resources = |pods: u32| json!({ "cpu": cpus.to_string(), "memory": memory.to_string(), "pods": pods.to_string() });
    let fabric = format!("{}:{fabric_port}", config.address);
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let status = |pods: u32| {
        json!({
            "capacity": resources(pods),
            "allocatable": resources(pods),
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "skiff node agent is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": api_port } },
            "addresses": [{ "type": "InternalIP", "address": config.address }, { "type": "Hostname", "address": config.name }],
            "nodeInfo": {
                "machineID": config.name, "systemUUID": config.name, "bootID": "",
                "kernelVersion": "", "osImage": format!("skiff {}", env!("CARGO_PKG_VERSION")),
                "containerRuntimeVersion": "wasmtime://48.0.8",
                "kubeletVersion": concat!("v1.31.0+skiff-", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "",
                "operatingSystem": std::env::consts::OS, "architecture": std::env::consts::ARCH,
            },
        })
    };
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": config.name,
            "labels": {
                "kubernetes.io/hostname": config.name,
                "kubernetes.io/os": std::env::consts::OS,
                "kubernetes.io/arch": std::env::consts::ARCH,
            },
            "annotations": { FABRIC_ANNOTATION: fabric },
        },
        "status": status(config.max_pods),
    });
    let mut typed: Node = serde_json::from_value(node).expect("a well-formed node");
    typed.metadata.labels.extend(config.labels.clone());
    let node = match api.create(&typed).await {
        Ok(node) => node,
        Err(error) if error.is_already_exists() => {
            // Back after a restart: the fabric listens on a new port.
            let annotations =
                json!({ "metadata": { "annotations": { FABRIC_ANNOTATION: fabric } } });
            api.patch(&config.name, &Patch::Merge(annotations)).await?
        }
        Err(error) => return Err(error),
    };
    let range = node
        .spec
        .pod_cidr
        .as_deref()
        .and_then(|cidr| cidr.parse::<Ipv4Net>().ok());
    // A node takes no more pods than its range has addresses for.
    let pods = match range {
        Some(range) => config.max_pods.min(PodIps::new(range).capacity()),
        None => {
            tracing::warn!(node = %config.name, "the node has no pod range (spec.podCIDR): its pods get no IP addresses");
            config.max_pods
        }
    };
    api.patch_status(
        &config.name,
        &Patch::Merge(json!({ "status": status(pods) })),
    )
    .await?;
    Ok(range)
}

/// Renews the node's Lease forever; errors are logged and retried at the next beat.
pub async fn heartbeat(ctx: Arc<NodeContext>) {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let name = ctx.config.name.clone();
    let mut tick = tokio::time::interval(ctx.config.lease_renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let spec = json!({
            "holderIdentity": name,
            "leaseDurationSeconds": ctx.config.lease_duration.as_secs().max(1),
            "renewTime": now,
        });
        let result = match api
            .patch(&name, &Patch::Merge(json!({ "spec": spec })))
            .await
        {
            Err(error) if error.is_not_found() => {
                let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": name }, "spec": spec });
                let typed: Lease = serde_json::from_value(lease).expect("a well-formed lease");
                api.create(&typed).await.map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!(%error, node = %name, "renewing the node lease failed");
        }
    }
}

/// Total memory of the machine, from /proc/meminfo where there is one.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
