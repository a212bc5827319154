//! The official Kubernetes Python client (PyPI `kubernetes`, in the workspace's `.venv`)
//! against a real `skiff server` with its node: create, list, watch, patch, replace and
//! delete with the 409 and 422 answers a client library handles, and a Deployment of
//! wasm pods (`python_client.py` holds the steps).

use std::process::Command;
use std::time::Duration;

use crate::support::{Server, wait_for};

#[test]
fn the_python_client_creates_lists_watches_patches_replaces_and_deletes() {
    let venv = crate::kubectl::venv();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--name", "node-0"]);
    wait_for("node-0 Ready", Duration::from_secs(60), || {
        server.get("/api/v1/nodes/node-0")["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/python_client.py");
    let output = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(server.data_dir.join("kubeconfig"))
        .arg(format!("file:{}", skiff_samples::TICKER))
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.ends_with("ok\n"),
        "the Python client failed after:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
