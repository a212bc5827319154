//! The scheduler: places pods without a node on the node that fits them best.
//!
//! It is an API client like any other. Informers keep its view of nodes and pods;
//! pods that need a node go through a work queue, one decision at a time, against an
//! in-memory account of what every node already holds. A decision is *assumed* at once
//! (the node's account is charged before the binding is even sent), so the next
//! decision already sees it, and bindings go out concurrently. A pod that fits nowhere
//! gets `PodScheduled=False` with Kubernetes' reason and message and a
//! `FailedScheduling` event, and is retried when nodes change or pods leave — its
//! throughput never depends on polling.

pub mod fit;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use skiff_api::core::{Node, Pod};
use skiff_api::meta::{Binding, ObjectMeta, ObjectReference};
use skiff_client::{Api, Client, Informer, ObjectRef, Patch, Store, WatcherParams, WorkQueue};
use tokio::sync::Semaphore;

use crate::controllers::{LeaderElectionConfig, LeaderElector};

pub use self::fit::Scoring;
use self::fit::{HostPort, NodeInfo, Resources, Unfit};

/// Settings of the scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours. Default `default-scheduler`.
    pub name: String,
    pub scoring: Scoring,
    /// Bindings in flight at once. Default 64.
    pub bind_concurrency: usize,
    /// When an unschedulable pod is tried again even if nothing seems to have changed.
    /// Default 30 s (changes to nodes and pods retry it at once).
    pub retry_interval: Duration,
    /// Stop scoring once this many feasible nodes were found (as Kubernetes'
    /// percentageOfNodesToScore): large clusters need not score every node. Default 100.
    pub feasible_nodes_to_find: usize,
    /// Leader election among the schedulers of a cluster (one per API server when
    /// several share a store), on the lease `kube-system/skiff-scheduler`: only the
    /// leader schedules, as kube-scheduler. `None` (the default) schedules at once.
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            name: "default-scheduler".into(),
            scoring: Scoring::LeastAllocated,
            bind_concurrency: 64,
            retry_interval: Duration::from_secs(30),
            feasible_nodes_to_find: 100,
            leader_election: None,
        }
    }
}

/// What the scheduler knows, behind one lock held only for in-memory work.
#[derive(Default)]
struct State {
    nodes: BTreeMap<String, NodeInfo>,
    /// Pods charged to a node: bound (seen by the informer) or assumed (bound by us).
    placed: HashMap<ObjectRef, (String, Resources, Vec<HostPort>)>,
    /// Pods we bound whose binding the informer has not shown yet.
    assumed: HashSet<ObjectRef>,
    /// Pods that fit nowhere the last time they were tried.
    unschedulable: HashSet<ObjectRef>,
    /// Where the next search for feasible nodes starts, so load rotates over nodes.
    next_start: usize,
}

impl State {
    fn place(&mut self, key: ObjectRef, node: String, pod: &Pod) {
        self.unplace(&key);
        let (requests, ports) = (fit::requests(pod), fit::host_ports(pod));
        if let Some(info) = self.nodes.get_mut(&node) {
            info.place(requests, &ports);
        }
        self.placed.insert(key, (node, requests, ports));
    }

    /// Removes the pod's charge; true if it had one.
    fn unplace(&mut self, key: &ObjectRef) -> bool {
        match self.placed.remove(key) {
            Some((node, requests, ports)) => {
                if let Some(info) = self.nodes.get_mut(&node) {
                    info.unplace(requests, &ports);
                }
                true
            }
            None => false,
        }
    }

    fn set_node(&mut self, name: &str, node: Option<Arc<Node>>) {
        match node {
            Some(node) => {
                let mut info = NodeInfo::new(node);
                for (placed_on, requests, ports) in self.placed.values() {
                    if placed_on == name {
                        info.place(*requests, ports);
                    }
                }
                self.nodes.insert(name.to_string(), info);
            }
            None => {
                self.nodes.remove(name);
            }
        }
    }

    /// The best node for `pod`, or why none fits.
    fn decide(
        &mut self,
        pod: &Pod,
        config: &SchedulerConfig,
    ) -> Result<String, BTreeMap<Unfit, usize>> {
        let requests = fit::requests(pod);
        let count = self.nodes.len();
        let mut reasons: BTreeMap<Unfit, usize> = BTreeMap::new();
        let mut best: Option<(i64, &str)> = None;
        let mut feasible = 0;
        let start = self.next_start % count.max(1);
        for info in self.nodes.values().cycle().skip(start).take(count) {
            match fit::check(pod, requests, info) {
                Ok(()) => {
                    feasible += 1;
                    let score = fit::score(pod, requests, info, config.scoring);
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, info.node.metadata.name()));
                    }
                    if feasible >= config.feasible_nodes_to_find {
                        break;
                    }
                }
                Err(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        let chosen = best.map(|(_, name)| name.to_string());
        self.next_start = self.next_start.wrapping_add(1);
        chosen.ok_or(reasons)
    }
}

