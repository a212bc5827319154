//! `skiff migrate`: a cluster that ran on one machine (sled) moves into etcd and is the
//! same cluster there: its objects, its allocations, its credentials.

use std::path::Path;
use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{Value, json};
use skiff_control_plane::store::etcd::LocalEtcd;

use crate::support::Server;

const NAMESPACE: &str = "/api/v1/namespaces/shop";
const CONFIGMAPS: &str = "/api/v1/namespaces/shop/configmaps";
const SERVICES: &str = "/api/v1/namespaces/shop/services";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";

fn migrate(from: &Path, etcd: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("migrate")
        .arg("--from-sled")
        .arg(from)
        .args(["--to-etcd", etcd])
        .output()
        .expect("run skiff migrate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn node_port_service(name: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "type": "NodePort",
            "selector": { "app": name },
            "ports": [{ "port": 80, "targetPort": 8080 }],
        },
    })
}

/// What a client holding the old server's kubeconfig has: its token, and trust in the
/// old CA (and nothing else).
struct OldCredentials {
    token: String,
    client: reqwest::blocking::Client,
}

impl OldCredentials {
    fn of(server: &Server) -> OldCredentials {
        let pem = std::fs::read(server.ca_file()).unwrap();
        let client = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        OldCredentials {
            token: server.token.clone(),
            client,
        }
    }

    fn send(
        &self,
        server: &Server,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("request with the old credentials");
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        // A watch answers with one JSON object per line.
        let first = text.lines().next().unwrap_or_default();
        (status, serde_json::from_str(first).unwrap_or(Value::Null))
    }

    fn get(&self, server: &Server, path: &str) -> Value {
        let (status, answer) = self.send(server, Method::GET, path, None);
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }
}

fn revision(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion: {object}"))
}

#[test]
fn a_cluster_migrated_from_sled_to_etcd_is_the_same_cluster() {
    let dir = tempfile::tempdir().unwrap();
    // Fails (never skips) with how to install etcd when the binary is missing.
    let etcd = LocalEtcd::start(&dir.path().join("etcd")).unwrap_or_else(|e| panic!("{e}"));
    let old_dir = dir.path().join("sled");
    let mut old = Server::start_with(&old_dir, &["--no-node"]);
    old.create(
        "/api/v1/namespaces",
        json!({ "metadata": { "name": "shop" } }),
    );
    old.create(
        CONFIGMAPS,
        json!({ "metadata": { "name": "settings" }, "data": { "colour": "blue" } }),
    );
    old.create(SERVICES, node_port_service("web"));
    old.create(
        DEPLOYMENTS,
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "main", "image": "web:v1" }] },
                },
            },
        }),
    );
    let paths = [
        NAMESPACE.to_string(),
        format!("{CONFIGMAPS}/settings"),
        format!("{SERVICES}/web"),
        format!("{DEPLOYMENTS}/web"),
    ];
    let pushed = old.cli(&["push", skiff_samples::TICKER, "ticker:v1"]);
    assert!(pushed.status.success(), "{pushed:?}");
    let before: Vec<Value> = paths.iter().map(|path| old.get(path)).collect();
    let service = &before[2];
    assert!(service["spec"]["clusterIP"].is_string(), "{service}");

    // A running server holds the store: what it wrote after the copy would be lost.
    let refused = migrate(&old_dir, etcd.url());
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("stop the server first"),
        "{}",
        text(&refused)
    );

    old.kill();
    let migrated = migrate(&old_dir, etcd.url());
    assert!(migrated.status.success(), "{}", text(&migrated));
    let said = String::from_utf8_lossy(&migrated.stdout);
    assert!(
        said.contains(&format!("skiff server --etcd {} --data-dir", etcd.url())),
        "{said}"
    );
    assert!(said.contains("etcd holds the same"), "{said}");
    assert!(said.contains("1 pushed modules are in etcd too"), "{said}");

    let new = Server::start_with(
        &dir.path().join("on-etcd"),
        &["--no-node", "--etcd", etcd.url()],
    );
    assert_eq!(
        new.token, old.token,
        "the kubeconfig's token is the cluster's"
    );
    assert_eq!(
        std::fs::read(new.ca_file()).unwrap(),
        std::fs::read(old.ca_file()).unwrap(),
        "the cluster CA is the same"
    );
    // The old kubeconfig's token and CA work against the new server.
    let as_before = OldCredentials::of(&old);
    let newest_old = before.iter().map(revision).max().unwrap();
    for (path, was) in paths.iter().zip(&before) {
        let now = as_before.get(&new, path);
        for field in ["uid", "creationTimestamp", "name"] {
            assert_eq!(now["metadata"][field], was["metadata"][field], "{path}");
        }
        assert_eq!(now["spec"], was["spec"], "{path}");
        assert!(
            revision(&now) > newest_old,
            "{path}: the resourceVersion {} is newer than any of the old server's ({newest_old})",
            revision(&now)
        );
    }

    // The pushed module came along, by its tag.
    let module = new
        .client()
        .get(format!("{}/skiff/v1/modules/ticker:v1", new.url))
        .bearer_auth(&new.token)
        .send()
        .unwrap();
    assert_eq!(module.status().as_u16(), 200);
    assert!(
        module.bytes().unwrap()[..] == std::fs::read(skiff_samples::TICKER).unwrap()[..],
        "the module read back as pushed"
    );

    // The allocations came along: a new Service gets another ClusterIP and NodePort.
    let (status, other) = as_before.send(
        &new,
        Method::POST,
        SERVICES,
        Some(node_port_service("shop")),
    );
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["spec"]["clusterIP"], service["spec"]["clusterIP"]);
    assert_ne!(
        other["spec"]["ports"][0]["nodePort"],
        service["spec"]["ports"][0]["nodePort"]
    );

    // Optimistic concurrency: an update naming an old resourceVersion is refused, one
    // naming the current one is taken.
    let settings = format!("{CONFIGMAPS}/settings");
    let mut stale = before[1].clone();
    stale["data"]["colour"] = json!("red");
    let (status, answer) = as_before.send(&new, Method::PUT, &settings, Some(stale));
    assert_eq!(status, 409, "{answer}");
    let mut current = as_before.get(&new, &settings);
    current["data"]["colour"] = json!("green");
    let (status, answer) = as_before.send(&new, Method::PUT, &settings, Some(current));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(as_before.get(&new, &settings)["data"]["colour"], "green");

    // A watch resuming from before the migration is told to list afresh.
    let (status, event) = as_before.send(
        &new,
        Method::GET,
        &format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={}",
            revision(&before[1])
        ),
        None,
    );
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["type"], "ERROR", "{event}");
    assert_eq!(event["object"]["code"], 410, "{event}");

    // Into the same prefix again: refused, it holds a cluster now.
    let again = migrate(&old_dir, etcd.url());
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already holds keys"),
        "{}",
        text(&again)
    );
    drop(new);

    // The sled dir was only read: it still serves the cluster as it was, to go back to.
    let back = Server::start_with(&old_dir, &["--no-node"]);
    let kept = back.get(&settings);
    assert_eq!(kept["data"]["colour"], "blue", "{kept}");
    assert_eq!(kept["metadata"]["uid"], before[1]["metadata"]["uid"]);
}
