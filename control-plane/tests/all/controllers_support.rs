//! A real API server on 127.0.0.1:0 and a client of it, for the controller tests; the
//! tests play the node agent by writing pod status.

use std::future::Future;
use std::time::Duration;

use serde_json::json;
use skiff_api::core::Pod;
use skiff_client::{Api, Client, ListParams, Patch};
use skiff_control_plane::controllers::{self, ControllerConfig};

/// A task aborted on drop.
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An API server serving on a local port.
pub struct Cluster {
    pub client: Client,
    _server: crate::support::HttpServer,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let server = crate::support::HttpServer::start().await;
        Cluster {
            client: server.client.clone(),
            _server: server,
        }
    }

    /// Runs every controller (no leader election, quick resync) until the task drops.
    pub fn start_controllers(&self) -> Task {
        self.start_controllers_with(test_config())
    }

    pub fn start_controllers_with(&self, config: ControllerConfig) -> Task {
        let client = self.client.clone();
        Task(tokio::spawn(controllers::run(client, config)))
    }

    pub fn api<K: skiff_api::Resource>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Pods in `namespace` matching `selector`.
    pub async fn pods(&self, namespace: &str, selector: &str) -> Vec<Pod> {
        self.api::<Pod>(namespace)
            .list(&ListParams::labels(selector))
            .await
            .expect("list pods")
            .items
    }

    /// Plays the node: the pod runs with an IP and is ready (or not).
    pub async fn set_pod_state(&self, namespace: &str, name: &str, ip: &str, ready: bool) {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let status = if ready { "True" } else { "False" };
        let patch = Patch::Merge(json!({ "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "conditions": [
                { "type": "Ready", "status": status, "lastTransitionTime": now },
            ],
        }}));
        self.api::<Pod>(namespace)
            .patch_status(name, &patch)
            .await
            .expect("patch pod status");
    }
}

pub fn test_config() -> ControllerConfig {
    ControllerConfig {
        leader_election: None,
        resync_period: Duration::from_secs(2),
        namespace_recheck: Duration::from_millis(200),
        max_requeue: Duration::from_secs(1),
        ..ControllerConfig::default()
    }
}

/// Polls `check` (every 50 ms) until it returns `Some`, or panics after `timeout`
/// naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Active pods: not being deleted, not finished.
pub fn active(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !matches!(p.status.phase.as_deref(), Some("Succeeded" | "Failed")))
        .collect()
}

pub fn names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods.iter().map(|p| p.metadata.name().to_string()).collect();
    names.sort();
    names
}

pub const WAIT: Duration = Duration::from_secs(20);
