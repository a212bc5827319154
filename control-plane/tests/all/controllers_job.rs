//! The Job controller against a real API server; the test plays the node by writing
//! the phase of the Job's pods.

use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::batch::Job;
use skiff_api::core::{Event, Pod};
use skiff_client::watcher::Event as WatchEvent;
use skiff_client::{Api, ListParams, ObjectRef, Patch};
use skiff_control_plane::controllers::EventRecorder;
use skiff_control_plane::controllers::job::JobController;

use crate::controllers_support::{Cluster, WAIT, active, names, wait_for};

/// A Job named `name` whose pods run `restart_policy`, with `spec` merged in.
fn job(name: &str, restart_policy: &str, spec: Value) -> Job {
    let mut value = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "restartPolicy": restart_policy,
                    "containers": [{ "name": "main", "image": "work.wasm" }],
                },
            },
        },
    });
    for (field, v) in spec.as_object().expect("an object") {
        value["spec"][field] = v.clone();
    }
    serde_json::from_value(value).expect("job")
}

fn selector(name: &str) -> String {
    format!("batch.kubernetes.io/job-name={name}")
}

/// Plays the node: the pod ran and ended in `phase` (`Running`, `Succeeded`, `Failed`).
async fn set_phase(cluster: &Cluster, pod: &str, phase: &str) {
    cluster
        .api::<Pod>("default")
        .patch_status(pod, &Patch::Merge(json!({ "status": { "phase": phase } })))
        .await
        .expect("patch pod status");
}

