//! Starting and stopping real `skiff` processes, and talking to them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `skiff server` process with its own data directory; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// The join token nodes started by [`NodeProcess::start`] share, made on first use.
    join_token: std::sync::OnceLock<String>,
}

impl Server {
    /// Starts `skiff server` on a free loopback port over `data_dir` and waits until it
    /// answers `/readyz`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts `skiff server` with extra arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skiff server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("skiff server listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("skiff server did not report its address in 60 s");
        let kubeconfig =
            std::fs::read_to_string(data_dir.join("kubeconfig")).expect("kubeconfig written");
        let token = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .expect("kubeconfig has a token")
            .trim_matches('\'')
            .to_string();
        let server = Server {
            child,
            url,
            token,
            data_dir: data_dir.to_path_buf(),
            join_token: std::sync::OnceLock::new(),
        };
        wait_for("the server to be ready", Duration::from_secs(30), || {
            server
                .client()
                .get(format!("{}/readyz", server.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        server
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GETs an API path as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let response = self
            .client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .expect("GET");
        response.json().expect("JSON answer")
    }

    /// Sends `body` with `method` to an API path; returns the status code and JSON answer.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(serde_json::Value::Null))
    }

    /// Runs the CLI against this server, as its administrator (the kubeconfig it wrote).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--kubeconfig")
            .arg(self.data_dir.join("kubeconfig"))
            .args(args)
            .output()
            .expect("run skiff")
    }

    /// A join token for nodes, made as an operator makes one: `skiff token create`.
    pub fn join_token(&self) -> &str {
        self.join_token.get_or_init(|| {
            let out = self.cli(&["token", "create", "--ttl", "1h"]);
            assert!(out.status.success(), "skiff token create: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
    }

    /// The cluster CA's certificate file, which `--certificate-authority` takes.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("pki").join("ca.crt")
    }

    /// An HTTP client trusting the cluster CA (and nothing else).
    pub fn client(&self) -> reqwest::blocking::Client {
        let pem = std::fs::read(self.ca_file()).expect("the cluster CA is written");
        let ca = reqwest::Certificate::from_pem(&pem).expect("the cluster CA is PEM");
        reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }
}

/// A cluster in `dir`: `skiff server` with its embedded node named `node-0` and
/// `nodes - 1` more `skiff node` processes (`node-1`, ...), once every node has its pod range.
pub fn start_cluster(dir: &Path, nodes: usize) -> (Server, Vec<NodeProcess>) {
    let server = Server::start_with(&dir.join("server"), &["--name", "node-0"]);
    let others = (1..nodes)
        .map(|i| {
            let name = format!("node-{i}");
            NodeProcess::start(&server, &name, &dir.join(&name), &[])
        })
        .collect();
    wait_for(
        &format!("{nodes} nodes with pod ranges"),
        Duration::from_secs(60),
        || {
            server.get("/api/v1/nodes")["items"]
                .as_array()
                .is_some_and(|all| {
                    all.len() == nodes && all.iter().all(|n| n["spec"]["podCIDR"].is_string())
                })
        },
    );
    (server, others)
}

/// The pods of namespace `default`.
pub const PODS: &str = "/api/v1/namespaces/default/pods";

/// A container's `env` from (name, value) pairs.
pub fn env(pairs: &[(&str, &str)]) -> serde_json::Value {
    pairs
        .iter()
        .map(|(k, v)| serde_json::json!({ "name": k, "value": v }))
        .collect()
}

impl Server {
    /// POSTs `body` to `path`, which must create it.
    pub fn create(&self, path: &str, body: serde_json::Value) {
        let (status, answer) = self.send(reqwest::Method::POST, path, Some(body));
        assert_eq!(status, 201, "{answer}");
    }

    /// The log of `pod` in namespace `default` (of `container`, if given).
    pub fn logs(&self, pod: &str, container: Option<&str>) -> String {
        let query = container
            .map(|c| format!("?container={c}"))
            .unwrap_or_default();
        self.client()
            .get(format!("{}{PODS}/{pod}/log{query}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// Waits for `pod` (namespace `default`) to end, failing unless it ended in `expected`
    /// (`Succeeded` or `Failed`); returns its output and the pod.
    pub fn ended(&self, pod: &str, expected: &str) -> (String, serde_json::Value) {
        let mut last = serde_json::Value::Null;
        wait_for(&format!("{pod} to finish"), Duration::from_secs(90), || {
            last = self.get(&format!("{PODS}/{pod}"));
            matches!(
                last["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        });
        let output = self.logs(pod, None);
        assert_eq!(last["status"]["phase"], expected, "{pod}: {output}\n{last}");
        (output, last)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` until it holds, failing the test with `what` after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// A `skiff node` process joined to a server; killed when dropped.
pub struct NodeProcess {
    pub child: Child,
}

impl NodeProcess {
    /// Starts `skiff node NAME` over `data_dir`, joined to `server`, with extra arguments.
    pub fn start(server: &Server, name: &str, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let child = Self::command(server, name, data_dir)
            .args(extra)
            .env("SKIFF_JOIN_TOKEN", server.join_token())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn skiff node");
        NodeProcess { child }
    }

    /// `skiff node NAME` over `data_dir` for `server`, without a join token.
    pub fn command(server: &Server, name: &str, data_dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .args([
                "node",
                "--server",
                &server.url,
                "--name",
                name,
                "--certificate-authority",
            ])
            .arg(server.ca_file())
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("SKIFF_JOIN_TOKEN")
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null());
        command
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
