//! Probes and kept-current volumes on the embedded node: readiness gates a pod's Ready
//! condition, a failing liveness probe restarts the container, and a ConfigMap's change
//! reaches the files of a running pod.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, wait_for};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn http_pod(name: &str, fail_paths: &str, probes: Value) -> Value {
    let mut container = json!({
        "name": "web",
        "image": format!("file:{}", skiff_samples::HTTP_HELLO),
        "ports": [{ "name": "http", "containerPort": 8080 }],
        "env": [{ "name": "FAIL_PATHS", "value": fail_paths }],
    });
    for (field, probe) in probes.as_object().unwrap() {
        container[field] = probe.clone();
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "terminationGracePeriodSeconds": 1, "containers": [container] },
    })
}

fn http_get(path: &str) -> Value {
    json!({ "httpGet": { "path": path, "port": "http" }, "periodSeconds": 1, "failureThreshold": 1 })
}

fn create(server: &Server, path: &str, body: Value) {
    let (status, created) = server.send(Method::POST, path, Some(body));
    assert_eq!(status, 201, "{created}");
}

fn pod(server: &Server, name: &str) -> Value {
    server.get(&format!("{PODS}/{name}"))
}

fn condition(pod: &Value, type_: &str) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--restart-backoff", "200ms"]);

    // Passing readiness (HTTP) and liveness (TCP) probes: Ready, never restarted.
    create(
        &server,
        PODS,
        http_pod(
            "healthy",
            "",
            json!({
                "readinessProbe": http_get("/ready"),
                "livenessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 },
            }),
        ),
    );
    // A readiness probe that never passes: running, never Ready.
    create(
        &server,
        PODS,
        http_pod(
            "unready",
            "/ready",
            json!({ "readinessProbe": http_get("/ready") }),
        ),
    );
    // A liveness probe that never passes: killed and restarted, again and again.
    create(
        &server,
        PODS,
        http_pod(
            "unhealthy",
            "/healthz",
            json!({ "livenessProbe": http_get("/healthz") }),
        ),
    );

    wait_for("healthy to be Ready", Duration::from_secs(60), || {
        condition(&pod(&server, "healthy"), "Ready") == "True"
    });
    let healthy = pod(&server, "healthy");
    let status = &healthy["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true, "{healthy}");
    assert_eq!(status["started"], true, "{healthy}");

    wait_for(
        "unhealthy to restart twice",
        Duration::from_secs(60),
        || {
            pod(&server, "unhealthy")["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 2)
        },
    );
    let unhealthy = pod(&server, "unhealthy");
    let last = &unhealthy["status"]["containerStatuses"][0]["lastState"]["terminated"];
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Liveness probe failed") && message.contains("statuscode: 503"),
        "{unhealthy}"
    );
    assert_eq!(last["exitCode"], 137, "{unhealthy}");

    // By now the unready pod has been probed many times, every one failing.
    let unready = pod(&server, "unready");
    assert!(
        unready["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{unready}"
    );
    assert_eq!(
        unready["status"]["containerStatuses"][0]["ready"], false,
        "{unready}"
    );
    assert_eq!(condition(&unready, "Ready"), "False", "{unready}");
    assert_eq!(condition(&unready, "ContainersReady"), "False", "{unready}");

    // The healthy pod stayed up through all of it.
    let healthy = pod(&server, "healthy");
    assert_eq!(
        healthy["status"]["containerStatuses"][0]["restartCount"], 0,
        "{healthy}"
    );
}

#[test]
fn a_configmap_change_reaches_a_running_pod() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    create(
        &server,
        "/api/v1/namespaces/default/configmaps",
        json!({
            "metadata": { "name": "settings" },
            "data": { "message.txt": "first version" },
        }),
    );
    create(
        &server,
        PODS,
        json!({
            "metadata": { "name": "watcher" },
            "spec": {
                "containers": [{
                    "name": "reader",
                    "image": format!("file:{}", skiff_samples::READER),
                    "env": [{ "name": "READ_EVERY_MS", "value": "100" }],
                    "volumeMounts": [{ "name": "settings", "mountPath": "/data" }],
                }],
                "volumes": [{ "name": "settings", "configMap": { "name": "settings" } }],
            },
        }),
    );
    let logs = || {
        let response = server
            .client()
            .get(format!("{}{PODS}/watcher/log", server.url))
            .bearer_auth(&server.token)
            .send()
            .unwrap();
        response.text().unwrap()
    };
    wait_for(
        "the first version in the log",
        Duration::from_secs(60),
        || logs().contains("first version"),
    );

    let changed_at = Instant::now();
    let response = server
        .client()
        .patch(format!(
            "{}/api/v1/namespaces/default/configmaps/settings",
            server.url
        ))
        .bearer_auth(&server.token)
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "data": { "message.txt": "second version" } }).to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    wait_for(
        "the second version in the log",
        Duration::from_secs(30),
        || logs().contains("second version"),
    );
    eprintln!("the change reached the pod in {:?}", changed_at.elapsed());
    let watcher = pod(&server, "watcher");
    assert_eq!(
        watcher["status"]["containerStatuses"][0]["restartCount"], 0,
        "the file changed under the running container: {watcher}"
    );
}
