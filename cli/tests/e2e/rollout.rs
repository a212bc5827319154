//! Deployments rolled out on real processes: scaling up and down, a rolling update
//! within its surge and unavailability bounds, a crashing version that stalls and is
//! undone, pause/resume/restart, and a controller manager killed mid-rollout whose
//! standby finishes the job.

use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, wait_for};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/skiff-controller-manager";

/// Runs the CLI against the server.
fn skiff(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the CLI, fails the test if it fails, and returns its standard output.
fn skiff_ok(server: &Server, args: &[&str]) -> String {
    let out = skiff(server, args);
    assert!(
        out.status.success(),
        "skiff {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the CLI, fails the test if it succeeds, and returns its standard error.
fn skiff_fails(server: &Server, args: &[&str]) -> String {
    let out = skiff(server, args);
    assert!(
        !out.status.success(),
        "skiff {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A second copy of the ticker under another name: a new image with the same behaviour.
fn ticker_v2(dir: &std::path::Path) -> String {
    let path = dir.join("ticker-v2.wasm");
    std::fs::copy(skiff_samples::TICKER, &path).unwrap();
    format!("file:{}", path.display())
}

fn ticker() -> String {
    format!("file:{}", skiff_samples::TICKER)
}

/// Creates Deployment `name` (label `app=NAME`) of idle tickers with `spec` merged in.
fn create_deployment(server: &Server, name: &str, replicas: i32, spec: Value) {
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "main", "image": ticker(),
                    "env": [{ "name": "TICK_MS", "value": "3600000" }],
                }] },
            },
        },
    });
    for (key, value) in spec.as_object().unwrap() {
        deployment["spec"][key] = value.clone();
    }
    let (status, answer) = server.send(Method::POST, DEPLOYMENTS, Some(deployment));
    assert_eq!(status, 201, "{answer}");
}

/// What the tests need to know of one pod.
#[derive(Debug)]
struct PodView {
    image: String,
    ready: bool,
    running: bool,
    terminating: bool,
    annotations: Value,
}

fn pod_views(list: &Value) -> Vec<PodView> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PodView {
            image: p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ready: p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }),
            running: p["status"]["phase"] == "Running",
            terminating: p["metadata"]["deletionTimestamp"].is_string(),
            annotations: p["metadata"]["annotations"].clone(),
        })
        .collect()
}

fn pods_path(app: &str) -> String {
    format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{app}")
}

/// Every pod of the deployment `app`, terminating ones included.
fn pods(server: &Server, app: &str) -> Vec<PodView> {
    pod_views(&server.get(&pods_path(app)))
}

/// Whether exactly `replicas` pods of `app` exist, all of `image`, ready and none
/// terminating.
fn settled_on(server: &Server, app: &str, replicas: usize, image: &str) -> bool {
    let pods = pods(server, app);
    pods.len() == replicas
        && pods
            .iter()
            .all(|p| p.image == image && p.ready && !p.terminating)
}

/// What a sampler saw of a deployment's pods over time.
#[derive(Debug, Default)]
struct Samples {
    /// Pod lists read.
    count: usize,
    /// The most pods not terminating at once.
    max_pods: usize,
    /// The fewest ready pods not terminating at once.
    min_ready: usize,
    /// Lists with pods of both the old and the new image: the rollout was seen midway.
    mixed: usize,
}

/// Lists the pods of `app` every 25 ms on a thread of its own until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Samples>,
}

impl Sampler {
    fn start(server: &Server, app: &str, old_image: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{}{}", server.url, pods_path(app));
        let (token, old_image, client) =
            (server.token.clone(), old_image.to_string(), server.client());
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = Samples {
                    min_ready: usize::MAX,
                    ..Samples::default()
                };
                while !stop.load(Ordering::Relaxed) {
                    let list: Value = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .and_then(|r| r.json())
                        .expect("listing pods");
                    let live: Vec<PodView> = pod_views(&list)
                        .into_iter()
                        .filter(|p| !p.terminating)
                        .collect();
                    samples.count += 1;
                    samples.max_pods = samples.max_pods.max(live.len());
                    samples.min_ready = samples
                        .min_ready
                        .min(live.iter().filter(|p| p.ready).count());
                    let old = live.iter().filter(|p| p.image == old_image).count();
                    if old > 0 && old < live.len() {
                        samples.mixed += 1;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                samples
            })
        };
        Sampler { stop, thread }
    }

    fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler panicked")
    }
}

