//! Pods run end to end on the embedded node: scheduled, run as wasm, reported, restarted
//! by policy with back-off, and deleted within their grace period.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, wait_for};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, module: &str, restart_policy: &str, env: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [{ "name": "main", "image": format!("file:{module}"), "env": env }],
        },
    })
}

/// Runs the CLI against the server and returns its standard output, failing on error.
fn skiff(server: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skiff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn create(server: &Server, body: Value) -> Value {
    let (status, created) = server.send(Method::POST, PODS, Some(body));
    assert_eq!(status, 201, "{created}");
    created
}

/// Waits until the pod satisfies `check`, returning it.
fn wait_pod(server: &Server, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let pod = server.get(&format!("{PODS}/{name}"));
        if check(&pod) {
            return pod;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {name} to be {what}; last seen: {pod}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pods_run_restart_and_stop_on_the_embedded_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--name", "node-a", "--restart-backoff", "200ms"],
    );

    // The node registered itself and is Ready.
    wait_for("node-a Ready", Duration::from_secs(30), || {
        let node = server.get("/api/v1/nodes/node-a");
        node["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    wait_for("node-a's lease", Duration::from_secs(30), || {
        let lease =
            server.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a");
        lease["spec"]["holderIdentity"] == "node-a" && lease["spec"]["renewTime"].is_string()
    });

    // A command runs to completion: Succeeded, exit code 0, its output in its log file.
    create(
        &server,
        pod(
            "hello",
            skiff_samples::HELLO,
            "Never",
            json!([{ "name": "GREETING", "value": "hi" }]),
        ),
    );
    let done = wait_pod(&server, "hello", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(done["spec"]["nodeName"], "node-a", "the scheduler bound it");
    let terminated = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{done}");
    assert_eq!(terminated["reason"], "Completed");
    // Its output through `skiff logs`, proxied by the API server from the node.
    let logs = skiff(&server, &["logs", "hello"]);
    assert_eq!(logs, "hello from wasm\nGREETING=hi\nhello on stderr\n");
    let tail = skiff(
        &server,
        &["logs", "pod/hello", "--tail", "1", "--timestamps"],
    );
    assert!(
        tail.ends_with(" hello on stderr\n") && tail.lines().count() == 1,
        "{tail}"
    );
    let (status, error) = server.send(
        Method::GET,
        &format!("{PODS}/hello/log?container=nope"),
        None,
    );
    assert_eq!(status, 400, "{error}");
    let unauthenticated = server
        .client()
        .get(format!("{}{PODS}/hello/log", server.url))
        .send()
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);

    // A crashing container under Always: CrashLoopBackOff and a growing restart count.
    create(
        &server,
        pod(
            "crasher",
            skiff_samples::CRASHER,
            "Always",
            json!([{ "name": "CRASH_AFTER_MS", "value": "10" }]),
        ),
    );
    let crashing = wait_pod(&server, "crasher", "restarted twice", |p| {
        p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2)
    });
    let status = &crashing["status"]["containerStatuses"][0];
    assert_eq!(crashing["status"]["phase"], "Running");
    assert_eq!(
        status["lastState"]["terminated"]["exitCode"], 3,
        "{crashing}"
    );
    wait_pod(&server, "crasher", "in CrashLoopBackOff", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let previous = skiff(&server, &["logs", "crasher", "--previous"]);
    assert_eq!(previous, "crasher starting\ncrasher exiting with 3\n");

    // Under Never a failing container is not restarted: the pod ends Failed.
    create(
        &server,
        pod(
            "failer",
            skiff_samples::CRASHER,
            "Never",
            json!([{ "name": "CRASH_AFTER_MS", "value": "10" }]),
        ),
    );
    let failed = wait_pod(&server, "failer", "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(
        failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(failed["status"]["containerStatuses"][0]["restartCount"], 0);

    // A missing module is ErrImagePull with a message, never a crash.
    create(
        &server,
        pod("missing", "/nonexistent/module.wasm", "Always", json!([])),
    );
    let missing = wait_pod(&server, "missing", "waiting on its image", |p| {
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        *reason == "ErrImagePull" || *reason == "ImagePullBackOff"
    });
    let message = missing["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("/nonexistent/module.wasm"), "{message}");

    // A long-running pod is Running and Ready; deleting it finishes within its grace period.
    create(
        &server,
        pod(
            "ticker",
            skiff_samples::TICKER,
            "Always",
            json!([{ "name": "TICK_MS", "value": "50" }]),
        ),
    );
    let running = wait_pod(&server, "ticker", "Ready", |p| {
        p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    assert_eq!(running["status"]["phase"], "Running");
    // Following streams new lines as the guest prints them.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(["logs", "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let first: u64 = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("tick ")
        .unwrap()
        .parse()
        .unwrap();
    for expected in first + 1..first + 5 {
        assert_eq!(
            lines.next().unwrap().unwrap(),
            format!("tick {expected}"),
            "followed lines arrive in order"
        );
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let asked = Instant::now();
    let (status, marked) = server.send(Method::DELETE, &format!("{PODS}/ticker"), None);
    assert_eq!(status, 200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "a running pod is stopped first: {marked}"
    );
    wait_for("the ticker pod to be gone", Duration::from_secs(30), || {
        server.send(Method::GET, &format!("{PODS}/ticker"), None).0 == 404
    });
    // A command cannot be asked to stop, so it is stopped at once rather than after its grace.
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "deleted in {:?}; a command is stopped at once",
        asked.elapsed()
    );
}

#[test]
fn a_deployment_runs_its_replicas_scales_and_is_deleted_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--name", "node-a"]);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "ticker" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "ticker" } },
            "template": {
                "metadata": { "labels": { "app": "ticker" } },
                "spec": { "containers": [{ "name": "main", "image": format!("file:{}", skiff_samples::TICKER) }] },
            },
        },
    });
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let (status, created) = server.send(Method::POST, deployments, Some(deployment));
    assert_eq!(status, 201, "{created}");
    let running = |server: &Server| {
        let pods = server.get(&format!("{PODS}?labelSelector=app%3Dticker"));
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .count()
    };
    wait_for("3 replicas Running", Duration::from_secs(60), || {
        running(&server) == 3
    });
    wait_for(
        "the deployment to report 3 ready",
        Duration::from_secs(30),
        || server.get(&format!("{deployments}/ticker"))["status"]["readyReplicas"] == 3,
    );

    let (status, _) = server.send(Method::PATCH, &format!("{deployments}/ticker/scale"), None);
    assert_eq!(
        status, 415,
        "a patch without a patch content type is refused"
    );
    let scale = json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "ticker" }, "spec": { "replicas": 5 } });
    let (status, _) = server.send(
        Method::PUT,
        &format!("{deployments}/ticker/scale"),
        Some(scale),
    );
    assert_eq!(status, 200);
    wait_for("5 replicas Running", Duration::from_secs(60), || {
        running(&server) == 5
    });

    // The same through the CLI, then a rollout to a new image, followed to its end.
    assert_eq!(
        skiff(&server, &["scale", "deploy/ticker", "--replicas", "2"]),
        "deploy/ticker scaled to 2 replicas\n"
    );
    wait_for("2 replicas Running", Duration::from_secs(60), || {
        running(&server) == 2
    });
    let new_image = format!("file://{}", skiff_samples::TICKER);
    assert_eq!(
        skiff(
            &server,
            &[
                "set",
                "image",
                "deploy/ticker",
                &format!("main={new_image}")
            ]
        ),
        "deployment.apps/ticker image updated\n"
    );
    let status = skiff(
        &server,
        &["rollout", "status", "deploy/ticker", "--timeout", "60s"],
    );
    assert!(
        status.ends_with("deployment \"ticker\" successfully rolled out\n"),
        "{status}"
    );
    let pods = server.get(&format!("{PODS}?labelSelector=app%3Dticker"));
    let images: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap())
        .collect();
    assert!(
        images.len() == 2 && images.iter().all(|i| *i == new_image),
        "{images:?}"
    );

    let (status, _) = server.send(Method::DELETE, &format!("{deployments}/ticker"), None);
    assert_eq!(status, 200);
    wait_for(
        "every pod and replica set of the deployment to be gone",
        Duration::from_secs(60),
        || {
            let pods = server.get(&format!("{PODS}?labelSelector=app%3Dticker"));
            let sets = server.get("/apis/apps/v1/namespaces/default/replicasets");
            pods["items"].as_array().unwrap().is_empty()
                && sets["items"].as_array().unwrap().is_empty()
        },
    );
}

