//! `skiff server --etcd`: the cluster's objects live in etcd, not in the server's data
//! directory, so they outlive the server that wrote them.

use serde_json::json;
use skiff_control_plane::store::etcd::LocalEtcd;

use crate::support::Server;

#[test]
fn a_server_on_etcd_serves_objects_that_outlive_it() {
    let dir = tempfile::tempdir().unwrap();
    // Fails (never skips) with how to install etcd when the binary is missing.
    let etcd = LocalEtcd::start(&dir.path().join("etcd")).unwrap_or_else(|e| panic!("{e}"));
    let on_etcd = ["--no-node", "--etcd", etcd.url()];

    let mut first = Server::start_with(&dir.path().join("first"), &on_etcd);
    let path = "/api/v1/namespaces/default/configmaps";
    first.create(
        path,
        json!({ "metadata": { "name": "settings" }, "data": { "colour": "blue" } }),
    );
    let written = first.get(&format!("{path}/settings"));
    assert_eq!(written["data"]["colour"], "blue", "{written}");
    assert!(
        !dir.path().join("first").join("store").exists(),
        "with --etcd, no sled store is made in the data directory"
    );
    first.kill();

    // Another server, with a data directory of its own, finds the same object in etcd.
    let second = Server::start_with(&dir.path().join("second"), &on_etcd);
    let read = second.get(&format!("{path}/settings"));
    assert_eq!(read["data"]["colour"], "blue", "{read}");
    assert_eq!(read["metadata"]["uid"], written["metadata"]["uid"]);
    assert_eq!(
        read["metadata"]["resourceVersion"],
        written["metadata"]["resourceVersion"]
    );
}

/// An etcd served over TLS with client certificates required: the server reaches it with
/// kube-apiserver's flags, and says which one is missing without them.
#[test]
fn a_server_reaches_etcd_over_tls_with_its_client_certificate() {
    use skiff_control_plane::store::etcd::LocalEtcdCluster;
    let dir = tempfile::tempdir().unwrap();
    let etcd =
        LocalEtcdCluster::start_tls(&dir.path().join("etcd"), 1).unwrap_or_else(|e| panic!("{e}"));
    let url = etcd.url(0);
    let tls = etcd.tls().expect("TLS files");

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--no-node",
            "--etcd",
            &url,
        ])
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--etcd-cafile"), "{stderr}");

    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.client_cert.display().to_string(),
        tls.client_key.display().to_string(),
    );
    let server = Server::start_with(
        &dir.path().join("server"),
        &[
            "--no-node",
            "--etcd",
            &url,
            "--etcd-cafile",
            &ca,
            "--etcd-certfile",
            &cert,
            "--etcd-keyfile",
            &key,
        ],
    );
    let path = "/api/v1/namespaces/default/configmaps";
    server.create(
        path,
        json!({ "metadata": { "name": "sealed" }, "data": { "over": "tls" } }),
    );
    assert_eq!(server.get(&format!("{path}/sealed"))["data"]["over"], "tls");
}