/// The revision numbers `skiff rollout history` lists.
fn history_revisions(server: &Server, name: &str) -> Vec<String> {
    skiff_ok(server, &["rollout", "history", &format!("deploy/{name}")])
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Scenario: scale 1 → 50 → 0.
#[test]
fn a_deployment_scales_from_one_to_fifty_and_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    create_deployment(&server, "many", 1, json!({}));
    let running = |server: &Server| {
        pods(server, "many")
            .iter()
            .filter(|p| p.running && !p.terminating)
            .count()
    };
    wait_for("one replica Running", Duration::from_secs(30), || {
        running(&server) == 1
    });

    let out = skiff_ok(&server, &["scale", "deploy/many", "--replicas", "50"]);
    assert!(out.contains("scaled to 50"), "{out}");
    wait_for("50 replicas Running", Duration::from_secs(60), || {
        running(&server) == 50
    });
    assert_eq!(
        pods(&server, "many").len(),
        50,
        "no pod beyond the 50 asked for"
    );

    skiff_ok(&server, &["scale", "deploy/many", "--replicas", "0"]);
    wait_for("no pod left", Duration::from_secs(60), || {
        pods(&server, "many").is_empty()
    });
    let deployment = server.get(&format!("{DEPLOYMENTS}/many"));
    assert_eq!(deployment["spec"]["replicas"], 0);
}

