//! The real kubectl running workloads on a real `skiff server`: `logs` (of a deployment,
//! `-f`, `--previous`), `scale`, `rollout history` and `undo`, and `delete` with
//! `--cascade=orphan` and `--cascade=foreground`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::kubectl::{Kubectl, cluster, ticker};

/// A Deployment `ticks` of one ticker printing every 200 ms, of `image`.
fn ticks(image: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {{ name: ticks, labels: {{ app: ticks }} }}
spec:
  replicas: 1
  selector: {{ matchLabels: {{ app: ticks }} }}
  template:
    metadata: {{ labels: {{ app: ticks }} }}
    spec:
      containers:
      - name: main
        image: {image}
        env: [{{ name: TICK_MS, value: '200' }}]
"
    )
}

fn image_of_ticks(kubectl: &Kubectl) -> String {
    kubectl.ok(&[
        "get",
        "deployment",
        "ticks",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

#[test]
fn logs_scale_rollout_history_undo_and_cascading_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, kubectl) = cluster(dir.path());
    kubectl.ok_with_input(&["create", "-f", "-"], &ticks(&ticker()));
    kubectl.ok(&["rollout", "status", "deployment/ticks", "--timeout=90s"]);

    // Each of skiff's programs writes under its own name, as Kubernetes' do.
    let managers = |kind: &str| {
        kubectl.ok(&[
            "get",
            kind,
            "-l",
            "app=ticks",
            "-o",
            "jsonpath={.items[*].metadata.managedFields[*].manager}",
        ])
    };
    assert!(managers("replicasets").contains("skiff-controller-manager"));
    assert!(
        managers("pods").contains("skiff-node"),
        "{}",
        managers("pods")
    );
    // `skiff get -o yaml` leaves managedFields out unless asked, as kubectl does.
    let yaml = server.cli(&["get", "deployment", "ticks", "-o", "yaml"]);
    assert!(!String::from_utf8_lossy(&yaml.stdout).contains("managedFields"));
    let shown = server.cli(&[
        "get",
        "deployment",
        "ticks",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("managedFields"));

    // `logs deployment/NAME` picks one of its pods; `-f` streams until stopped.
    kubectl.wait_for_output(
        &[
            "get",
            "pods",
            "-l",
            "app=ticks",
            "-o",
            "jsonpath={.items[0].status.phase}",
        ],
        "Running",
    );
    let mut printed = String::new();
    crate::support::wait_for("the ticker's first ticks", Duration::from_secs(30), || {
        printed = kubectl.ok(&["logs", "deployment/ticks"]);
        printed.lines().filter(|l| l.starts_with("tick ")).count() >= 2
    });
    let mut follow = kubectl
        .command(&["logs", "-f", "deployment/ticks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let before = printed.lines().count();
    let mut seen = 0;
    while seen <= before + 3 {
        let line = received
            .recv_timeout(Duration::from_secs(30))
            .expect("kubectl logs -f printed new ticks as they came");
        assert!(line.starts_with("tick "), "{line}");
        seen += 1;
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // scale
    let scaled = kubectl.ok(&["scale", "deployment/ticks", "--replicas=3"]);
    assert_eq!(scaled.trim(), "deployment.apps/ticks scaled");
    kubectl.wait_for_output(
        &[
            "get",
            "deployment",
            "ticks",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "3",
    );

    // A second revision, its history, and undo back to the first.
    let v2_path = dir.path().join("ticker-v2.wasm");
    std::fs::copy(skiff_samples::TICKER, &v2_path).unwrap();
    let v2 = format!("file:{}", v2_path.display());
    kubectl.ok(&["set", "image", "deployment/ticks", &format!("main={v2}")]);
    kubectl.ok(&["rollout", "status", "deployment/ticks", "--timeout=90s"]);
    let history = kubectl.ok(&["rollout", "history", "deployment/ticks"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let second = kubectl.ok(&["rollout", "history", "deployment/ticks", "--revision=2"]);
    assert!(second.contains(&v2), "{second}");
    let undone = kubectl.ok(&["rollout", "undo", "deployment/ticks"]);
    assert_eq!(undone.trim(), "deployment.apps/ticks rolled back");
    kubectl.ok(&["rollout", "status", "deployment/ticks", "--timeout=90s"]);
    assert_eq!(image_of_ticks(&kubectl), ticker());
    let history = kubectl.ok(&["rollout", "history", "deployment/ticks"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 "),
        "{history}"
    );

    // --cascade=orphan leaves the ReplicaSets and their pods; --cascade=foreground
    // returns once they are gone.
    kubectl.ok(&["delete", "deployment", "ticks", "--cascade=orphan"]);
    let orphans = kubectl.ok(&["get", "replicasets", "-l", "app=ticks", "-o", "name"]);
    assert_eq!(orphans.lines().count(), 2, "{orphans}");
    let owners = kubectl.ok(&[
        "get",
        "replicasets",
        "-l",
        "app=ticks",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences}",
    ]);
    assert_eq!(owners.trim(), "", "orphans keep no owner: {owners}");
    kubectl.ok(&[
        "delete",
        "replicasets",
        "-l",
        "app=ticks",
        "--cascade=foreground",
        "--timeout=90s",
    ]);
    let left = kubectl.run(&["get", "pods", "-l", "app=ticks", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

#[test]
fn logs_previous_shows_the_run_before_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    let pod = format!(
        "\
apiVersion: v1
kind: Pod
metadata: {{ name: crasher }}
spec:
  restartPolicy: Always
  containers:
  - name: main
    image: file:{}
",
        skiff_samples::CRASHER
    );
    kubectl.ok_with_input(&["create", "-f", "-"], &pod);
    crate::support::wait_for("a restart of the crasher", Duration::from_secs(60), || {
        let count = kubectl.ok(&[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        count.trim().parse::<u32>().is_ok_and(|n| n >= 1)
    });
    let previous = kubectl.ok(&["logs", "crasher", "--previous"]);
    assert_eq!(previous, "crasher starting\ncrasher exiting with 3\n");
    let described = kubectl.ok(&["describe", "pod", "crasher"]);
    assert!(described.contains("Last State:"), "{described}");
    assert!(described.contains("Exit Code:    3"), "{described}");
}
