//! The Deployment controller (with the ReplicaSet controller under it) against a real
//! API server; the test plays the node by making pods ready.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_api::core::Pod;
use skiff_client::{Api, ListParams, Patch};
use skiff_control_plane::controllers::deployment::{
    POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, revision,
};
use skiff_control_plane::controllers::rollback_template;

use crate::controllers_support::{Cluster, WAIT, active, wait_for};

fn deployment(name: &str, replicas: i32, image: &str, extra: Value) -> Deployment {
    let mut value = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": image }] },
            },
        },
    });
    merge(&mut value["spec"], extra);
    serde_json::from_value(value).expect("deployment")
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        for (k, v) in e {
            t.insert(k, v);
        }
    }
}

async fn set_image(cluster: &Cluster, name: &str, image: &str) {
    cluster
        .api::<Deployment>("default")
        .patch(
            name,
            &Patch::Merge(json!({ "spec": { "template": { "spec": {
                "containers": [{ "name": "main", "image": image }] } } } })),
        )
        .await
        .expect("set image");
}

async fn replicasets(cluster: &Cluster, app: &str) -> Vec<ReplicaSet> {
    cluster
        .api::<ReplicaSet>("default")
        .list(&ListParams::labels(&format!("app={app}")))
        .await
        .expect("list replicasets")
        .items
}

static NEXT_IP: AtomicU32 = AtomicU32::new(1);

/// Plays the node once: makes up to `limit` active pods that are not ready ready.
async fn make_ready(cluster: &Cluster, app: &str, limit: usize) -> usize {
    let pods = active(cluster.pods("default", &format!("app={app}")).await);
    let mut done = 0;
    for pod in pods.iter().filter(|p| !p.is_ready()).take(limit) {
        let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
        let ip = format!("10.1.{}.{}", n / 250, n % 250 + 1);
        cluster
            .set_pod_state("default", pod.metadata.name(), &ip, true)
            .await;
        done += 1;
    }
    done
}

/// Waits, playing the node, until the deployment has rolled out completely.
async fn rolled_out(cluster: &Cluster, name: &str) -> Deployment {
    let api = cluster.api::<Deployment>("default");
    wait_for(&format!("deployment {name} to roll out"), WAIT, || async {
        make_ready(cluster, name, usize::MAX).await;
        let d = api.get(name).await.expect("deployment");
        let r = d.spec.replicas.unwrap_or(1);
        let s = &d.status;
        let done = s.observed_generation == d.metadata.generation.unwrap_or(0)
            && s.updated_replicas == r
            && s.replicas == r
            && s.available_replicas == r
            && d.condition("Progressing").and_then(|c| c.reason.as_deref())
                == Some("NewReplicaSetAvailable");
        done.then_some(d)
    })
    .await
}

fn pod_hash(pod: &Pod) -> String {
    pod.metadata
        .labels
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_deployment_creates_its_replicaset_and_pods() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Deployment>("default")
        .create(&deployment("web", 3, "v1.wasm", json!({})))
        .await
        .expect("create");

    let d = rolled_out(&cluster, "web").await;
    assert_eq!(
        d.metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("1")
    );
    let available = d.condition("Available").expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let sets = replicasets(&cluster, "web").await;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs
        .metadata
        .labels
        .get(POD_TEMPLATE_HASH_LABEL)
        .expect("hash label");
    assert_eq!(rs.metadata.name(), format!("web-{hash}"));
    assert_eq!(
        rs.spec
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .get(POD_TEMPLATE_HASH_LABEL),
        Some(hash)
    );
    assert_eq!(
        rs.spec
            .template
            .metadata
            .labels
            .get(POD_TEMPLATE_HASH_LABEL),
        Some(hash)
    );
    assert_eq!(revision(rs), 1);
    let owner = rs.metadata.controller().expect("owned");
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", d.metadata.uid.as_deref().unwrap())
    );
    let pods = active(cluster.pods("default", "app=web").await);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| &pod_hash(p) == hash));
    let events: Vec<skiff_api::core::Event> = cluster
        .api::<skiff_api::core::Event>("default")
        .list(&ListParams::fields("involvedObject.kind=Deployment"))
        .await
        .unwrap()
        .items;
    let scaling = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
        .expect("a ScalingReplicaSet event");
    assert_eq!(
        scaling.message.as_deref(),
        Some(format!("Scaled up replica set web-{hash} to 3").as_str())
    );
    let status = &d.status;
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.unavailable_replicas
        ),
        (3, 3, 3, 0)
    );
}