#[test]
fn pushed_modules_run_by_name_and_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--name", "node-a"]);
    let pushed = skiff(&server, &["push", skiff_samples::HELLO, "hello:v1"]);
    let digest = pushed
        .trim()
        .strip_prefix("hello:v1 ")
        .expect("NAME:TAG DIGEST")
        .to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{pushed}"
    );

    for (name, image) in [
        ("by-name", "hello:v1".to_string()),
        ("by-digest", digest.clone()),
    ] {
        let mut body = pod(name, "", "Never", json!([]));
        body["spec"]["containers"][0]["image"] = json!(image);
        create(&server, body);
        let done = wait_pod(&server, name, "Succeeded", |p| {
            p["status"]["phase"] == "Succeeded"
        });
        assert_eq!(
            done["status"]["containerStatuses"][0]["imageID"], digest,
            "{done}"
        );
        assert_eq!(
            skiff(&server, &["logs", name]),
            "hello from wasm\nhello on stderr\n"
        );
    }

    let mut missing = pod("missing", "", "Always", json!([]));
    missing["spec"]["containers"][0]["image"] = json!("nothing-here:v9");
    create(&server, missing);
    let waiting = wait_pod(&server, "missing", "waiting on its image", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    });
    let message = waiting["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("nothing-here:v9") && message.contains("not find"),
        "{message}"
    );

    let stray = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(["push", skiff_samples::HELLO, "Bad/Name"])
        .output()
        .unwrap();
    assert!(!stray.status.success());
    assert!(
        String::from_utf8_lossy(&stray.stderr).contains("module name \"Bad/Name\" is invalid"),
        "{}",
        String::from_utf8_lossy(&stray.stderr)
    );
}
