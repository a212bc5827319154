//! The scheduler against a real API server: placement, spreading and packing, the
//! unschedulable condition and event, and retry when a node joins (no polling).

use std::time::Duration;

use serde_json::{Value, json};
use skiff_control_plane::scheduler::{self, SchedulerConfig, Scoring};

use crate::support::{HttpServer, eventually};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn node(name: &str, ready: bool, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": {
            "allocatable": { "cpu": cpu, "memory": "1Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
        },
    })
}

fn pod(name: &str, cpu: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "c", "image": "hello.wasm", "resources": { "requests": { "cpu": cpu } } }] },
    })
}

async fn node_of(server: &HttpServer, name: &str) -> Option<String> {
    let (_, pod) = server.test.get(&format!("{PODS}/{name}")).await;
    pod["spec"]["nodeName"].as_str().map(str::to_string)
}

fn start(server: &HttpServer, config: SchedulerConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(scheduler::run(server.client.clone(), config))
}

#[tokio::test]
async fn places_spreads_reports_unschedulable_and_retries_when_a_node_joins() {
    let server = HttpServer::start().await;
    for (name, ready) in [("a", true), ("b", true), ("c", false)] {
        server
            .test
            .create("/api/v1/nodes", node(name, ready, "1"))
            .await;
    }
    // An hour between blind retries: only the node joining can place the third pod.
    let scheduler = start(
        &server,
        SchedulerConfig {
            retry_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    // p1 and p2 first: pods are taken in no promised order, so p3 comes once both are
    // placed, to be the one that fits nowhere.
    for name in ["p1", "p2"] {
        server.test.create(PODS, pod(name, "600m")).await;
    }
    let wait = Duration::from_secs(60);
    let first = eventually("p1 bound", wait, || node_of(&server, "p1")).await;
    let second = eventually("p2 bound", wait, || node_of(&server, "p2")).await;
    server.test.create(PODS, pod("p3", "600m")).await;
    assert_ne!(first, second, "600m pods on 1-CPU nodes cannot share one");
    assert!(
        ["a", "b"].contains(&first.as_str()) && ["a", "b"].contains(&second.as_str()),
        "never the NotReady node"
    );

    let condition = eventually("p3 reported unschedulable", wait, || async {
        let (_, pod) = server.test.get(&format!("{PODS}/p3")).await;
        pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .cloned()
    })
    .await;
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(
        condition["message"],
        "0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu."
    );
    let event = eventually("a FailedScheduling event", wait, || async {
        let (_, events) = server
            .test
            .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp3")
            .await;
        events["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(event["reason"], "FailedScheduling");
    assert_eq!(event["type"], "Warning");
    assert_eq!(node_of(&server, "p3").await, None);

    server
        .test
        .create("/api/v1/nodes", node("d", true, "2"))
        .await;
    let third = eventually("p3 bound after node d joined", wait, || {
        node_of(&server, "p3")
    })
    .await;
    assert_eq!(third, "d");

    // A pod that already names its node is left alone.
    let mut pinned = pod("pinned", "0");
    pinned["spec"]["nodeName"] = json!("c");
    server.test.create(PODS, pinned).await;
    server.test.create(PODS, pod("last", "100m")).await;
    eventually("last bound", wait, || node_of(&server, "last")).await;
    assert_eq!(node_of(&server, "pinned").await.as_deref(), Some("c"));
    scheduler.abort();
}

#[tokio::test]
async fn most_allocated_packs_and_least_allocated_spreads() {
    for (scoring, expect_one_node) in [
        (Scoring::MostAllocated, true),
        (Scoring::LeastAllocated, false),
    ] {
        let server = HttpServer::start().await;
        for name in ["a", "b"] {
            server
                .test
                .create("/api/v1/nodes", node(name, true, "4"))
                .await;
        }
        let scheduler = start(
            &server,
            SchedulerConfig {
                scoring,
                ..Default::default()
            },
        );
        let mut nodes = std::collections::HashSet::new();
        for i in 0..6 {
            let name = format!("p{i}");
            server.test.create(PODS, pod(&name, "100m")).await;
            // One at a time, so each decision sees the previous one.
            nodes.insert(
                eventually("bound", Duration::from_secs(60), || node_of(&server, &name)).await,
            );
        }
        assert_eq!(
            nodes.len() == 1,
            expect_one_node,
            "{scoring:?} placed pods on {nodes:?}"
        );
        scheduler.abort();
    }
}

/// The pods bound to each node, from one listing.
async fn placements(server: &HttpServer) -> (Vec<(String, String)>, usize) {
    let (_, pods) = server.test.get(PODS).await;
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let bound: Vec<(String, String)> = items
        .iter()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["spec"]["nodeName"].as_str()?.to_string(),
            ))
        })
        .collect();
    let unschedulable = items
        .iter()
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
            })
        })
        .count();
    (bound, unschedulable)
}

