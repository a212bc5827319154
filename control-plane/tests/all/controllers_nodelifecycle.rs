//! The node lifecycle controller: a node that stops heartbeating is marked unreachable
//! and its pods are evicted (unless they tolerate it); heartbeating again clears it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::json;
use skiff_api::coordination::Lease;
use skiff_api::core::{Node, Pod};
use skiff_client::{Api, Patch};
use skiff_control_plane::controllers::nodelifecycle::{NodeLifecycleConfig, UNREACHABLE_TAINT};

use crate::controllers_support::{Cluster, Task, test_config, wait_for};

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

#[tokio::test]
async fn a_silent_node_is_marked_unreachable_and_its_pods_evicted() {
    let cluster = Cluster::start().await;
    let nodes: Api<Node> = cluster.api("");
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "n1" },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] },
    }))
    .unwrap();
    nodes.create(&node).await.unwrap();
    let leases: Api<Lease> = cluster.api("kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "n1" },
        "spec": { "holderIdentity": "n1", "leaseDurationSeconds": 1, "renewTime": now() },
    }))
    .unwrap();
    leases.create(&lease).await.unwrap();
    let pods: Api<Pod> = cluster.api("default");
    for (name, tolerations) in [
        ("plain", json!([])),
        (
            "patient",
            json!([{ "key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute" }]),
        ),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "nodeName": "n1", "tolerations": tolerations, "containers": [{ "name": "c", "image": "x.wasm" }] },
        }))
        .unwrap();
        pods.create(&pod).await.unwrap();
    }

    // The "node" heartbeats every 100 ms while `alive` holds.
    let alive = Arc::new(AtomicBool::new(true));
    let _heart = {
        let alive = alive.clone();
        let leases = leases.clone();
        Task(tokio::spawn(async move {
            loop {
                if alive.load(Ordering::SeqCst) {
                    let _ = leases
                        .patch(
                            "n1",
                            &Patch::Merge(json!({ "spec": { "renewTime": now() } })),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    };
    let config = skiff_control_plane::controllers::ControllerConfig {
        node_lifecycle: NodeLifecycleConfig {
            monitor_period: Duration::from_millis(100),
            monitor_grace: Duration::from_millis(800),
            pod_eviction_timeout: Duration::from_millis(300),
        },
        ..test_config()
    };
    let _controllers = cluster.start_controllers_with(config);

    // Heartbeating, the node stays untainted: sampled over three grace periods.
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let node = nodes.get("n1").await.unwrap();
        assert!(
            node.spec.taints.is_empty(),
            "a heartbeating node was tainted: {:?}",
            node.spec.taints
        );
    }

    alive.store(false, Ordering::SeqCst);
    let wait = Duration::from_secs(30);
    wait_for("n1 marked unreachable", wait, || async {
        let node = nodes.get("n1").await.ok()?;
        let tainted = node
            .spec
            .taints
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute");
        let unknown = node
            .condition("Ready")
            .is_some_and(|c| c.status == "Unknown");
        (tainted && unknown).then_some(())
    })
    .await;
    wait_for("the plain pod evicted", wait, || async {
        pods.get_opt("plain").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        pods.get_opt("patient").await.unwrap().is_some(),
        "a pod tolerating the taint for ever stays"
    );

    // The node comes back: heartbeats and reports Ready again; the taint goes.
    alive.store(true, Ordering::SeqCst);
    nodes
        .patch_status(
            "n1",
            &Patch::Merge(
                json!({ "status": { "conditions": [{ "type": "Ready", "status": "True" }] } }),
            ),
        )
        .await
        .unwrap();
    wait_for("the taint removed", wait, || async {
        let node = nodes.get("n1").await.ok()?;
        node.spec
            .taints
            .iter()
            .all(|t| t.key != UNREACHABLE_TAINT)
            .then_some(())
    })
    .await;
}
