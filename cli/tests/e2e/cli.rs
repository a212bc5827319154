//! The user verbs against a real server: apply creates then configures, get shows
//! tables and YAML, describe shows an object, delete removes it; bad input gets a
//! clear error naming what is wrong.

use std::process::{Command, Output};

use crate::support::Server;

fn skiff(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--kubeconfig")
        .arg(server.data_dir.join("kubeconfig"))
        .args(args)
        .output()
        .expect("run skiff")
}

fn ok(server: &Server, args: &[&str]) -> String {
    let out = skiff(server, args);
    assert!(
        out.status.success(),
        "skiff {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const APP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: { app: web }
data:
  mode: fast
  level: '3'
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers: [{ name: main, image: hello.wasm }]
";

#[test]
fn apply_get_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let manifest = dir.path().join("app.yaml");
    std::fs::write(&manifest, APP).unwrap();
    let manifest = manifest.to_str().unwrap();

    let out = ok(&server, &["apply", "-f", manifest]);
    assert_eq!(
        out,
        "configmap/settings created\ndeployment.apps/web created\n"
    );
    let out = ok(&server, &["apply", "-f", manifest]);
    assert_eq!(
        out,
        "configmap/settings unchanged\ndeployment.apps/web unchanged\n"
    );

    // A field dropped from the manifest is removed; one changed is changed.
    std::fs::write(
        manifest,
        APP.replace("  level: '3'\n", "")
            .replace("replicas: 2", "replicas: 4"),
    )
    .unwrap();
    let out = ok(&server, &["apply", "-f", manifest]);
    assert_eq!(
        out,
        "configmap/settings configured\ndeployment.apps/web configured\n"
    );
    let yaml = ok(&server, &["get", "cm", "settings", "-o", "yaml"]);
    assert!(
        yaml.contains("mode: fast") && !yaml.contains("level"),
        "{yaml}"
    );

    let table = ok(&server, &["get", "deploy"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("READY")
            && lines[0].contains("UP-TO-DATE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("web") && lines[1].contains("/4 "),
        "{table}"
    );

    let table = ok(&server, &["get", "configmaps", "-A", "-l", "app=web"]);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("default") && table.contains("settings"),
        "{table}"
    );
    let names = ok(&server, &["get", "ns", "-o", "name"]);
    assert!(
        names.contains("namespace/default\n") && names.contains("namespace/kube-system\n"),
        "{names}"
    );
    let json = ok(&server, &["get", "deployments.apps", "web", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(object["spec"]["replicas"], 4);

    let described = ok(&server, &["describe", "deploy", "web"]);
    assert!(
        described.contains("Name:") && described.contains("web") && described.contains("Spec:"),
        "{described}"
    );

    let out = ok(&server, &["delete", "-f", manifest]);
    assert_eq!(
        out,
        "configmap \"settings\" deleted\ndeployment.apps \"web\" deleted\n"
    );
    let out = skiff(&server, &["get", "deploy", "web"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let bad = dir.path().join("bad.yaml");

    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Pod\nmetadata: { name: Bad_Name }\nspec: { containers: [] }\n",
    )
    .unwrap();
    let out = skiff(&server, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metadata.name") && stderr.contains("spec.containers"),
        "{stderr}"
    );

    std::fs::write(&bad, "kind: Pod\n").unwrap();
    let stderr =
        String::from_utf8(skiff(&server, &["apply", "-f", bad.to_str().unwrap()]).stderr).unwrap();
    assert!(stderr.contains("apiVersion is required"), "{stderr}");

    let stderr = String::from_utf8(skiff(&server, &["get", "widgets"]).stderr).unwrap();
    assert!(
        stderr.contains("doesn't have a resource type \"widgets\""),
        "{stderr}"
    );
    let stderr = String::from_utf8(skiff(&server, &["get", "pods", "-o", "xml"]).stderr).unwrap();
    assert!(stderr.contains("--output"), "{stderr}");
}