#[tokio::test]
async fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let strategy = json!({ "strategy": { "type": "RollingUpdate",
        "rollingUpdate": { "maxSurge": 1, "maxUnavailable": "25%" } } });
    cluster
        .api::<Deployment>("default")
        .create(&deployment("roll", 4, "v1.wasm", strategy))
        .await
        .expect("create");
    rolled_out(&cluster, "roll").await;
    let old_hash = pod_hash(&active(cluster.pods("default", "app=roll").await)[0]);

    set_image(&cluster, "roll", "v2.wasm").await;
    // maxSurge 1 → at most 5 pods; maxUnavailable 25% of 4 = 1 → at least 3 ready.
    let api = cluster.api::<Deployment>("default");
    let mut samples = 0;
    let mut saw_both = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pods = active(cluster.pods("default", "app=roll").await);
        let ready = pods.iter().filter(|p| p.is_ready()).count();
        assert!(
            pods.len() <= 5,
            "{} pods, more than replicas + maxSurge",
            pods.len()
        );
        assert!(
            ready >= 3,
            "{ready} ready, fewer than replicas - maxUnavailable"
        );
        saw_both |= pods.iter().any(|p| pod_hash(p) == old_hash)
            && pods.iter().any(|p| pod_hash(p) != old_hash);
        samples += 1;
        let d = api.get("roll").await.unwrap();
        if d.status.observed_generation == d.metadata.generation.unwrap_or(0)
            && d.status.updated_replicas == 4
            && d.status.replicas == 4
            && d.status.available_replicas == 4
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish: {:?}",
            d.status
        );
        // The node is slow: one pod becomes ready per round.
        make_ready(&cluster, "roll", 1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        saw_both,
        "old and new pods ran side by side ({samples} samples)"
    );
    let d = rolled_out(&cluster, "roll").await;
    assert_eq!(
        d.metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("2")
    );
    let pods = active(cluster.pods("default", "app=roll").await);
    assert!(pods.iter().all(|p| pod_hash(p) != old_hash));
    let sets = replicasets(&cluster, "roll").await;
    assert_eq!(sets.len(), 2, "the old set stays as history");
    let old = sets
        .iter()
        .find(|rs| revision(rs) == 1)
        .expect("revision 1");
    assert_eq!(old.spec.replicas, Some(0));
}

#[tokio::test]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Deployment>("default")
        .create(&deployment(
            "re",
            3,
            "v1.wasm",
            json!({ "strategy": { "type": "Recreate" } }),
        ))
        .await
        .expect("create");
    rolled_out(&cluster, "re").await;
    let old_hash = pod_hash(&active(cluster.pods("default", "app=re").await)[0]);
    set_image(&cluster, "re", "v2.wasm").await;
    let api = cluster.api::<Deployment>("default");
    wait_for("the recreate to finish", WAIT, || async {
        let pods = cluster.pods("default", "app=re").await;
        let old = pods.iter().filter(|p| pod_hash(p) == old_hash).count();
        let new = pods.len() - old;
        assert!(old == 0 || new == 0, "{old} old and {new} new pods at once");
        make_ready(&cluster, "re", usize::MAX).await;
        let d = api.get("re").await.unwrap();
        (new == 3 && d.status.updated_replicas == 3 && d.status.available_replicas == 3)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn pause_stops_a_rollout_but_not_scaling() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    api.create(&deployment("paused", 2, "v1.wasm", json!({})))
        .await
        .expect("create");
    rolled_out(&cluster, "paused").await;
    api.patch(
        "paused",
        &Patch::Merge(json!({ "spec": { "paused": true } })),
    )
    .await
    .unwrap();
    set_image(&cluster, "paused", "v2.wasm").await;
    api.patch(
        "paused",
        &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
    )
    .await
    .unwrap();
    wait_for("the paused deployment to scale to 3", WAIT, || async {
        make_ready(&cluster, "paused", usize::MAX).await;
        let d = api.get("paused").await.unwrap();
        let paused = d.condition("Progressing").and_then(|c| c.reason.as_deref())
            == Some("DeploymentPaused");
        (paused
            && d.status.observed_generation == d.metadata.generation.unwrap_or(0)
            && d.status.available_replicas == 3)
            .then_some(())
    })
    .await;
    assert_eq!(
        replicasets(&cluster, "paused").await.len(),
        1,
        "no rollout while paused"
    );
    let pods = active(cluster.pods("default", "app=paused").await);
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.spec.containers[0].image.as_deref() == Some("v1.wasm"))
    );

    api.patch(
        "paused",
        &Patch::Merge(json!({ "spec": { "paused": false } })),
    )
    .await
    .unwrap();
    rolled_out(&cluster, "paused").await;
    let pods = active(cluster.pods("default", "app=paused").await);
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.spec.containers[0].image.as_deref() == Some("v2.wasm"))
    );
}

