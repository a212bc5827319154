//! The node lifecycle controller: notices nodes that stopped heartbeating, and moves
//! their pods elsewhere.
//!
//! Every `node_monitor_period` it compares each node's Lease renewal with now. A node
//! silent for longer than `node_monitor_grace` gets `Ready=Unknown` and the
//! `node.kubernetes.io/unreachable:NoExecute` taint (so the scheduler places nothing
//! new there); once the taint has stood for a pod's toleration — by default
//! `pod_eviction_timeout`, far shorter than Kubernetes' 50 s + 300 s, because a wasm pod
//! restarts in milliseconds — the pod is deleted at once (its node is gone and cannot
//! stop it), and its ReplicaSet creates a replacement on a healthy node. A node that
//! heartbeats again loses the taint; it stops the pods that were replaced when it sees
//! them gone from the API.

use std::time::{Duration, SystemTime};

use serde_json::json;
use skiff_api::coordination::Lease;
use skiff_api::core::{Node, Pod, Taint};
use skiff_client::{Api, Client, DeleteParams, Informer, ObjectRef, Patch, Store, WatcherParams};

use super::events::EventRecorder;

/// The taint an unreachable node gets.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Settings of the node lifecycle controller.
#[derive(Clone, Copy, Debug)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked. Default 1 s.
    pub monitor_period: Duration,
    /// Silent this long, a node is unreachable. Default 6 s (three missed renewals).
    pub monitor_grace: Duration,
    /// How long pods without their own toleration stay on an unreachable node.
    /// Default 2 s.
    pub pod_eviction_timeout: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            monitor_period: Duration::from_secs(1),
            monitor_grace: Duration::from_secs(6),
            pod_eviction_timeout: Duration::from_secs(2),
        }
    }
}

/// Watches nodes and their leases; see the module docs.
pub struct NodeLifecycleController {
    client: Client,
    config: NodeLifecycleConfig,
    recorder: EventRecorder,
}

impl NodeLifecycleController {
    pub fn new(client: Client, config: NodeLifecycleConfig, recorder: EventRecorder) -> Self {
        NodeLifecycleController {
            client,
            config,
            recorder,
        }
    }

    /// Checks every node each period until dropped.
    pub async fn run(&self, pods: Store<Pod>) {
        let nodes = Informer::new(
            Api::<Node>::all(self.client.clone()),
            WatcherParams::default(),
        );
        let leases = Informer::new(
            Api::<Lease>::namespaced(self.client.clone(), "kube-node-lease"),
            WatcherParams::default(),
        );
        nodes.store().wait_until_ready().await;
        leases.store().wait_until_ready().await;
        let mut tick = tokio::time::interval(self.config.monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for node in nodes.store().list() {
                let lease = leases
                    .store()
                    .get(&ObjectRef::new(node.metadata.name()).within("kube-node-lease"));
                if let Err(error) = self.check(&node, lease.as_deref(), &pods).await {
                    tracing::warn!(%error, node = node.metadata.name(), "node lifecycle check failed");
                }
            }
        }
    }

    async fn check(
        &self,
        node: &Node,
        lease: Option<&Lease>,
        pods: &Store<Pod>,
    ) -> Result<(), skiff_client::Error> {
        let name = node.metadata.name();
        let now = SystemTime::now();
        let last_heard = lease
            .and_then(|l| l.spec.renew_time.as_deref())
            .or_else(|| {
                node.condition("Ready")
                    .and_then(|c| c.last_heartbeat_time.as_deref())
            })
            .or(node.metadata.creation_timestamp.as_deref())
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let silent = last_heard
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() > self.config.monitor_grace);
        let taint = node.spec.taints.iter().find(|t| t.key == UNREACHABLE_TAINT);
        let api: Api<Node> = Api::all(self.client.clone());
        match (silent, taint) {
            (true, None) => {
                let stamp = humantime::format_rfc3339_seconds(now).to_string();
                let mut taints = node.spec.taints.clone();
                taints.push(Taint {
                    key: UNREACHABLE_TAINT.into(),
                    effect: "NoExecute".into(),
                    time_added: Some(stamp.clone()),
                    ..Default::default()
                });
                api.patch(name, &Patch::Merge(json!({ "spec": { "taints": taints } })))
                    .await?;
                let conditions: Vec<serde_json::Value> = node
                    .status
                    .conditions
                    .iter()
                    .map(|c| {
                        let mut value = serde_json::to_value(c).unwrap_or_default();
                        if c.type_ == "Ready" {
                            value["status"] = json!("Unknown");
                            value["reason"] = json!("NodeStatusUnknown");
                            value["message"] = json!("Kubelet stopped posting node status.");
                            value["lastTransitionTime"] = json!(stamp);
                        }
                        value
                    })
                    .collect();
                api.patch_status(
                    name,
                    &Patch::Merge(json!({ "status": { "conditions": conditions } })),
                )
                .await?;
                self.recorder
                    .normal(
                        node,
                        "NodeNotReady",
                        &format!("Node {name} status is now: NodeNotReady"),
                    )
                    .await;
                tracing::warn!(node = name, "node stopped heartbeating: marked unreachable");
            }
            (true, Some(taint)) => {
                let since = taint
                    .time_added
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .unwrap_or(now);
                let tainted_for = now.duration_since(since).unwrap_or_default();
                for pod in pods.filter(|p| p.spec.node_name.as_deref() == Some(name)) {
                    if self.evict_due(&pod, tainted_for) {
                        let pods_api: Api<Pod> =
                            Api::namespaced(self.client.clone(), pod.metadata.namespace());
                        match pods_api
                            .delete(pod.metadata.name(), &DeleteParams::immediate())
                            .await
                        {
                            Ok(_) => {
                                self.recorder
                                    .normal(
                                        &*pod,
                                        "TaintManagerEviction",
                                        &format!(
                                            "Marking for deletion Pod {}/{}",
                                            pod.metadata.namespace(),
                                            pod.metadata.name()
                                        ),
                                    )
                                    .await
                            }
                            Err(error) if error.is_not_found() => {}
                            Err(error) => return Err(error),
                        }
                    }
                }
            }
            (false, Some(_)) if node.is_ready() => {
                let taints: Vec<&Taint> = node
                    .spec
                    .taints
                    .iter()
                    .filter(|t| t.key != UNREACHABLE_TAINT)
                    .collect();
                api.patch(name, &Patch::Merge(json!({ "spec": { "taints": taints } })))
                    .await?;
                tracing::info!(node = name, "node heartbeats again: no longer unreachable");
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a pod on a node unreachable for `tainted_for` should go now: after its own
    /// toleration of the taint, or the default eviction timeout.
    fn evict_due(&self, pod: &Pod, tainted_for: Duration) -> bool {
        let taint = Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let toleration = pod.spec.tolerations.iter().find(|t| t.tolerates(&taint));
        match toleration {
            Some(t) => match t.toleration_seconds {
                Some(seconds) => tainted_for >= Duration::from_secs(seconds.max(0) as u64),
                None => false,
            },
            None => tainted_for >= self.config.pod_eviction_timeout,
        }
    }
}
