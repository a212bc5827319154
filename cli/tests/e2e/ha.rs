//! A highly available control plane: three `skiff server`s on one three-member etcd.
//! Killing the leading server (SIGKILL) mid-rollout hands its leases to another, whose
//! controllers finish the rollout while the nodes and the CLI fail over to the servers
//! left; killing an etcd member does not stop writes; every write a server acknowledged
//! is there at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use skiff_control_plane::store::etcd::LocalEtcdCluster;

use crate::support::{NodeProcess, Server, wait_for};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

/// Who holds lease `name` in kube-system, asked through `server`.
fn holder(server: &Server, name: &str) -> Option<String> {
    let (status, lease) = server.send(Method::GET, &format!("{LEASES}/{name}"), None);
    (status == 200)
        .then(|| lease["spec"]["holderIdentity"].as_str().map(str::to_string))
        .flatten()
}

/// The identity a server takes in leader elections (kept in its data dir).
fn identity(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.join("identity"))
        .unwrap()
        .trim()
        .to_string()
}

fn ticker(path: &str) -> String {
    format!("file:{path}")
}

/// Pods of app `ha` as (image, ready, terminating), read through `server`.
fn pods(server: &Server) -> Vec<(String, bool, bool)> {
    let list = server.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dha");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                ready,
                p["metadata"]["deletionTimestamp"].is_string(),
            )
        })
        .collect()
}

/// Creates ConfigMaps through every live server in turn until stopped, keeping the name
/// of each one a server acknowledged (201). Failed writes (a server or member dying
/// under them) are counted, not retried: only acknowledged ones must survive.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
    thread: JoinHandle<usize>,
}