#[tokio::test]
async fn concurrent_bindings_never_overcommit_a_node() {
    let server = HttpServer::start().await;
    for name in ["a", "b", "c"] {
        server
            .test
            .create("/api/v1/nodes", node(name, true, "1"))
            .await;
    }
    // Room for 30 pods of 100m; 40 created at once, decided while earlier bindings are
    // still in flight: only the assumed charges keep a node from taking an eleventh.
    for i in 0..40 {
        server
            .test
            .create(PODS, pod(&format!("p{i:02}"), "100m"))
            .await;
    }
    let scheduler = start(
        &server,
        SchedulerConfig {
            bind_concurrency: 64,
            retry_interval: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let (bound, _) = eventually(
        "30 bound, 10 unschedulable",
        Duration::from_secs(60),
        || async {
            let (bound, unschedulable) = placements(&server).await;
            (bound.len() + unschedulable >= 40).then_some((bound, unschedulable))
        },
    )
    .await;
    assert_eq!(bound.len(), 30, "{bound:?}");
    for name in ["a", "b", "c"] {
        let on_node = bound.iter().filter(|(_, n)| n == name).count();
        assert_eq!(
            on_node, 10,
            "node {name} holds 10 × 100m of its 1 CPU: {bound:?}"
        );
    }
    scheduler.abort();
}

#[tokio::test]
async fn sampling_still_finds_the_only_node_that_fits() {
    let server = HttpServer::start().await;
    // Far more feasible-looking nodes than the scheduler scores per pod (100), and one
    // with room: a search that stops early must still go on until something fits.
    for i in 0..250 {
        let mut small = node(&format!("small-{i:03}"), true, "100m");
        // A range of its own: the server's default pod range has room for 16 nodes.
        small["spec"] = json!({ "podCIDR": format!("100.64.{i}.0/24") });
        server.test.create("/api/v1/nodes", small).await;
    }
    server
        .test
        .create("/api/v1/nodes", node("big", true, "4"))
        .await;
    let scheduler = start(&server, SchedulerConfig::default());
    for name in ["p1", "p2", "p3"] {
        server.test.create(PODS, pod(name, "1")).await;
    }
    for name in ["p1", "p2", "p3"] {
        let placed = eventually("bound", Duration::from_secs(60), || node_of(&server, name)).await;
        assert_eq!(placed, "big", "{name}");
    }
    // The binding is one write: node name and PodScheduled=True together.
    let (_, p1) = server.test.get(&format!("{PODS}/p1")).await;
    let scheduled: Vec<&Value> = p1["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "PodScheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{p1}");
    assert_eq!(scheduled[0]["status"], "True");
    scheduler.abort();
}

/// Schedulers sharing a cluster elect one leader on the `skiff-scheduler` lease; when
/// the leader stops, another takes the lease once it runs out, and pods are placed again.
#[tokio::test]
async fn schedulers_elect_a_leader_and_another_takes_over_when_it_stops() {
    use skiff_control_plane::controllers::LeaderElectionConfig;
    let server = HttpServer::start().await;
    server
        .test
        .create("/api/v1/nodes", node("a", true, "4"))
        .await;
    let elected = |identity: &str| SchedulerConfig {
        leader_election: Some(LeaderElectionConfig {
            name: scheduler::LEASE_NAME.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(700),
            retry_period: Duration::from_millis(100),
            ..LeaderElectionConfig::default()
        }),
        ..SchedulerConfig::default()
    };
    let holder = || async {
        let (status, lease) = server
            .test
            .get(&format!(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{}",
                scheduler::LEASE_NAME
            ))
            .await;
        (status == 200)
            .then(|| lease["spec"]["holderIdentity"].as_str().map(str::to_string))
            .flatten()
    };
    let first = start(&server, elected("first"));
    let wait = Duration::from_secs(30);
    assert_eq!(eventually("a leader", wait, holder).await, "first");
    let second = start(&server, elected("second"));
    server.test.create(PODS, pod("p1", "100m")).await;
    eventually("p1 bound", wait, || node_of(&server, "p1")).await;
    assert_eq!(
        holder().await.as_deref(),
        Some("first"),
        "the leader kept its lease"
    );

    first.abort();
    eventually("the second scheduler leading", wait, || async {
        (holder().await.as_deref() == Some("second")).then_some(())
    })
    .await;
    server.test.create(PODS, pod("p2", "100m")).await;
    eventually("p2 bound by the new leader", wait, || {
        node_of(&server, "p2")
    })
    .await;
    second.abort();
}