#[tokio::test]
async fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    api.create(&deployment(
        "stuck",
        2,
        "v1.wasm",
        json!({ "progressDeadlineSeconds": 2 }),
    ))
    .await
    .expect("create");
    let condition = wait_for("ProgressDeadlineExceeded", WAIT, || async {
        let d = api.get("stuck").await.unwrap();
        d.condition("Progressing")
            .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .cloned()
    })
    .await;
    assert_eq!(condition.status, "False");
    let d = api.get("stuck").await.unwrap();
    assert_eq!(d.condition("Available").unwrap().status, "False");
    assert_eq!(d.status.unavailable_replicas, 2);
}

#[tokio::test]
async fn rollback_reuses_the_old_replicaset_as_the_newest_revision() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    api.create(&deployment("undo", 2, "v1.wasm", json!({})))
        .await
        .expect("create");
    rolled_out(&cluster, "undo").await;
    set_image(&cluster, "undo", "v2.wasm").await;
    let d = rolled_out(&cluster, "undo").await;
    let sets = replicasets(&cluster, "undo").await;
    assert_eq!(sets.len(), 2);

    let template = rollback_template(&d, &sets, None).expect("a previous revision");
    assert_eq!(
        template.spec.containers[0].image.as_deref(),
        Some("v1.wasm")
    );
    let v2 = rollback_template(&d, &sets, Some(2)).expect("revision 2");
    assert_eq!(v2.spec.containers[0].image.as_deref(), Some("v2.wasm"));
    assert!(rollback_template(&d, &sets, Some(9)).is_err());

    let mut undone = d.clone();
    undone.spec.template = template;
    api.replace("undo", &undone).await.expect("roll back");
    let d = rolled_out(&cluster, "undo").await;
    assert_eq!(
        d.metadata
            .annotations
            .get(REVISION_ANNOTATION)
            .map(String::as_str),
        Some("3")
    );
    let sets = replicasets(&cluster, "undo").await;
    assert_eq!(sets.len(), 2, "the v1 set is reused, not duplicated");
    let v1 = sets
        .iter()
        .find(|rs| rs.spec.template.spec.containers[0].image.as_deref() == Some("v1.wasm"))
        .unwrap();
    assert_eq!(revision(v1), 3);
    assert_eq!(v1.spec.replicas, Some(2));
}

#[tokio::test]
async fn old_replicasets_beyond_the_history_limit_are_deleted() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api: Api<Deployment> = cluster.api("default");
    api.create(&deployment(
        "hist",
        1,
        "v1.wasm",
        json!({ "revisionHistoryLimit": 1 }),
    ))
    .await
    .expect("create");
    rolled_out(&cluster, "hist").await;
    for image in ["v2.wasm", "v3.wasm", "v4.wasm"] {
        set_image(&cluster, "hist", image).await;
        rolled_out(&cluster, "hist").await;
    }
    let sets = wait_for("history trimmed to one old set", WAIT, || async {
        let sets = replicasets(&cluster, "hist").await;
        (sets.len() == 2).then_some(sets)
    })
    .await;
    let mut revisions: Vec<i64> = sets.iter().map(revision).collect();
    revisions.sort();
    assert_eq!(revisions, [3, 4]);
}

/// Each revision keeps the change-cause (and the other annotations) its Deployment had
/// when it was made, as `rollout history` shows them; the Deployment's own bookkeeping
/// annotations stay its own.
#[tokio::test]
async fn replicasets_carry_the_deployments_annotations_of_their_revision() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    let mut d = deployment("causes", 1, "v1.wasm", json!({}));
    d.metadata.annotations = [
        (
            "kubernetes.io/change-cause".to_string(),
            "first".to_string(),
        ),
        (
            "kubectl.kubernetes.io/last-applied-configuration".to_string(),
            "{}".to_string(),
        ),
    ]
    .into();
    api.create(&d).await.expect("create");
    rolled_out(&cluster, "causes").await;
    api.patch(
        "causes",
        &Patch::Merge(json!({
            "metadata": { "annotations": { "kubernetes.io/change-cause": "second" } },
            "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": "v2.wasm" }] } } },
        })),
    )
    .await
    .expect("a second revision");
    rolled_out(&cluster, "causes").await;
    let sets = replicasets(&cluster, "causes").await;
    let cause_of = |image: &str| {
        let set = sets
            .iter()
            .find(|rs| rs.spec.template.spec.containers[0].image.as_deref() == Some(image))
            .unwrap_or_else(|| panic!("the set of {image}"));
        assert!(
            !set.metadata
                .annotations
                .contains_key("kubectl.kubernetes.io/last-applied-configuration"),
            "{set:?}"
        );
        set.metadata
            .annotations
            .get("kubernetes.io/change-cause")
            .cloned()
    };
    assert_eq!(cause_of("v1.wasm").as_deref(), Some("first"));
    assert_eq!(cause_of("v2.wasm").as_deref(), Some("second"));
}