impl Writer {
    fn start(servers: &[&Server]) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let targets: Vec<(String, String, reqwest::blocking::Client)> = servers
            .iter()
            .map(|s| (s.url.clone(), s.token.clone(), s.client()))
            .collect();
        let thread = std::thread::spawn({
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            move || {
                let mut failed = 0;
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let (url, token, client) = &targets[n % targets.len()];
                    let name = format!("w-{n}");
                    let body =
                        json!({ "metadata": { "name": name }, "data": { "n": n.to_string() } });
                    let sent = client
                        .post(format!("{url}{CONFIGMAPS}"))
                        .bearer_auth(token)
                        .timeout(Duration::from_secs(10))
                        .json(&body)
                        .send();
                    match sent {
                        Ok(response) if response.status().as_u16() == 201 => {
                            acknowledged.lock().unwrap().push(name)
                        }
                        _ => failed += 1,
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                failed
            }
        });
        Writer {
            stop,
            acknowledged,
            thread,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Stops writing; returns the acknowledged names and how many writes failed.
    fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let failed = self.thread.join().unwrap();
        (self.acknowledged.lock().unwrap().clone(), failed)
    }
}

#[test]
fn three_servers_on_three_etcd_members_survive_losing_the_leader_and_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd =
        LocalEtcdCluster::start(&dir.path().join("etcd"), 3).unwrap_or_else(|e| panic!("{e}"));
    let endpoints = etcd.urls().join(",");
    // Short leases, so that a killed leader's work moves within seconds.
    let args = [
        "--no-node",
        "--etcd",
        &endpoints,
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    let mut servers: Vec<Server> = (0..3)
        .map(|i| Server::start_with(&dir.path().join(format!("server-{i}")), &args))
        .collect();

    // One cluster: the same admin token and CA on every server, and each kubeconfig
    // comes to list all three.
    for server in &servers[1..] {
        assert_eq!(server.token, servers[0].token, "one admin token");
        assert_eq!(
            std::fs::read(server.ca_file()).unwrap(),
            std::fs::read(servers[0].ca_file()).unwrap(),
            "one cluster CA"
        );
    }
    for server in &servers {
        wait_for(
            "every kubeconfig to list the three servers",
            Duration::from_secs(30),
            || {
                let kubeconfig =
                    std::fs::read_to_string(server.data_dir.join("kubeconfig")).unwrap();
                servers.iter().all(|s| kubeconfig.contains(&s.url))
            },
        );
    }

    wait_for("a controller leader", Duration::from_secs(30), || {
        holder(&servers[0], "skiff-controller-manager").is_some()
    });
    let leader_identity = holder(&servers[0], "skiff-controller-manager").unwrap();
    let leader = servers
        .iter()
        .position(|s| identity(s) == leader_identity)
        .unwrap_or_else(|| panic!("the lease holder {leader_identity} is none of the servers"));
    let survivor = (leader + 1) % 3;

    // Two nodes that know every server, the leader's first: killing it makes them move.
    let mut urls: Vec<&str> = vec![&servers[leader].url];
    urls.extend(
        servers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, s)| s.url.as_str()),
    );
    let server_list = urls.join(",");
    let _nodes: Vec<NodeProcess> = (0..2)
        .map(|i| {
            let name = format!("node-{i}");
            let mut command =
                NodeProcess::command(&servers[leader], &name, &dir.path().join(&name));
            command
                .args(["--server", &server_list])
                .env("SKIFF_JOIN_TOKEN", servers[leader].join_token())
                .stderr(std::process::Stdio::inherit());
            NodeProcess {
                child: command.spawn().expect("spawn skiff node"),
            }
        })
        .collect();
    wait_for("two nodes with pod ranges", Duration::from_secs(60), || {
        servers[survivor].get("/api/v1/nodes")["items"]
            .as_array()
            .is_some_and(|all| {
                all.len() == 2 && all.iter().all(|n| n["spec"]["podCIDR"].is_string())
            })
    });

    let v1 = ticker(skiff_samples::TICKER);
    let v2_path = dir.path().join("ticker-v2.wasm");
    std::fs::copy(skiff_samples::TICKER, &v2_path).unwrap();
    let v2 = ticker(&v2_path.display().to_string());
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "ha" },
        "spec": {
            "replicas": 6,
            // Each step of the rollout lasts a second or more, so the kill lands midway.
            "minReadySeconds": 1,
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": 0 } },
            "selector": { "matchLabels": { "app": "ha" } },
            "template": {
                "metadata": { "labels": { "app": "ha" } },
                "spec": { "containers": [{
                    "name": "main", "image": v1,
                    "env": [{ "name": "TICK_MS", "value": "3600000" }],
                }] },
            },
        },
    });
    servers[survivor].create(DEPLOYMENTS, deployment);
    let settled_on = |server: &Server, image: &str| {
        let pods = pods(server);
        pods.len() == 6
            && pods
                .iter()
                .all(|(i, ready, gone)| i == image && *ready && !gone)
    };
    wait_for("6 ready pods of v1", Duration::from_secs(90), || {
        settled_on(&servers[survivor], &v1)
    });

    let writer = Writer::start(&servers.iter().collect::<Vec<_>>());
    let patched = servers[survivor]
        .client()
        .patch(format!("{}{DEPLOYMENTS}/ha", servers[survivor].url))
        .bearer_auth(&servers[survivor].token)
        .header("Content-Type", "application/merge-patch+json")
        .body(
            json!({ "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": v2 }] } } } })
                .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200, "{:?}", patched.text());
    wait_for("the rollout midway", Duration::from_secs(60), || {
        let pods = pods(&servers[survivor]);
        let new_ready = pods.iter().filter(|(i, r, _)| *i == v2 && *r).count();
        let old = pods.iter().filter(|(i, _, gone)| *i == v1 && !gone).count();
        new_ready >= 1 && old >= 3
    });

    let killed_at = Instant::now();
    servers[leader].kill();
    let old_left = pods(&servers[survivor])
        .iter()
        .filter(|(i, _, gone)| *i == v1 && !gone)
        .count();
    assert!(
        old_left > 0,
        "the rollout finished before the leader was killed"
    );
    wait_for(
        "another server to take the controllers' lease",
        Duration::from_secs(30),
        || {
            holder(&servers[survivor], "skiff-controller-manager")
                .is_some_and(|h| h != leader_identity)
        },
    );
    let takeover = killed_at.elapsed();

    // The killed server's own kubeconfig still works: the CLI moves to a live server.
    let out = servers[leader].cli(&["rollout", "status", "deploy/ha", "--timeout", "90s"]);
    assert!(
        out.status.success(),
        "rollout status through the dead server's kubeconfig: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "6 ready pods of v2 and none of v1",
        Duration::from_secs(60),
        || settled_on(&servers[survivor], &v2),
    );

    // One etcd member dies: writes go on through the two left.
    let before = writer.acknowledged();
    etcd.kill(0).unwrap();
    wait_for(
        "writes acknowledged after an etcd member died",
        Duration::from_secs(60),
        || writer.acknowledged() >= before + 20,
    );
    let (acknowledged, failed) = writer.finish();

    let list = servers[survivor].get(CONFIGMAPS);
    let present: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !present.contains(name.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    eprintln!(
        "leases moved {takeover:?} after the kill with {old_left} old pods left; \
         {} writes acknowledged, {failed} failed",
        acknowledged.len()
    );
}