/// Scenario: a rolling update of 20 replicas keeps at least `replicas - maxUnavailable`
/// pods ready and at most `replicas + maxSurge` pods, and finishes.
#[test]
fn a_rolling_update_stays_within_its_surge_and_unavailability() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let v2 = ticker_v2(dir.path());
    create_deployment(
        &server,
        "roll",
        20,
        json!({ "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } } }),
    );
    wait_for("20 ready replicas", Duration::from_secs(60), || {
        settled_on(&server, "roll", 20, &ticker())
    });

    let sampler = Sampler::start(&server, "roll", &ticker());
    let out = skiff_ok(
        &server,
        &["set", "image", "deploy/roll", &format!("main={v2}")],
    );
    assert!(out.contains("deployment.apps/roll image updated"), "{out}");
    let out = skiff_ok(
        &server,
        &["rollout", "status", "deploy/roll", "--timeout", "80s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(
        "20 ready replicas of the new image and no old one",
        Duration::from_secs(30),
        || settled_on(&server, "roll", 20, &v2),
    );
    let samples = sampler.finish();

    // 25% of 20: 5 pods of surge (rounded up), 5 unavailable (rounded down).
    assert!(
        samples.mixed > 0,
        "the sampler never saw the rollout midway: {samples:?}"
    );
    assert!(
        samples.max_pods <= 25,
        "more than replicas + maxSurge pods: {samples:?}"
    );
    assert!(
        samples.min_ready >= 15,
        "fewer than replicas - maxUnavailable ready pods: {samples:?}"
    );
    eprintln!("rolling update of 20 replicas: {samples:?}");
}

/// Scenario: a version that crashes stalls the rollout past its progress deadline;
/// `rollout status` says so and fails; `rollout undo` brings the old version back.
#[test]
fn a_crashing_version_stalls_and_undo_brings_the_old_one_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--restart-backoff", "1s"]);
    // minReadySeconds outlasts a crasher's run: a crashing pod never counts as
    // available, however its restarts line up.
    create_deployment(
        &server,
        "web",
        3,
        json!({
            // Generous for the first version: on a loaded machine its first start compiles
            // the module. The crashing version gets 5 s below.
            "progressDeadlineSeconds": 60,
            "minReadySeconds": 2,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
        }),
    );
    let out = skiff_ok(
        &server,
        &["rollout", "status", "deploy/web", "--timeout", "90s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let response = server
        .client()
        .patch(format!("{}{DEPLOYMENTS}/web", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "spec": { "progressDeadlineSeconds": 5 } }).to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());

    let crasher = format!("file:{}", skiff_samples::CRASHER);
    skiff_ok(
        &server,
        &["set", "image", "deploy/web", &format!("main={crasher}")],
    );
    let out = skiff(
        &server,
        &["rollout", "status", "deploy/web", "--timeout", "60s"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    let deployment = server.get(&format!("{DEPLOYMENTS}/web"));
    assert!(
        deployment["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded"),
        "{deployment}"
    );
    // maxUnavailable 0: the old version served throughout.
    let old_ready = pods(&server, "web")
        .iter()
        .filter(|p| p.image == ticker() && p.ready && !p.terminating)
        .count();
    assert_eq!(old_ready, 3);
    assert_eq!(history_revisions(&server, "web"), ["1", "2"]);

    let err = skiff_fails(
        &server,
        &["rollout", "undo", "deploy/web", "--to-revision", "7"],
    );
    assert!(
        err.contains("unable to find specified revision 7 in history"),
        "{err}"
    );
    let out = skiff_ok(&server, &["rollout", "undo", "deploy/web"]);
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    let out = skiff_ok(
        &server,
        &["rollout", "status", "deploy/web", "--timeout", "60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(
        "3 ready replicas of the old version and no crasher",
        Duration::from_secs(30),
        || settled_on(&server, "web", 3, &ticker()),
    );
    // The old template is the newest revision now.
    assert_eq!(history_revisions(&server, "web"), ["2", "3"]);
    let out = skiff_ok(
        &server,
        &["rollout", "history", "deploy/web", "--revision", "2"],
    );
    assert!(out.contains("with revision #2"), "{out}");
    assert!(out.contains(&crasher), "{out}");
}

/// `rollout pause` holds template changes back, `resume` rolls them out, `restart`
/// replaces every pod; each refuses what kubectl refuses.
#[test]
fn pause_resume_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let v2 = ticker_v2(dir.path());
    create_deployment(&server, "p", 2, json!({}));
    skiff_ok(
        &server,
        &["rollout", "status", "deploy/p", "--timeout", "60s"],
    );

    let out = skiff_ok(&server, &["rollout", "pause", "deploy/p"]);
    assert_eq!(out.trim(), "deployment.apps/p paused");
    let err = skiff_fails(&server, &["rollout", "pause", "deploy/p"]);
    assert!(
        err.contains("deployments.apps \"p\" is already paused"),
        "{err}"
    );
    skiff_ok(
        &server,
        &["set", "image", "deploy/p", &format!("main={v2}")],
    );
    wait_for(
        "the paused deployment's change to be observed",
        Duration::from_secs(30),
        || {
            let d = server.get(&format!("{DEPLOYMENTS}/p"));
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
        },
    );
    assert_eq!(
        history_revisions(&server, "p"),
        ["1"],
        "a paused deployment made no new revision"
    );
    assert!(settled_on(&server, "p", 2, &ticker()));
    let err = skiff_fails(&server, &["rollout", "undo", "deploy/p"]);
    assert!(err.contains("cannot rollback a paused deployment"), "{err}");
    let err = skiff_fails(&server, &["rollout", "restart", "deploy/p"]);
    assert!(err.contains("can't restart paused deployment"), "{err}");

    let out = skiff_ok(&server, &["rollout", "resume", "deploy/p"]);
    assert_eq!(out.trim(), "deployment.apps/p resumed");
    let err = skiff_fails(&server, &["rollout", "resume", "deploy/p"]);
    assert!(
        err.contains("deployments.apps \"p\" is not paused"),
        "{err}"
    );
    skiff_ok(
        &server,
        &["rollout", "status", "deploy/p", "--timeout", "60s"],
    );
    wait_for("2 ready replicas of v2", Duration::from_secs(30), || {
        settled_on(&server, "p", 2, &v2)
    });

    let out = skiff_ok(&server, &["rollout", "restart", "deploy/p"]);
    assert_eq!(out.trim(), "deployment.apps/p restarted");
    skiff_ok(
        &server,
        &["rollout", "status", "deploy/p", "--timeout", "60s"],
    );
    wait_for(
        "2 ready replicas, restarted",
        Duration::from_secs(30),
        || {
            let pods = pods(&server, "p");
            settled_on(&server, "p", 2, &v2)
                && pods
                    .iter()
                    .all(|p| p.annotations["kubectl.kubernetes.io/restartedAt"].is_string())
        },
    );
    assert_eq!(history_revisions(&server, "p"), ["1", "2", "3"]);
}

/// A `skiff controller-manager` process; killed when dropped.
struct ControllerManager {
    child: Child,
}

impl ControllerManager {
    fn start(server: &Server, identity: &str) -> ControllerManager {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["controller-manager", "--server", &server.url])
            .arg("--certificate-authority")
            .arg(server.ca_file())
            .args(["--identity", identity])
            // Short lease timings, so the standby takes over within seconds.
            .args(["--lease-duration", "3s", "--renew-deadline", "2s"])
            .args(["--retry-period", "500ms"])
            .env("SKIFF_TOKEN", &server.token)
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skiff controller-manager");
        ControllerManager { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lease_holder(server: &Server) -> Option<String> {
    server.get(LEASE)["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

/// Scenario: the leading controller manager is killed (SIGKILL) mid-rollout; the
/// standby takes the lease and finishes the rollout, with no pod too many or missing.
#[test]
fn a_standby_controller_manager_finishes_a_rollout_whose_leader_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--no-controllers"]);
    let v2 = ticker_v2(dir.path());
    let mut managers = [
        ControllerManager::start(&server, "cm-a"),
        ControllerManager::start(&server, "cm-b"),
    ];
    wait_for(
        "a controller manager to lead",
        Duration::from_secs(30),
        || lease_holder(&server).is_some(),
    );
    // minReadySeconds makes each step of the rollout last a second or more, so that
    // the kill lands midway.
    create_deployment(
        &server,
        "ha",
        10,
        json!({
            "minReadySeconds": 1,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 2, "maxUnavailable": 0 } },
        }),
    );
    skiff_ok(
        &server,
        &["rollout", "status", "deploy/ha", "--timeout", "60s"],
    );
    assert!(settled_on(&server, "ha", 10, &ticker()));

    let sampler = Sampler::start(&server, "ha", &ticker());
    skiff_ok(
        &server,
        &["set", "image", "deploy/ha", &format!("main={v2}")],
    );
    wait_for(
        "the rollout midway: some new pods ready, most old ones left",
        Duration::from_secs(30),
        || {
            let pods = pods(&server, "ha");
            let new_ready = pods.iter().filter(|p| p.image == v2 && p.ready).count();
            let old = pods
                .iter()
                .filter(|p| p.image == ticker() && !p.terminating)
                .count();
            new_ready >= 1 && old >= 6
        },
    );
    let leader = lease_holder(&server).expect("a leader");
    let (killed, standby) = match leader.as_str() {
        "cm-a" => (0, "cm-b"),
        "cm-b" => (1, "cm-a"),
        other => panic!("unexpected lease holder {other:?}"),
    };
    managers[killed].kill();
    // Nothing acts until the standby leads: the rollout has work left for it.
    let old_left = pods(&server, "ha")
        .iter()
        .filter(|p| p.image == ticker() && !p.terminating)
        .count();
    assert!(
        old_left > 0,
        "the rollout finished before the leader was killed"
    );

    wait_for(
        "the standby to take the lease",
        Duration::from_secs(30),
        || lease_holder(&server).as_deref() == Some(standby),
    );
    let out = skiff_ok(
        &server,
        &["rollout", "status", "deploy/ha", "--timeout", "60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for(
        "10 ready replicas of the new image and no old one",
        Duration::from_secs(30),
        || settled_on(&server, "ha", 10, &v2),
    );
    let samples = sampler.finish();
    assert!(samples.mixed > 0, "{samples:?}");
    assert!(
        samples.max_pods <= 12,
        "more than replicas + maxSurge pods: {samples:?}"
    );
    assert!(
        samples.min_ready >= 10,
        "fewer ready pods than replicas with maxUnavailable 0: {samples:?}"
    );
    eprintln!("leader killed with {old_left} old pods left; {samples:?}");
    let deployment = server.get(&format!("{DEPLOYMENTS}/ha"));
    assert_eq!(deployment["status"]["replicas"], 10, "{deployment}");
    assert_eq!(deployment["status"]["updatedReplicas"], 10, "{deployment}");
}
