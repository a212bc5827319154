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
