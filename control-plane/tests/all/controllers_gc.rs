//! The garbage collector and the namespace controller against a real API server.

use serde_json::json;
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_api::core::{ConfigMap, Namespace, Pod, Service};
use skiff_client::{Api, DeleteParams, ListParams, PropagationPolicy};

use crate::controllers_support::{Cluster, WAIT, active, wait_for};

fn deployment(namespace: &str, name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    }))
    .unwrap()
}

async fn count(cluster: &Cluster, namespace: &str, app: &str) -> (usize, usize) {
    let selector = format!("app={app}");
    let sets = cluster
        .api::<ReplicaSet>(namespace)
        .list(&ListParams::labels(&selector))
        .await
        .unwrap()
        .items
        .len();
    let pods = cluster.pods(namespace, &selector).await.len();
    (sets, pods)
}

async fn running(cluster: &Cluster, namespace: &str, app: &str, pods: usize) {
    wait_for(&format!("{app} to have {pods} pods"), WAIT, || async {
        let (sets, n) = count(cluster, namespace, app).await;
        let active_pods = active(cluster.pods(namespace, &format!("app={app}")).await).len();
        (sets == 1 && n == pods && active_pods == pods).then_some(())
    })
    .await;
}

fn delete_with(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..DeleteParams::default()
    }
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_replicasets_and_pods_in_the_background() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    api.create(&deployment("default", "bg", 3)).await.unwrap();
    running(&cluster, "default", "bg", 3).await;

    let outcome = api
        .delete("bg", &delete_with(PropagationPolicy::Background))
        .await
        .unwrap();
    assert!(
        outcome.is_deleted(),
        "a background delete removes the owner at once"
    );
    wait_for("the replicaset and pods to be collected", WAIT, || async {
        (count(&cluster, "default", "bg").await == (0, 0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let api = cluster.api::<Deployment>("default");
    api.create(&deployment("default", "fg", 2)).await.unwrap();
    running(&cluster, "default", "fg", 2).await;

    let outcome = api
        .delete("fg", &delete_with(PropagationPolicy::Foreground))
        .await
        .unwrap();
    assert!(
        !outcome.is_deleted(),
        "held by the foregroundDeletion finalizer"
    );
    // Sample: while the deployment exists its pods may too; once it is gone, they are.
    wait_for("the deployment to go", WAIT, || async {
        let gone = api.get_opt("fg").await.unwrap().is_none();
        let left = count(&cluster, "default", "fg").await;
        if gone {
            assert_eq!(left, (0, 0), "the owner went before its dependents");
        }
        gone.then_some(())
    })
    .await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_their_owner() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "orph", "namespace": "default", "labels": { "app": "orph" } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "orph" } },
            "template": {
                "metadata": { "labels": { "app": "orph" } },
                "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    }))
    .unwrap();
    let rs_api = cluster.api::<ReplicaSet>("default");
    rs_api.create(&rs).await.unwrap();
    running(&cluster, "default", "orph", 2).await;

    rs_api
        .delete("orph", &delete_with(PropagationPolicy::Orphan))
        .await
        .unwrap();
    wait_for("the replicaset to go", WAIT, || async {
        rs_api
            .get_opt("orph")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let pods: Vec<Pod> = cluster.pods("default", "app=orph").await;
    assert_eq!(pods.len(), 2, "the pods stay");
    assert!(pods.iter().all(|p| p.metadata.owner_references.is_empty()));
}

#[tokio::test]
async fn deleting_a_namespace_empties_and_removes_it() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": "doomed" } })).unwrap();
    namespaces.create(&ns).await.unwrap();
    cluster
        .api::<Deployment>("doomed")
        .create(&deployment("doomed", "app", 2))
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings" }, "data": { "a": "b" },
    }))
    .unwrap();
    cluster
        .api::<ConfigMap>("doomed")
        .create(&cm)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "front" },
        "spec": { "selector": { "app": "app" }, "ports": [{ "port": 80 }] },
    }))
    .unwrap();
    cluster.api::<Service>("doomed").create(&svc).await.unwrap();
    running(&cluster, "doomed", "app", 2).await;

    let outcome = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        !outcome.is_deleted(),
        "held by spec.finalizers until emptied"
    );
    let marked = namespaces.get("doomed").await.unwrap();
    assert_eq!(marked.status.phase.as_deref(), Some("Terminating"));
    wait_for("the namespace to go", WAIT, || async {
        namespaces
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Nothing of it is left behind (lists of a namespace that is gone are empty).
    assert_eq!(count(&cluster, "doomed", "app").await, (0, 0));
    let cms = cluster
        .api::<ConfigMap>("doomed")
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    assert_eq!(cms, 0);
}

#[tokio::test]
async fn dependents_of_a_deleted_job_are_collected_and_dangling_references_dropped() {
    use skiff_api::batch::Job;

    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "batch", "namespace": "default" },
        "spec": {
            "template": {
                "metadata": { "labels": { "run": "batch" } },
                "spec": { "restartPolicy": "Never",
                          "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    }))
    .unwrap();
    let jobs = cluster.api::<Job>("default");
    let job = jobs.create(&job).await.unwrap();
    let keeper: skiff_api::core::ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "keeper" } })).unwrap();
    let keeper = cluster
        .api::<skiff_api::core::ConfigMap>("default")
        .create(&keeper)
        .await
        .unwrap();
    let owner = |api_version: &str, kind: &str, name: &str, uid: &Option<String>| {
        json!({ "apiVersion": api_version, "kind": kind, "name": name,
                "uid": uid.clone().unwrap(), "controller": kind == "Job" })
    };
    let job_ref = owner("batch/v1", "Job", "batch", &job.metadata.uid);
    let pods: Api<Pod> = cluster.api("default");
    for (name, owners) in [
        ("only-job", json!([job_ref.clone()])),
        // Owned also by a ConfigMap, a kind the collector does not cover: kept.
        (
            "shared",
            json!([
                job_ref,
                owner("v1", "ConfigMap", "keeper", &keeper.metadata.uid)
            ]),
        ),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "run": "batch" }, "ownerReferences": owners },
            "spec": { "restartPolicy": "Never",
                      "containers": [{ "name": "main", "image": "hello.wasm" }] },
        }))
        .unwrap();
        pods.create(&pod).await.unwrap();
    }

    jobs.delete("batch", &DeleteParams::default())
        .await
        .unwrap();
    let left = wait_for("the job's own pod to go", WAIT, || async {
        let pods = cluster.pods("default", "run=batch").await;
        let shared_cleaned = pods
            .iter()
            .any(|p| p.metadata.name() == "shared" && p.metadata.owner_references.len() == 1);
        (pods.len() == 1 && shared_cleaned).then_some(pods)
    })
    .await;
    assert_eq!(left[0].metadata.owner_references[0].kind, "ConfigMap");
}
