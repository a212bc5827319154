//! `kubectl top` against a real `skiff server`: the metrics API (`metrics.k8s.io`) made from
//! what the node measures of its running wasm containers.

use std::time::{Duration, Instant};

use crate::kubectl::{Kubectl, cluster, rows};

/// A pod spinning on the CPU and an idle one, told apart by their `app` labels.
fn pods() -> String {
    format!(
        "\
apiVersion: v1
kind: Pod
metadata: {{ name: spin, labels: {{ app: spin }} }}
spec:
  containers:
  - name: main
    image: file:{spin}
---
apiVersion: v1
kind: Pod
metadata: {{ name: idle, labels: {{ app: idle }} }}
spec:
  containers:
  - name: main
    image: file:{ticker}
    env: [{{ name: TICK_MS, value: '3600000' }}]
",
        spin = skiff_samples::CPUSPIN,
        ticker = skiff_samples::TICKER,
    )
}

/// `12m` → 12, as kubectl prints CPU.
fn millicores(cell: &str) -> u64 {
    cell.strip_suffix('m')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not millicores: {cell:?}"))
}

/// `3Mi` → 3, as kubectl prints memory.
fn mebibytes(cell: &str) -> u64 {
    cell.strip_suffix("Mi")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not MiB: {cell:?}"))
}

/// Runs `kubectl ARGS` until it succeeds and `accept` takes its output, for up to a minute;
/// returns that output.
fn wait_for_top(kubectl: &Kubectl, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = kubectl.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && accept(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} did not print what was expected within 60 s; last: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kubectl_top_shows_what_pods_and_nodes_use() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    kubectl.ok_with_input(&["create", "-f", "-"], &pods());
    for pod in ["spin", "idle"] {
        kubectl.wait_for_output(
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            "Running",
        );
    }

    // Both pods, the spinning one on most of a core, the idle one on next to none.
    let pod_header = ["NAME", "CPU(cores)", "MEMORY(bytes)"];
    let top = wait_for_top(&kubectl, &["top", "pod"], |out| {
        let rows = rows(out, &pod_header);
        let cpu = |name: &str| {
            rows.iter()
                .find(|row| row[0] == name)
                .map(|row| millicores(&row[1]))
        };
        matches!((cpu("spin"), cpu("idle")), (Some(spin), Some(idle)) if spin >= 250 && idle <= 20)
    });
    println!("kubectl top pod:\n{top}");
    let rows = rows(&top, &pod_header);
    assert_eq!(rows.len(), 2, "{top}");
    for row in &rows {
        // A Rust guest holds at least its stack: about a MiB of linear memory.
        assert!(mebibytes(&row[2]) >= 1, "{top}");
    }

    // The node: its pods' sum, with kubectl's percentages of what it can allocate.
    let node_header = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"];
    let top_node = wait_for_top(&kubectl, &["top", "node"], |out| {
        crate::kubectl::table(out)
            .iter()
            .any(|row| row[0] == "node-0" && millicores(&row[1]) >= 250)
    });
    println!("kubectl top node:\n{top_node}");
    let nodes = crate::kubectl::rows(&top_node, &node_header);
    assert_eq!(nodes.len(), 1, "{top_node}");
    let node = &nodes[0];
    assert_eq!(node[0], "node-0");
    assert!(
        node[2].ends_with('%') && node[4].ends_with('%'),
        "{top_node}"
    );
    assert!(mebibytes(&node[3]) >= 2, "two pods' memory: {top_node}");
    let named = kubectl.ok(&["top", "node", "node-0", "--no-headers"]);
    assert!(named.starts_with("node-0 "), "{named}");

    // A label selector picks the pods, as `kubectl top pod -l` asks.
    let spin = kubectl.ok(&["top", "pod", "-l", "app=spin"]);
    let spin = crate::kubectl::rows(&spin, &pod_header);
    assert_eq!(spin.len(), 1, "{spin:?}");
    assert_eq!(spin[0][0], "spin");
    let idle = kubectl.ok(&["top", "pod", "-l", "app in (idle)", "--containers"]);
    let idle = crate::kubectl::rows(&idle, &["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]);
    assert_eq!(idle.len(), 1, "{idle:?}");
    assert_eq!(idle[0][..2], ["idle", "main"]);

    // Every namespace's pods.
    let all = kubectl.ok(&["top", "pod", "-A", "--no-headers"]);
    let all = crate::kubectl::table(&all);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|row| row[0] == "default"), "{all:?}");

    // One pod by name; a pod that does not exist is metrics-server's 404.
    let one = kubectl.ok(&["top", "pod", "spin", "--no-headers"]);
    assert!(one.starts_with("spin "), "{one}");
    let missing = kubectl.fails(&["top", "pod", "nosuch"]);
    assert!(
        missing.contains(r#"podmetrics.metrics.k8s.io "default/nosuch" not found"#),
        "{missing}"
    );
}
