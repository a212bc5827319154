//! The ReplicaSet controller against a real API server.

use std::time::Duration;

use serde_json::json;
use skiff_api::apps::ReplicaSet;
use skiff_api::core::{Event, Pod};
use skiff_client::watcher::Event as WatchEvent;
use skiff_client::{Api, ListParams, ObjectRef, Patch};
use skiff_control_plane::controllers::EventRecorder;
use skiff_control_plane::controllers::replicaset::ReplicaSetController;

use crate::controllers_support::{Cluster, WAIT, active, names, wait_for};

fn replicaset(name: &str, app: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app, "tier": "web" } },
                "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    }))
    .expect("replicaset")
}

async fn scale(cluster: &Cluster, name: &str, replicas: i32) {
    cluster
        .api::<ReplicaSet>("default")
        .patch(
            name,
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .expect("scale");
}

/// Waits until the set has exactly `n` active pods and its status says so.
async fn settled(cluster: &Cluster, name: &str, selector: &str, n: usize) -> Vec<Pod> {
    let rs_api = cluster.api::<ReplicaSet>("default");
    wait_for(&format!("{name} to settle at {n} pods"), WAIT, || async {
        let pods = active(cluster.pods("default", selector).await);
        let rs = rs_api.get(name).await.expect("rs");
        let observed = rs.status.observed_generation == rs.metadata.generation.unwrap_or(0);
        (pods.len() == n && rs.status.replicas == n as i32 && observed).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn replicaset_scales_up_and_down_deleting_the_least_valuable_pods() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let rs_api = cluster.api::<ReplicaSet>("default");
    let rs = rs_api
        .create(&replicaset("web", "web", 0))
        .await
        .expect("create");
    let uid = rs.metadata.uid.clone().expect("uid");

    settled(&cluster, "web", "app=web", 0).await;
    scale(&cluster, "web", 5).await;
    let pods = settled(&cluster, "web", "app=web", 5).await;
    for pod in &pods {
        assert!(
            pod.metadata.name().starts_with("web-"),
            "{}",
            pod.metadata.name()
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            pod.metadata.labels.get("tier").map(String::as_str),
            Some("web")
        );
        let owner = pod.metadata.controller().expect("a controller reference");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ReplicaSet", "web", uid.as_str())
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    // The node runs three of them; two are ready. The two pending ones and the
    // running-but-not-ready one are the least valuable.
    let mut sorted = names(&pods);
    let ready: Vec<String> = sorted.drain(..2).collect();
    cluster
        .set_pod_state("default", &ready[0], "10.0.0.1", true)
        .await;
    cluster
        .set_pod_state("default", &ready[1], "10.0.0.2", true)
        .await;
    cluster
        .set_pod_state("default", &sorted[0], "10.0.0.3", false)
        .await;
    wait_for("readyReplicas 2", WAIT, || async {
        let rs = rs_api.get("web").await.expect("rs");
        (rs.status.ready_replicas == 2 && rs.status.available_replicas == 2).then_some(())
    })
    .await;

    scale(&cluster, "web", 2).await;
    let left = settled(&cluster, "web", "app=web", 2).await;
    assert_eq!(names(&left), ready, "the ready pods are kept");

    // Scale to 3 then 2 again: the new pending pod goes, not a ready one.
    scale(&cluster, "web", 3).await;
    settled(&cluster, "web", "app=web", 3).await;
    scale(&cluster, "web", 2).await;
    let left = settled(&cluster, "web", "app=web", 2).await;
    assert_eq!(names(&left), ready);

    scale(&cluster, "web", 0).await;
    settled(&cluster, "web", "app=web", 0).await;
    let status = rs_api.get("web").await.expect("rs").status;
    assert_eq!((status.replicas, status.ready_replicas), (0, 0));

    // What it did is told in events on the set.
    let events: Vec<Event> = cluster
        .api::<Event>("default")
        .list(&ListParams::fields("involvedObject.name=web"))
        .await
        .expect("events")
        .items;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&"SuccessfulCreate"), "{reasons:?}");
    assert!(reasons.contains(&"SuccessfulDelete"), "{reasons:?}");
    let created = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
        .unwrap();
    assert_eq!(created.involved_object.kind.as_deref(), Some("ReplicaSet"));
    assert_eq!(created.involved_object.uid.as_deref(), Some(uid.as_str()));
    assert!(created.count.unwrap_or(0) >= 1 && created.first_timestamp.is_some());
}

#[tokio::test]
async fn expectations_prevent_double_creates_and_deletes_on_a_lagging_cache() {
    let cluster = Cluster::start().await;
    let rs_api = cluster.api::<ReplicaSet>("default");
    let pods_api: Api<Pod> = cluster.api("default");
    let rs = rs_api
        .create(&replicaset("lag", "lag", 3))
        .await
        .expect("create");

    // Caches fed by hand: the pod cache never sees the controller's own creates until
    // the test says so.
    let (rs_store, mut rs_writer) = skiff_client::reflector::store::<ReplicaSet>();
    let (pod_store, mut pod_writer) = skiff_client::reflector::store::<Pod>();
    rs_writer.apply(&WatchEvent::Restarted(vec![rs.clone()]));
    pod_writer.apply(&WatchEvent::Restarted(vec![]));
    let controller = ReplicaSetController::with_stores(
        cluster.client.clone(),
        rs_store,
        pod_store,
        EventRecorder::new(cluster.client.clone(), "test"),
        Duration::from_secs(300),
    );
    let key = ObjectRef::new("lag").within("default");

    for _ in 0..4 {
        controller.reconcile(&key).await.expect("reconcile");
    }
    let pods = pods_api
        .list(&ListParams::labels("app=lag"))
        .await
        .expect("list")
        .items;
    assert_eq!(pods.len(), 3, "created once, not once per reconcile");
    assert_eq!(controller.expectations().pending(&key), (3, 0));

    // The cache catches up: expectations are met, and the count is right.
    for pod in &pods {
        pod_writer.apply(&WatchEvent::Applied(pod.clone()));
    }
    controller.reconcile(&key).await.expect("reconcile");
    assert_eq!(controller.expectations().pending(&key), (0, 0));
    assert_eq!(
        pods_api
            .list(&ListParams::labels("app=lag"))
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    // Scale down to 1 while the cache keeps showing all three pods.
    let scaled = rs_api
        .patch("lag", &Patch::Merge(json!({ "spec": { "replicas": 1 } })))
        .await
        .expect("scale");
    rs_writer.apply(&WatchEvent::Applied(scaled));
    for _ in 0..3 {
        controller.reconcile(&key).await.expect("reconcile");
    }
    let left = pods_api
        .list(&ListParams::labels("app=lag"))
        .await
        .unwrap()
        .items;
    assert_eq!(left.len(), 1, "deleted two, once");
    assert_eq!(controller.expectations().pending(&key), (0, 2));
}

#[tokio::test]
async fn orphans_are_adopted_and_mismatching_pods_released() {
    let cluster = Cluster::start().await;
    let pods_api: Api<Pod> = cluster.api("default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": { "name": "stray", "labels": { "app": "adopt" } },
        "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
    }))
    .unwrap();
    pods_api.create(&orphan).await.expect("orphan");
    let _controllers = cluster.start_controllers();
    let rs = cluster
        .api::<ReplicaSet>("default")
        .create(&replicaset("keeper", "adopt", 2))
        .await
        .expect("create");
    let uid = rs.metadata.uid.clone().unwrap();

    let pods = settled(&cluster, "keeper", "app=adopt", 2).await;
    assert!(
        names(&pods).contains(&"stray".to_string()),
        "the orphan counts"
    );
    let stray = pods_api.get("stray").await.unwrap();
    assert_eq!(
        stray.metadata.controller().map(|o| o.uid.as_str()),
        Some(uid.as_str()),
        "adopted"
    );

    // A pod whose labels stop matching is released and replaced.
    let other = names(&pods).into_iter().find(|n| n != "stray").unwrap();
    pods_api
        .patch(
            &other,
            &Patch::Merge(json!({ "metadata": { "labels": { "app": "elsewhere" } } })),
        )
        .await
        .expect("relabel");
    wait_for("the relabelled pod to be released", WAIT, || async {
        let pod = pods_api.get(&other).await.unwrap();
        pod.metadata.controller().is_none().then_some(())
    })
    .await;
    let pods = settled(&cluster, "keeper", "app=adopt", 2).await;
    assert!(!names(&pods).contains(&other));
    let owned = pods
        .iter()
        .filter(|p| p.metadata.controller().map(|o| o.uid.as_str()) == Some(uid.as_str()))
        .count();
    assert_eq!(owned, 2);
}

#[tokio::test]
async fn failing_creates_stop_after_the_first_slow_start_batch() {
    let cluster = Cluster::start().await;
    let namespaces: Api<skiff_api::core::Namespace> = Api::all(cluster.client.clone());
    let ns: skiff_api::core::Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "closing" } })).unwrap();
    namespaces.create(&ns).await.unwrap();
    let mut set = replicaset("burst", "burst", 10);
    set.metadata.namespace = Some("closing".into());
    let rs = cluster
        .api::<ReplicaSet>("closing")
        .create(&set)
        .await
        .unwrap();
    // A terminating namespace (no namespace controller runs here) refuses new pods.
    namespaces
        .delete("closing", &skiff_client::DeleteParams::default())
        .await
        .unwrap();

    let (rs_store, mut rs_writer) = skiff_client::reflector::store::<ReplicaSet>();
    let (pod_store, mut pod_writer) = skiff_client::reflector::store::<Pod>();
    rs_writer.apply(&WatchEvent::Restarted(vec![rs]));
    pod_writer.apply(&WatchEvent::Restarted(vec![]));
    let controller = ReplicaSetController::with_stores(
        cluster.client.clone(),
        rs_store,
        pod_store,
        EventRecorder::new(cluster.client.clone(), "test"),
        Duration::from_secs(300),
    );
    let error = controller
        .reconcile(&ObjectRef::new("burst").within("closing"))
        .await
        .expect_err("creates fail");
    let text = error.to_string();
    assert!(
        text.contains("9 skipped"),
        "one create tried, nine skipped: {text}"
    );
    let status = cluster
        .api::<ReplicaSet>("closing")
        .get("burst")
        .await
        .unwrap()
        .status;
    let failure = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .expect("a ReplicaFailure condition");
    assert_eq!(
        (failure.status.as_str(), failure.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    assert!(
        failure
            .message
            .as_deref()
            .unwrap_or("")
            .contains("terminated"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn the_event_recorder_counts_repeats() {
    let cluster = Cluster::start().await;
    let rs = cluster
        .api::<ReplicaSet>("default")
        .create(&replicaset("noisy", "noisy", 0))
        .await
        .unwrap();
    let recorder = EventRecorder::new(cluster.client.clone(), "test");
    for _ in 0..3 {
        recorder
            .warning(&rs, "FailedCreate", "quota exceeded")
            .await;
    }
    recorder
        .normal(&rs, "SuccessfulCreate", "Created pod: x")
        .await;
    let events: Vec<Event> = cluster
        .api::<Event>("default")
        .list(&ListParams::fields("involvedObject.name=noisy"))
        .await
        .unwrap()
        .items;
    assert_eq!(events.len(), 2);
    let failed = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("FailedCreate"))
        .unwrap();
    assert_eq!(failed.count, Some(3));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.source.component.as_deref(), Some("test"));
    assert_eq!(failed.involved_object.namespace.as_deref(), Some("default"));
}