/// The scheduler's shared parts.
struct Scheduler {
    config: SchedulerConfig,
    client: Client,
    state: Mutex<State>,
    pods: Store<Pod>,
    queue: WorkQueue<ObjectRef>,
    /// Bounds the bindings in flight.
    binds: Arc<Semaphore>,
}

impl Scheduler {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        pod.spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == self.config.name
    }

    /// Retries every pod that fit nowhere: something changed that may make room.
    fn retry_unschedulable(&self) {
        let keys: Vec<ObjectRef> = self.state().unschedulable.drain().collect();
        for key in keys {
            self.queue.add(key);
        }
    }

    /// Accounts one pod change from the informer.
    fn observe_pod(&self, key: ObjectRef) {
        let pod = self.pods.get(&key);
        let mut state = self.state();
        match pod.as_deref() {
            Some(pod) if bound(pod).is_some() && !terminal(pod) => {
                state.assumed.remove(&key);
                state.unschedulable.remove(&key);
                state.place(key, bound(pod).unwrap_or_default().to_string(), pod);
            }
            Some(pod)
                if bound(pod).is_none()
                    && !terminal(pod)
                    && pod.metadata.deletion_timestamp.is_none() =>
            {
                if !state.assumed.contains(&key) && self.is_ours(pod) {
                    drop(state);
                    self.queue.add(key);
                }
            }
            _ => {
                // Gone, finished, or deleted before it was placed: its room is free again.
                state.assumed.remove(&key);
                state.unschedulable.remove(&key);
                let freed = state.unplace(&key);
                drop(state);
                if freed {
                    self.retry_unschedulable();
                }
            }
        }
    }

    /// One scheduling decision for the pod under `key`.
    async fn schedule(self: &Arc<Self>, key: ObjectRef) {
        let Some(pod) = self.pods.get(&key) else {
            return;
        };
        if bound(&pod).is_some()
            || terminal(&pod)
            || pod.metadata.deletion_timestamp.is_some()
            || !self.is_ours(&pod)
        {
            return;
        }
        let decision = {
            let mut state = self.state();
            if state.assumed.contains(&key) {
                return;
            }
            let decision = state.decide(&pod, &self.config);
            match &decision {
                Ok(node) => {
                    state.place(key.clone(), node.clone(), &pod);
                    state.assumed.insert(key.clone());
                    state.unschedulable.remove(&key);
                }
                Err(_) => {
                    state.unschedulable.insert(key.clone());
                }
            }
            (decision, state.nodes.len())
        };
        match decision {
            (Ok(node), _) => {
                let permit = self.binds.clone().acquire_owned().await;
                let scheduler = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    scheduler.bind(key, &pod, node).await;
                });
            }
            (Err(reasons), nodes) => {
                let message = unschedulable_message(nodes, &reasons);
                self.queue.add_after(key, self.config.retry_interval);
                let scheduler = self.clone();
                tokio::spawn(async move { scheduler.report_unschedulable(&pod, message).await });
            }
        }
    }

    async fn bind(&self, key: ObjectRef, pod: &Pod, node: String) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace());
        let binding = Binding {
            api_version: "v1".into(),
            kind: "Binding".into(),
            // What Kubernetes' scheduler sends: the pod's name, namespace and uid, not
            // its labels and annotations (the server reads only the name from the URL).
            metadata: ObjectMeta {
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        match api
            .create_subresource(pod.metadata.name(), "binding", &binding)
            .await
        {
            Ok(_) => tracing::debug!(pod = %key, %node, "bound"),
            Err(error) => {
                // Not placed after all: give the room back and try again later.
                let mut state = self.state();
                state.assumed.remove(&key);
                state.unplace(&key);
                drop(state);
                if error.is_not_found() {
                    return;
                }
                if !error.is_conflict() {
                    tracing::warn!(pod = %key, %node, %error, "binding failed");
                }
                self.queue.add_rate_limited(key);
            }
        }
    }

    async fn report_unschedulable(&self, pod: &Pod, message: String) {
        let already = pod
            .condition("PodScheduled")
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str()));
        if already {
            return;
        }
        let namespace = pod.metadata.namespace();
        let mut conditions: Vec<serde_json::Value> = pod
            .status
            .conditions
            .iter()
            .filter(|c| c.type_ != "PodScheduled")
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        conditions.push(json!({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastTransitionTime": now,
        }));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if let Err(error) = api
            .patch_status(
                pod.metadata.name(),
                &Patch::Merge(json!({ "status": { "conditions": conditions } })),
            )
            .await
        {
            tracing::debug!(%error, pod = pod.metadata.name(), "reporting an unschedulable pod failed");
        }
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            // Named as client-go names events: the object's name and a nanosecond stamp.
            "metadata": { "name": format!("{}.{:x}", pod.metadata.name(), unix_nanos()), "namespace": namespace },
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "namespace": namespace,
                "name": pod.metadata.name(), "uid": pod.metadata.uid,
            },
            "reason": "FailedScheduling", "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": { "component": "default-scheduler" }, "reportingComponent": "default-scheduler",
        });
        let path = format!("/api/v1/namespaces/{namespace}/events");
        if let Err(error) = self
            .client
            .request_json(skiff_client::Method::POST, &path, Some(event))
            .await
        {
            tracing::debug!(%error, "recording a FailedScheduling event failed");
        }
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn bound(pod: &Pod) -> Option<&str> {
    pod.spec.node_name.as_deref().filter(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// `0/3 nodes are available: 1 Insufficient memory, 2 node(s) were not ready.`
fn unschedulable_message(nodes: usize, reasons: &BTreeMap<Unfit, usize>) -> String {
    if reasons.is_empty() {
        return format!("0/{nodes} nodes are available: no nodes registered.");
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, n)| format!("{n} {}", reason.describe()))
        .collect();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// The lease schedulers elect their leader on (in `kube-system`).
pub const LEASE_NAME: &str = "skiff-scheduler";

/// Runs the scheduler until the returned future is dropped: at once, or while this
/// process leads (see [`SchedulerConfig::leader_election`]).
pub async fn run(client: Client, config: SchedulerConfig) {
    match config.leader_election.clone() {
        Some(election) => {
            let elector = LeaderElector::new(client.clone(), election);
            elector
                .run(|| schedule(client.clone(), config.clone()))
                .await;
        }
        None => schedule(client, config).await,
    }
}

/// The scheduler itself, without leader election.
async fn schedule(client: Client, config: SchedulerConfig) {
    let pods = Informer::new(Api::<Pod>::all(client.clone()), WatcherParams::default());
    let nodes = Informer::new(Api::<Node>::all(client.clone()), WatcherParams::default());
    let scheduler = Arc::new(Scheduler {
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        config,
        client,
        state: Mutex::new(State::default()),
        pods: pods.store(),
        queue: WorkQueue::new(),
    });

    // Nodes first, so the first decisions see the whole cluster.
    nodes.store().wait_until_ready().await;
    let node_store = nodes.store();
    let mut node_changes = nodes.subscribe();
    let node_task = {
        let scheduler = scheduler.clone();
        async move {
            while let Some(key) = node_changes.next().await {
                let node = node_store.get(&key);
                scheduler.state().set_node(&key.name, node);
                scheduler.retry_unschedulable();
            }
        }
    };
    let mut pod_changes = pods.subscribe();
    let pod_task = {
        let scheduler = scheduler.clone();
        async move {
            while let Some(key) = pod_changes.next().await {
                scheduler.observe_pod(key);
            }
        }
    };
    let decide_task = {
        let scheduler = scheduler.clone();
        async move {
            while let Some(key) = scheduler.queue.get().await {
                scheduler.schedule(key.clone()).await;
                scheduler.queue.done(&key);
            }
        }
    };
    tracing::info!("scheduler started");
    tokio::join!(node_task, pod_task, decide_task);
    drop((pods, nodes));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_count_reasons_like_kubernetes() {
        let reasons = BTreeMap::from([(Unfit::NotReady, 2), (Unfit::Memory, 1)]);
        assert_eq!(
            unschedulable_message(3, &reasons),
            "0/3 nodes are available: 2 node(s) were not ready, 1 Insufficient memory."
        );
        assert_eq!(
            unschedulable_message(0, &BTreeMap::new()),
            "0/0 nodes are available: no nodes registered."
        );
    }
}