/// Waits until the Job satisfies `check`, returning it.
async fn wait_job(cluster: &Cluster, name: &str, what: &str, check: impl Fn(&Job) -> bool) -> Job {
    let jobs = cluster.api::<Job>("default");
    wait_for(&format!("job {name} {what}"), WAIT, || async {
        let job = jobs.get(name).await.expect("job");
        check(&job).then_some(job)
    })
    .await
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a skiff_api::batch::JobCondition> {
    job.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn reasons(cluster: &Cluster, name: &str) -> Vec<String> {
    cluster
        .api::<Event>("default")
        .list(&ListParams::fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn a_job_runs_its_completions_never_more_than_parallelism_at_once() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let created = cluster
        .api::<Job>("default")
        .create(&job(
            "work",
            "Never",
            json!({ "completions": 20, "parallelism": 5 }),
        ))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");

    // The node finishes one, two or three of the running pods at a time; after each,
    // the controller tops up to five, and never to more than the completions left.
    let mut finished = 0;
    let mut most_active = 0;
    while finished < 20 {
        let left = 20 - finished;
        let running = wait_for(&format!("{} active pods", left.min(5)), WAIT, || async {
            let pods = active(cluster.pods("default", &selector("work")).await);
            assert!(pods.len() <= 5, "{} pods active at once", pods.len());
            assert!(
                pods.len() <= left,
                "{} pods active for {left} completions",
                pods.len()
            );
            (pods.len() == left.min(5)).then_some(pods)
        })
        .await;
        most_active = most_active.max(running.len());
        let batch = 1 + finished % 3;
        for pod in running.iter().take(batch) {
            set_phase(&cluster, pod.metadata.name(), "Succeeded").await;
            finished += 1;
        }
        // The Job's status catches up before the next round.
        wait_job(&cluster, "work", &format!("counting {finished}"), |j| {
            j.status.succeeded == finished as i32
        })
        .await;
    }
    assert_eq!(most_active, 5);

    let done = wait_job(&cluster, "work", "Complete", |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(
        (
            done.status.succeeded,
            done.status.failed,
            done.status.active
        ),
        (20, 0, 0)
    );
    assert!(done.status.start_time.is_some() && done.status.completion_time.is_some());
    assert!(
        condition(&done, "SuccessCriteriaMet").is_some(),
        "{:?}",
        done.status
    );
    assert!(done.is_finished());

    // Exactly one pod per completion, each the Job's, kept once finished.
    let pods = cluster.pods("default", &selector("work")).await;
    assert_eq!(pods.len(), 20, "{:?}", names(&pods));
    for pod in &pods {
        assert_eq!(pod.status.phase.as_deref(), Some("Succeeded"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("work-"));
        let owner = pod.metadata.controller().expect("a controller reference");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Job", "work", uid.as_str())
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        let labels = &pod.metadata.labels;
        for (label, value) in [
            ("batch.kubernetes.io/controller-uid", uid.as_str()),
            ("controller-uid", uid.as_str()),
            ("batch.kubernetes.io/job-name", "work"),
            ("job-name", "work"),
            ("app", "work"),
        ] {
            assert_eq!(
                labels.get(label).map(String::as_str),
                Some(value),
                "{label}"
            );
        }
        assert_eq!(pod.spec.restart_policy.as_deref(), Some("Never"));
    }
    let reasons = reasons(&cluster, "work").await;
    assert!(reasons.contains(&"SuccessfulCreate".into()), "{reasons:?}");
    assert!(reasons.contains(&"Completed".into()), "{reasons:?}");
}

#[tokio::test]
async fn failures_beyond_the_backoff_limit_fail_the_job_and_stop_its_pods() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Job>("default")
        .create(&job(
            "flaky",
            "Never",
            json!({ "completions": 10, "parallelism": 3, "backoffLimit": 2 }),
        ))
        .await
        .expect("create");

    // Two failures are within the limit: each failed pod is replaced and kept.
    for failures in 1..=2 {
        let pods = wait_for("3 active pods", WAIT, || async {
            let pods = active(cluster.pods("default", &selector("flaky")).await);
            (pods.len() == 3).then_some(pods)
        })
        .await;
        set_phase(&cluster, pods[0].metadata.name(), "Failed").await;
        let job = wait_job(&cluster, "flaky", "counting the failure", |j| {
            j.status.failed == failures
        })
        .await;
        assert!(!job.is_finished(), "{:?}", job.status);
    }
    let pods = wait_for("3 active pods", WAIT, || async {
        let pods = active(cluster.pods("default", &selector("flaky")).await);
        (pods.len() == 3).then_some(pods)
    })
    .await;
    // The third is one too many.
    set_phase(&cluster, pods[0].metadata.name(), "Failed").await;
    let failed = wait_job(&cluster, "flaky", "Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    let condition = condition(&failed, "Failed").unwrap();
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(
        failed
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "FailureTarget" && c.status == "True")
    );
    assert_eq!(
        (
            failed.status.failed,
            failed.status.active,
            failed.status.succeeded
        ),
        (5, 0, 0),
        "three failed pods, and the two running ones stopped count as failed"
    );
    assert!(failed.status.completion_time.is_none());

    // The running pods are deleted; the failed ones are kept; no pod is started again.
    wait_for("the active pods to be deleted", WAIT, || async {
        active(cluster.pods("default", &selector("flaky")).await)
            .is_empty()
            .then_some(())
    })
    .await;
    let pods = cluster.pods("default", &selector("flaky")).await;
    assert_eq!(names(&pods).len(), 3, "{:?}", names(&pods));
    assert!(
        pods.iter()
            .all(|p| p.status.phase.as_deref() == Some("Failed"))
    );
    let reasons = reasons(&cluster, "flaky").await;
    assert!(
        reasons.contains(&"BackoffLimitExceeded".into()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"SuccessfulDelete".into()), "{reasons:?}");
}

#[tokio::test]
async fn container_restarts_count_against_the_backoff_limit_under_on_failure() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Job>("default")
        .create(&job("retry", "OnFailure", json!({ "backoffLimit": 2 })))
        .await
        .expect("create");
    let pod = wait_for("the pod", WAIT, || async {
        active(cluster.pods("default", &selector("retry")).await).pop()
    })
    .await;
    // The node restarted its container in place, once: within the limit.
    let restarted = |count: i32| {
        Patch::Merge(
            json!({ "status": { "phase": "Running", "containerStatuses": [
            { "name": "main", "restartCount": count, "ready": false, "image": "work.wasm" },
        ] } }),
        )
    };
    let pods_api = cluster.api::<Pod>("default");
    pods_api
        .patch_status(pod.metadata.name(), &restarted(1))
        .await
        .unwrap();
    wait_job(&cluster, "retry", "seeing the pod run", |j| {
        j.status.active == 1
    })
    .await;
    assert!(
        pods_api
            .get(pod.metadata.name())
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    pods_api
        .patch_status(pod.metadata.name(), &restarted(2))
        .await
        .unwrap();
    let failed = wait_job(&cluster, "retry", "Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").unwrap().reason.as_deref(),
        Some("BackoffLimitExceeded")
    );
    wait_for("the restarting pod to be deleted", WAIT, || async {
        active(cluster.pods("default", &selector("retry")).await)
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_past_its_active_deadline_fails() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Job>("default")
        .create(&job(
            "slow",
            "Never",
            json!({ "activeDeadlineSeconds": 1, "parallelism": 2, "completions": 4 }),
        ))
        .await
        .expect("create");
    // Its 2 pods, unless a loaded machine let the deadline pass first (then the Job
    // failed with them already).
    let jobs = cluster.api::<Job>("default");
    let pods = wait_for("2 pods or the job failed", WAIT, || async {
        let pods = active(cluster.pods("default", &selector("slow")).await);
        let job = jobs.get("slow").await.expect("job");
        (pods.len() == 2 || condition(&job, "Failed").is_some()).then_some(pods)
    })
    .await;
    for pod in &pods {
        // A pod the deadline already deleted is not an error here.
        let _ = cluster
            .api::<Pod>("default")
            .patch_status(
                pod.metadata.name(),
                &Patch::Merge(json!({ "status": { "phase": "Running" } })),
            )
            .await;
    }
    // Nothing changes in the pods: the deadline alone wakes the controller.
    let failed = wait_job(&cluster, "slow", "Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    let condition = condition(&failed, "Failed").unwrap();
    assert_eq!(condition.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        condition.message.as_deref(),
        Some("Job was active longer than specified deadline")
    );
    assert_eq!((failed.status.active, failed.status.failed), (0, 2));
    wait_for("the running pods to be deleted", WAIT, || async {
        cluster
            .pods("default", &selector("slow"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let reasons = reasons(&cluster, "slow").await;
    assert!(reasons.contains(&"DeadlineExceeded".into()), "{reasons:?}");
}

#[tokio::test]
async fn a_finished_job_is_deleted_with_its_pods_after_its_ttl() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let jobs = cluster.api::<Job>("default");
    jobs.create(&job(
        "brief",
        "Never",
        json!({ "ttlSecondsAfterFinished": 1 }),
    ))
    .await
    .expect("create");
    let pod = wait_for("the pod", WAIT, || async {
        active(cluster.pods("default", &selector("brief")).await).pop()
    })
    .await;
    set_phase(&cluster, pod.metadata.name(), "Succeeded").await;
    let done = wait_job(&cluster, "brief", "Complete", |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(done.status.succeeded, 1);
    wait_for("the job to be deleted", WAIT, || async {
        jobs.get_opt("brief")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    wait_for("its pod to be collected", WAIT, || async {
        cluster
            .pods("default", &selector("brief"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_suspended_job_stops_its_pods_and_starts_again_when_resumed() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    let jobs = cluster.api::<Job>("default");
    jobs.create(&job(
        "paused",
        "Never",
        json!({ "completions": 3, "parallelism": 2 }),
    ))
    .await
    .expect("create");
    wait_for("2 pods", WAIT, || async {
        let pods = active(cluster.pods("default", &selector("paused")).await);
        (pods.len() == 2).then_some(())
    })
    .await;
    let suspend = |on: bool| Patch::Merge(json!({ "spec": { "suspend": on } }));
    jobs.patch("paused", &suspend(true)).await.expect("suspend");
    let suspended = wait_job(&cluster, "paused", "Suspended", |j| {
        condition(j, "Suspended").is_some() && j.status.active == 0
    })
    .await;
    assert!(!suspended.is_finished());
    wait_for("the pods to be deleted", WAIT, || async {
        active(cluster.pods("default", &selector("paused")).await)
            .is_empty()
            .then_some(())
    })
    .await;

    jobs.patch("paused", &suspend(false)).await.expect("resume");
    let resumed = wait_job(&cluster, "paused", "resumed", |j| {
        j.status.active == 2
            && j.status
                .conditions
                .iter()
                .any(|c| c.type_ == "Suspended" && c.status == "False")
    })
    .await;
    assert_eq!(resumed.status.failed, 0, "stopped pods are not failures");
    let reasons = reasons(&cluster, "paused").await;
    assert!(reasons.contains(&"Suspended".into()), "{reasons:?}");
    assert!(reasons.contains(&"Resumed".into()), "{reasons:?}");
}

#[tokio::test]
async fn an_indexed_job_is_refused_with_a_reason() {
    let cluster = Cluster::start().await;
    let _controllers = cluster.start_controllers();
    cluster
        .api::<Job>("default")
        .create(&job(
            "indexed",
            "Never",
            json!({ "completions": 3, "completionMode": "Indexed" }),
        ))
        .await
        .expect("create");
    let failed = wait_job(&cluster, "indexed", "Failed", |j| {
        condition(j, "Failed").is_some()
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").unwrap().reason.as_deref(),
        Some("UnsupportedCompletionMode")
    );
    assert!(
        cluster
            .pods("default", &selector("indexed"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn expectations_prevent_double_creates_on_a_lagging_cache() {
    let cluster = Cluster::start().await;
    let pods_api: Api<Pod> = cluster.api("default");
    let created = cluster
        .api::<Job>("default")
        .create(&job(
            "lag",
            "Never",
            json!({ "completions": 10, "parallelism": 4 }),
        ))
        .await
        .expect("create");

    // Caches fed by hand: the pod cache does not see the controller's own creates
    // until the test says so.
    let (job_store, mut job_writer) = skiff_client::reflector::store::<Job>();
    let (pod_store, mut pod_writer) = skiff_client::reflector::store::<Pod>();
    job_writer.apply(&WatchEvent::Restarted(vec![created]));
    pod_writer.apply(&WatchEvent::Restarted(vec![]));
    let controller = JobController::with_stores(
        cluster.client.clone(),
        job_store,
        pod_store,
        EventRecorder::new(cluster.client.clone(), "test"),
        Duration::from_secs(300),
    );
    let key = ObjectRef::new("lag").within("default");
    let list = || async {
        pods_api
            .list(&ListParams::labels(&selector("lag")))
            .await
            .expect("list")
            .items
    };

    for _ in 0..4 {
        controller.reconcile(&key).await.expect("reconcile");
    }
    let pods = list().await;
    assert_eq!(pods.len(), 4, "created once, not once per reconcile");
    assert_eq!(controller.expectations().pending(&key), (4, 0));

    // The cache catches up, with two of them succeeded: two more are created, once.
    for (i, pod) in pods.iter().enumerate() {
        let mut pod = pod.clone();
        if i < 2 {
            pod.status.phase = Some("Succeeded".into());
        }
        pod_writer.apply(&WatchEvent::Applied(pod));
    }
    for _ in 0..3 {
        controller.reconcile(&key).await.expect("reconcile");
    }
    assert_eq!(list().await.len(), 6);
    assert_eq!(controller.expectations().pending(&key), (2, 0));
}

#[tokio::test]
async fn a_job_with_its_own_selector_adopts_matching_orphans_and_counts_them() {
    let cluster = Cluster::start().await;
    let pods_api: Api<Pod> = cluster.api("default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": { "name": "stray", "labels": { "app": "adopter" } },
        "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "work.wasm" }] },
    }))
    .unwrap();
    pods_api.create(&orphan).await.expect("orphan");
    let _controllers = cluster.start_controllers();
    let created = cluster
        .api::<Job>("default")
        .create(&job(
            "adopter",
            "Never",
            json!({
                "completions": 2, "parallelism": 2, "manualSelector": true,
                "selector": { "matchLabels": { "app": "adopter" } },
            }),
        ))
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().unwrap();

    let pods = wait_for("the orphan and one new pod", WAIT, || async {
        let pods = active(cluster.pods("default", "app=adopter").await);
        (pods.len() == 2).then_some(pods)
    })
    .await;
    assert!(
        names(&pods).contains(&"stray".to_string()),
        "{:?}",
        names(&pods)
    );
    let stray = pods_api.get("stray").await.unwrap();
    assert_eq!(
        stray.metadata.controller().map(|o| o.uid.as_str()),
        Some(uid.as_str()),
        "adopted"
    );
    for pod in &pods {
        set_phase(&cluster, pod.metadata.name(), "Succeeded").await;
    }
    let done = wait_job(&cluster, "adopter", "Complete", |j| {
        condition(j, "Complete").is_some()
    })
    .await;
    assert_eq!(done.status.succeeded, 2);
    assert_eq!(cluster.pods("default", "app=adopter").await.len(), 2);
}
