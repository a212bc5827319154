//! `skiff bench network`: the pod network against direct hosting and host loopback.
//!
//! One `skiff run` process serves the `http-hello` component on a host port, as `wasmtime
//! serve` would: that is case (a), the baseline. A cluster of an API server and controllers
//! in this process and two `skiff node` processes serves the same component as a pod on
//! node A behind a `NodePort` Service, reached (b) through its ClusterIP from pods on node
//! A, (c) from pods on node B across the fabric and (d) through the node port from this
//! process. Every HTTP case uses the same number of keep-alive connections, warm-up and
//! measured interval; the in-pod clients are `http-load` pods, one connection each (the
//! guest has no threads), which all measure the same wall-clock interval. TCP throughput is
//! one `http-load` pod streaming into a `tcp-echo SINK=1` pod on the same node and across
//! nodes, against plain tokio TCP over the host's loopback in this process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{
    BenchServer, DEFAULT_NODE_MASK, TOKEN, bench_client, build_profile, cores, get_json,
    poll_until, start_server,
};

/// Options of `skiff bench network`.
#[derive(clap::Args, Debug)]
pub struct NetworkBenchArgs {
    /// The directory holding the built samples `http-hello.wasm`, `tcp-echo.wasm` and
    /// `http-load.wasm` (samples-wasm's build output). Default: the newest
    /// `build/skiff-samples-*/out` beside this executable, as `cargo build -p skiff-samples`
    /// leaves it.
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
    /// Keep-alive connections of every HTTP case: tasks of this process for the cases driven
    /// from the host, client pods (one connection each) for those driven from pods.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: u32,
    /// How long every HTTP case is measured, after its warm-up.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Untimed requests on each connection before the measurement (instances, caches and
    /// connections warmed up).
    #[arg(long, default_value = "200")]
    pub warmup: u64,
    /// Rounds of the HTTP cases: each round measures every case once, one after the other;
    /// the median rate is reported.
    #[arg(long, default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Bytes each TCP throughput run sends through one connection.
    #[arg(long, default_value = "268435456")]
    pub tcp_bytes: u64,
    /// TCP throughput runs per case, one after the other (the median is reported).
    #[arg(long, default_value = "3", value_parser = clap::value_parser!(u32).range(1..))]
    pub tcp_runs: u32,
}

/// Where the cases' pods live: servers on node A, clients on A or B.
const NODE_A: &str = "bench-net-a";
const NODE_B: &str = "bench-net-b";
/// How long after its creation a client pod starts measuring: room to start every client
/// pod and run its warm-up, so that all of them measure the same interval.
const START_LEAD: Duration = Duration::from_secs(3);

pub async fn network(args: NetworkBenchArgs) -> Result<()> {
    let samples = match &args.samples {
        Some(dir) => dir.clone(),
        None => find_samples()?,
    };
    let sample = |name: &str| -> Result<PathBuf> {
        let path = samples.join(name);
        path.canonicalize()
            .with_context(|| format!("{} (--samples)", path.display()))
    };
    let (hello, echo, load) = (
        sample("http-hello.wasm")?,
        sample("tcp-echo.wasm")?,
        sample("http-load.wasm")?,
    );
    let exe = std::env::current_exe().context("finding the skiff binary")?;

    // (a) direct hosting, on loopback. Pods cannot reach it: no address of their node's
    // host is reachable from a pod.
    let direct_ip = std::net::Ipv4Addr::LOCALHOST;
    let work = tempfile::tempdir()?;
    let mut direct = tokio::process::Command::new(&exe)
        .args(["run", "--listen", &format!("{direct_ip}:0"), "--cache-dir"])
        .arg(work.path().join("run-compiled"))
        .arg(&hello)
        .env("SKIFF_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting skiff run")?;
    let mut lines = tokio::io::BufReader::new(direct.stdout.take().context("stdout")?).lines();
    let direct_addr: SocketAddr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return Ok(addr.parse()?);
            }
        }
        bail!("skiff run ended before it listened")
    })
    .await
    .context("skiff run did not listen within 120 s")??;

    // The cluster: node A first, so that it (not B, on the same host address) holds the
    // node port.
    let BenchServer { server, base, dir } = start_server(DEFAULT_NODE_MASK).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let controllers = tokio::spawn(skiff_control_plane::controllers::run(
        bench_client(&base)?,
        skiff_control_plane::controllers::ControllerConfig {
            leader_election: None,
            ..Default::default()
        },
    ));
    let mut agents = vec![start_node(&exe, &base, NODE_A, dir.path())?];
    wait_nodes(&http, &base, 1).await?;
    let pods_url = format!("{base}/api/v1/namespaces/default/pods");
    let hello_pod = json!({
        "metadata": { "name": "hello", "labels": { "app": "hello" } },
        "spec": { "nodeName": NODE_A, "containers": [{
            "name": "hello", "image": format!("file:{}", hello.display()),
            "ports": [{ "name": "http", "containerPort": 8080 }],
        }] },
    });
    let sink_pod = json!({
        "metadata": { "name": "sink" },
        "spec": { "nodeName": NODE_A, "containers": [{
            "name": "sink", "image": format!("file:{}", echo.display()),
            "env": [{ "name": "SINK", "value": "1" }],
        }] },
    });
    let service = json!({
        "metadata": { "name": "hello" },
        "spec": { "type": "NodePort", "selector": { "app": "hello" },
                  "ports": [{ "port": 80, "targetPort": "http" }] },
    });
    post(&http, &pods_url, &hello_pod).await?;
    post(&http, &pods_url, &sink_pod).await?;
    let service = post(
        &http,
        &format!("{base}/api/v1/namespaces/default/services"),
        &service,
    )
    .await?;
    let node_port = service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .context("the Service got no node port")?;
    let node_port_addr = SocketAddr::from(([127, 0, 0, 1], node_port as u16));
    poll_until(
        "the node port answering",
        Duration::from_secs(120),
        || async { Ok(host_get(node_port_addr).await.is_ok()) },
    )
    .await?;
    agents.push(start_node(&exe, &base, NODE_B, dir.path())?);
    wait_nodes(&http, &base, 2).await?;
    let hello_ip = pod_ip(&http, &base, "hello").await?;
    let sink_ip = pod_ip(&http, &base, "sink").await?;
    let mut cluster = Cluster {
        http: http.clone(),
        base: base.clone(),
        load,
        next: 0,
    };
    // The client module compiled on both nodes (and the TCP paths warmed) before anything
    // is measured.
    for node in [NODE_A, NODE_B] {
        cluster
            .tcp(node, &format!("{sink_ip}:8080"), 1 << 20)
            .await
            .with_context(|| format!("warming up {node}"))?;
    }

    println!("skiff bench network");
    println!(
        "conditions: {}, {} cores; (a) `skiff run --listen` process serving {}; a cluster of an API server and controllers in this process and two `skiff node` processes ({NODE_A} runs the server pods, {NODE_B} is the other node); http-hello served per request in a fresh instance in both. HTTP: {} keep-alive HTTP/1.1 connections per case (from the host: tasks of this process with hyper; from pods: {} `http-load` pods, one connection each), {} untimed requests per connection, then {:?} measured, {} rounds; latency to within 3% (log-linear histogram). TCP: one connection sending {} MiB in 64 KiB writes to a reader that answers at the end, {} runs per case",
        build_profile(),
        cores(),
        hello.display(),
        args.connections,
        args.connections,
        args.warmup,
        args.duration,
        args.rounds,
        args.tcp_bytes as f64 / (1024.0 * 1024.0),
        args.tcp_runs,
    );

    // Every HTTP case, each round running them all one after the other, so that a change
    // in the machine's load shows in every case alike.
    let service_name = "hello.default.svc.cluster.local:80".to_string();
    let mut cases: Vec<(String, Driver)> = vec![(
        format!("(a) direct: `skiff run` on {direct_addr}, from the host"),
        Driver::Host(direct_addr),
    )];
    cases.extend([
        (
            format!("(b) ClusterIP by DNS name, from pods on {NODE_A} (same node)"),
            Driver::Pods(NODE_A, service_name.clone()),
        ),
        (
            format!("(b') pod IP, no Service, from pods on {NODE_A} (same node)"),
            Driver::Pods(NODE_A, format!("{hello_ip}:8080")),
        ),
        (
            format!("(c) ClusterIP by DNS name, from pods on {NODE_B} (other node)"),
            Driver::Pods(NODE_B, service_name),
        ),
        (
            format!("(d) NodePort {node_port_addr} on {NODE_A}, from the host"),
            Driver::Host(node_port_addr),
        ),
    ]);
    let mut http_rows: Vec<Vec<Load>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for ((what, driver), loads) in cases.iter().zip(&mut http_rows) {
            let load = match driver {
                Driver::Host(addr) => {
                    host_load(*addr, args.connections, args.warmup, args.duration).await
                }
                Driver::Pods(node, target) => {
                    cluster
                        .http(node, target, args.connections, args.warmup, args.duration)
                        .await
                }
            }
            .with_context(|| what.clone())?;
            eprintln!("... round {round}: {what}: {:.0} requests/s", load.rate());
            loads.push(load);
        }
    }

    let mut tcp_rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..args.tcp_runs {
        runs.push(host_tcp(args.tcp_bytes).await?);
    }
    tcp_rows.push(("host loopback, tokio in this process".into(), runs));
    for (what, node) in [
        (format!("pod → pod on {NODE_A} (same node)"), NODE_A),
        (
            format!("pod on {NODE_B} → pod on {NODE_A} (fabric)"),
            NODE_B,
        ),
    ] {
        let mut runs = Vec::new();
        for _ in 0..args.tcp_runs {
            let seconds = cluster
                .tcp(node, &format!("{sink_ip}:8080"), args.tcp_bytes)
                .await
                .with_context(|| what.clone())?;
            runs.push(seconds);
        }
        tcp_rows.push((what, runs));
    }

    println!();
    println!(
        "| HTTP case | requests | errors | requests/s (median of {}) | min | max | p50 ms | p99 ms | × (a) |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let median_rate = |loads: &[Load]| {
        let mut rates: Vec<f64> = loads.iter().map(Load::rate).collect();
        rates.sort_by(f64::total_cmp);
        (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
    };
    let baseline = median_rate(&http_rows[0]).0;
    for ((what, _), loads) in cases.iter().zip(&http_rows) {
        let (median, min, max) = median_rate(loads);
        let mut histogram = Histogram::default();
        for load in loads {
            histogram.merge(&load.histogram);
        }
        println!(
            "| {what} | {} | {} | {median:.0} | {min:.0} | {max:.0} | {:.3} | {:.3} | {:.2} |",
            histogram.count(),
            loads.iter().map(|l| l.errors).sum::<u64>(),
            super::ms(histogram.quantile(0.50)),
            super::ms(histogram.quantile(0.99)),
            median / baseline
        );
        let skew = loads.iter().map(|l| l.skew).max().unwrap_or_default();
        if skew > Duration::from_millis(50) {
            println!(
                "note: {what}: the client pods' intervals were up to {:.0} ms apart (a late pod lowers the rate)",
                super::ms(skew)
            );
        }
    }
    println!();
    println!("| TCP case | runs | MB/s (median) | min | max | × loopback |");
    println!("|---|---|---|---|---|---|");
    let mb = |seconds: f64| args.tcp_bytes as f64 / 1e6 / seconds;
    let mut baseline = None;
    for (what, runs) in &mut tcp_rows {
        runs.sort_by(f64::total_cmp);
        let median = mb(runs[runs.len() / 2]);
        let baseline = *baseline.get_or_insert(median);
        println!(
            "| {what} | {} | {median:.0} | {:.0} | {:.0} | {:.2} |",
            runs.len(),
            mb(runs[runs.len() - 1]),
            mb(runs[0]),
            median / baseline
        );
    }

    drop(agents);
    drop(direct);
    controllers.abort();
    server.close_watches();
    Ok(())
}

/// The newest samples build beside this executable (`target/PROFILE/build/skiff-samples-*/out`).
fn find_samples() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut found: Vec<(SystemTime, PathBuf)> = Vec::new();
    for profile_dir in exe.ancestors().skip(1).take(2) {
        let Ok(entries) = std::fs::read_dir(profile_dir.join("build")) else {
            continue;
        };
        for entry in entries.flatten() {
            let out = entry.path().join("out");
            let marker = out.join("http-load.wasm");
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("skiff-samples-")
                && let Ok(modified) = marker.metadata().and_then(|m| m.modified())
            {
                found.push((modified, out));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, dir)| dir).context(
        "no built samples beside this executable: build them (`cargo build --release -p skiff-samples`) or pass --samples DIR",
    )
}

/// Starts a `skiff node` process called `name`, killed when dropped.
fn start_node(exe: &Path, base: &str, name: &str, dir: &Path) -> Result<tokio::process::Child> {
    tokio::process::Command::new(exe)
        .args(["node", "--server", base, "--name", name, "--data-dir"])
        .arg(dir.join(name))
        .env("SKIFF_JOIN_TOKEN", TOKEN)
        .env("SKIFF_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {name}"))
}

/// Waits until `count` nodes are Ready with a pod range.
async fn wait_nodes(http: &reqwest::Client, base: &str, count: usize) -> Result<()> {
    let url = format!("{base}/api/v1/nodes");
    poll_until(
        &format!("{count} nodes Ready"),
        Duration::from_secs(60),
        || async {
            let nodes = get_json(http, &url).await?;
            let ready = nodes["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| super::pod_is_ready(n) && n["spec"]["podCIDR"].is_string())
                .count();
            Ok(ready >= count)
        },
    )
    .await?;
    Ok(())
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let response = http.post(url).bearer_auth(TOKEN).json(body).send().await?;
    if !response.status().is_success() {
        bail!(
            "POST {url} answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(response.json().await?)
}

/// The IP of a running pod.
async fn pod_ip(http: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let url = format!("{base}/api/v1/namespaces/default/pods/{name}");
    let pod = wait_pod(http, &url, Duration::from_secs(120), |pod| {
        pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
    })
    .await?;
    Ok(pod["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Reads the pod at `url` every 100 ms until `done` holds for it; fails after `limit`.
async fn wait_pod(
    http: &reqwest::Client,
    url: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let started = Instant::now();
    loop {
        let pod = get_json(http, url).await?;
        if done(&pod) {
            return Ok(pod);
        }
        if started.elapsed() > limit {
            bail!("{url}: not done within {limit:?}: {}", pod["status"]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Who drives an HTTP case.
enum Driver {
    /// Connections from this process to a host address.
    Host(SocketAddr),
    /// Client pods on a node (by name) with a target `HOST:PORT` in the pod network.
    Pods(&'static str, String),
}

/// Runs client pods on the cluster's nodes and reads their results.
struct Cluster {
    http: reqwest::Client,
    base: String,
    /// The `http-load` sample.
    load: PathBuf,
    /// Numbers the client pods.
    next: u32,
}

impl Cluster {
    /// `connections` `http-load` pods on `node` against `target`, measuring the same
    /// interval of `duration`.
    async fn http(
        &mut self,
        node: &str,
        target: &str,
        connections: u32,
        warmup: u64,
        duration: Duration,
    ) -> Result<Load> {
        let start_at = SystemTime::now().duration_since(UNIX_EPOCH)? + START_LEAD;
        let env = [
            ("TARGET", target.to_string()),
            ("WARMUP", warmup.to_string()),
            ("DURATION_MS", duration.as_millis().to_string()),
            ("START_AT_MS", start_at.as_millis().to_string()),
        ];
        let mut names = Vec::new();
        for _ in 0..connections {
            names.push(self.create(node, &env).await?);
        }
        let mut results = Vec::new();
        for name in &names {
            let logs = self.finished(name, START_LEAD + duration).await?;
            results.push(parse_http_line(&logs).with_context(|| format!("pod {name}"))?);
        }
        Ok(Load::from_pods(&results))
    }

    /// One `http-load` pod on `node` sending `bytes` to `target`: seconds from its
    /// connection being open to the answer.
    async fn tcp(&mut self, node: &str, target: &str, bytes: u64) -> Result<f64> {
        let env = [
            ("TARGET", target.to_string()),
            ("SEND_BYTES", bytes.to_string()),
        ];
        let name = self.create(node, &env).await?;
        let logs = self.finished(&name, Duration::ZERO).await?;
        let result = parse_tcp_line(&logs).with_context(|| format!("pod {name}"))?;
        if result.answer != format!("received {bytes}") {
            bail!(
                "pod {name}: the sink answered {:?} to {bytes} bytes",
                result.answer
            );
        }
        Ok(result.elapsed.as_secs_f64())
    }

    /// Creates a client pod on `node` with `env`; returns its name.
    async fn create(&mut self, node: &str, env: &[(&str, String)]) -> Result<String> {
        self.next += 1;
        let name = format!("load-{:04}", self.next);
        let env: Vec<_> = env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        let pod = json!({
            "metadata": { "name": name },
            "spec": { "nodeName": node, "restartPolicy": "Never", "containers": [{
                "name": "load", "image": format!("file:{}", self.load.display()), "env": env,
            }] },
        });
        post(
            &self.http,
            &format!("{}/api/v1/namespaces/default/pods", self.base),
            &pod,
        )
        .await?;
        Ok(name)
    }

    /// Waits for the client pod `name` to succeed (expected to take about `expected`) and
    /// returns its log.
    async fn finished(&self, name: &str, expected: Duration) -> Result<String> {
        let url = format!("{}/api/v1/namespaces/default/pods/{name}", self.base);
        let pod = wait_pod(
            &self.http,
            &url,
            expected + Duration::from_secs(120),
            |pod| {
                matches!(
                    pod["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                )
            },
        )
        .await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let response = self
            .http
            .get(format!("{url}/log"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        let logs = response.text().await?;
        if phase != "Succeeded" {
            bail!("pod {name} failed: {logs}");
        }
        Ok(logs)
    }
}

/// One HTTP case's result, over all its connections.
#[derive(Debug, Default)]
struct Load {
    histogram: Histogram,
    errors: u64,
    /// From the first connection's start to the last one's end.
    window: Duration,
    /// How far apart the connections' starts were.
    skew: Duration,
}

impl Load {
    fn rate(&self) -> f64 {
        self.histogram.count() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn from_pods(results: &[HttpResult]) -> Load {
        let mut load = Load::default();
        for result in results {
            load.histogram.merge(&result.histogram);
            load.errors += result.errors;
        }
        let first_start = results.iter().map(|r| r.start_ms).min().unwrap_or(0);
        let last_start = results.iter().map(|r| r.start_ms).max().unwrap_or(0);
        let last_end = results.iter().map(|r| r.end_ms).max().unwrap_or(0);
        load.window = Duration::from_millis(last_end.saturating_sub(first_start));
        load.skew = Duration::from_millis(last_start - first_start);
        load
    }
}

/// Latencies in a log-linear histogram of microseconds: exact below 64 µs, then 32 to 64
/// buckets per power of two (within 3%), as the `http-load` guest keeps them.
#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    /// Count per bucket, by the bucket's lower bound.
    buckets: BTreeMap<u64, u64>,
}

impl Histogram {
    fn record(&mut self, latency: Duration) {
        *self
            .buckets
            .entry(bucket(latency.as_micros() as u64))
            .or_default() += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (lower, count) in &other.buckets {
            *self.buckets.entry(*lower).or_default() += count;
        }
    }

    fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The lower bound of the bucket holding the `q` quantile.
    fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.count() as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (lower, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(*lower);
            }
        }
        Duration::ZERO
    }
}

/// The lower bound of the bucket of `micros`: the value below 64, else the value with all
/// but its 6 highest bits cleared. Must match the `http-load` guest's `bucket`.
fn bucket(micros: u64) -> u64 {
    if micros < 64 {
        return micros;
    }
    let shift = 63 - micros.leading_zeros() - 5;
    (micros >> shift) << shift
}

/// What an `http-load` pod printed at the end of an HTTP run.
#[derive(Debug, PartialEq)]
struct HttpResult {
    errors: u64,
    start_ms: u64,
    end_ms: u64,
    histogram: Histogram,
}

/// What an `http-load` pod printed at the end of a TCP run.
#[derive(Debug, PartialEq)]
struct TcpResult {
    bytes: u64,
    elapsed: Duration,
    answer: String,
}

/// The `key=value` fields of the last line of `logs` starting with `tag`.
fn fields<'a>(logs: &'a str, tag: &str) -> Result<BTreeMap<&'a str, &'a str>> {
    let line = logs
        .lines()
        .rev()
        .find_map(|line| line.split_once(tag).map(|(_, rest)| rest))
        .with_context(|| format!("no `{}` line in its log: {logs}", tag.trim()))?;
    let mut fields = BTreeMap::new();
    // `answer=` is the last field and may contain spaces.
    let (line, answer) = match line.split_once(" answer=") {
        Some((line, answer)) => (line, Some(answer)),
        None => (line, None),
    };
    for field in line.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("{field:?} is not KEY=VALUE"))?;
        fields.insert(key, value);
    }
    if let Some(answer) = answer {
        fields.insert("answer", answer);
    }
    Ok(fields)
}

fn number(fields: &BTreeMap<&str, &str>, key: &str) -> Result<u64> {
    fields
        .get(key)
        .with_context(|| format!("no {key}="))?
        .parse()
        .with_context(|| format!("{key}= is not a number"))
}

/// Parses the `http-load requests=… hist=…` line of an `http-load` pod's log.
fn parse_http_line(logs: &str) -> Result<HttpResult> {
    let fields = fields(logs, "http-load ")?;
    let mut histogram = Histogram::default();
    let hist = fields.get("hist").context("no hist=")?;
    for pair in hist.split(',').filter(|p| !p.is_empty()) {
        let (lower, count) = pair
            .split_once(':')
            .with_context(|| format!("hist: {pair:?} is not LOWER:COUNT"))?;
        *histogram.buckets.entry(lower.parse()?).or_default() += count.parse::<u64>()?;
    }
    let requests = number(&fields, "requests")?;
    if histogram.count() != requests {
        bail!(
            "the histogram holds {} requests, the line says {requests}",
            histogram.count()
        );
    }
    Ok(HttpResult {
        errors: number(&fields, "errors")?,
        start_ms: number(&fields, "start_ms")?,
        end_ms: number(&fields, "end_ms")?,
        histogram,
    })
}

/// Parses the `tcp-load bytes=… answer=…` line of an `http-load` pod's log.
fn parse_tcp_line(logs: &str) -> Result<TcpResult> {
    let fields = fields(logs, "tcp-load ")?;
    Ok(TcpResult {
        bytes: number(&fields, "bytes")?,
        elapsed: Duration::from_micros(number(&fields, "elapsed_us")?),
        answer: fields.get("answer").unwrap_or(&"").to_string(),
    })
}

/// One GET / over a fresh connection from the host; an error unless it answers 2xx.
async fn host_get(addr: SocketAddr) -> Result<()> {
    let mut connection = HostConnection::open(addr).await?;
    connection.get().await
}

/// A keep-alive HTTP/1.1 connection from this process, with hyper.
struct HostConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: String,
}

impl HostConnection {
    async fn open(addr: SocketAddr) -> Result<HostConnection> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(HostConnection {
            sender,
            host: addr.to_string(),
        })
    }

    async fn get(&mut self) -> Result<()> {
        use http_body_util::BodyExt;
        let request = hyper::Request::get("/")
            .header(hyper::header::HOST, &self.host)
            .body(http_body_util::Empty::new())?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        if !status.is_success() {
            bail!("answered {status}");
        }
        Ok(())
    }
}

/// `connections` keep-alive connections from this process to `addr`, each warmed up with
/// `warmup` requests, then all sending requests one after the other for `duration`.
async fn host_load(
    addr: SocketAddr,
    connections: u32,
    warmup: u64,
    duration: Duration,
) -> Result<Load> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(connections as usize + 1));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let connection = async {
                let mut connection = HostConnection::open(addr).await?;
                for _ in 0..warmup {
                    connection.get().await?;
                }
                Ok::<_, anyhow::Error>(connection)
            }
            .await;
            // Everyone passes the barrier, or the others would wait for ever.
            barrier.wait().await;
            let mut connection = connection?;
            let (mut histogram, mut errors) = (Histogram::default(), 0u64);
            let began = Instant::now();
            while began.elapsed() < duration {
                let sent = Instant::now();
                match connection.get().await {
                    Ok(()) => histogram.record(sent.elapsed()),
                    Err(_) => {
                        errors += 1;
                        connection = HostConnection::open(addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((histogram, errors))
        }));
    }
    barrier.wait().await;
    let began = Instant::now();
    let mut load = Load::default();
    for task in tasks {
        let (histogram, errors) = task.await??;
        load.histogram.merge(&histogram);
        load.errors += errors;
    }
    load.window = began.elapsed();
    Ok(load)
}

/// One TCP throughput run over the host's loopback in this process, as the pods do it:
/// seconds from the connection being open to the reader's answer.
async fn host_tcp(bytes: u64) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sink = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buffer).await? {
                0 => break,
                n => total += n as u64,
            }
        }
        stream
            .write_all(format!("received {total}\n").as_bytes())
            .await?;
        Ok::<_, std::io::Error>(())
    });
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let began = Instant::now();
    let (read, mut write) = stream.into_split();
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        write.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    write.shutdown().await?;
    let mut answer = String::new();
    tokio::io::BufReader::new(read)
        .read_line(&mut answer)
        .await?;
    let elapsed = began.elapsed();
    sink.await??;
    if answer.trim_end() != format!("received {bytes}") {
        bail!("the loopback sink answered {answer:?}");
    }
    Ok(elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_six_bits() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(63), 63);
        assert_eq!(bucket(64), 64);
        assert_eq!(bucket(65), 64);
        assert_eq!(bucket(127), 126);
        assert_eq!(bucket(131), 128);
        assert_eq!(bucket(1_000_000), 999_424);
        let mut histogram = Histogram::default();
        for micros in [10, 20, 30, 40, 1000] {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.quantile(0.5), Duration::from_micros(30));
        assert_eq!(histogram.quantile(0.99), Duration::from_micros(992));
    }

    #[test]
    fn result_lines_parse() {
        let logs = "something else\nhttp-load requests=3 errors=1 elapsed_us=5000 start_ms=10 end_ms=15 hist=40:2,1024:1\n";
        let result = parse_http_line(logs).unwrap();
        assert_eq!(result.errors, 1);
        assert_eq!((result.start_ms, result.end_ms), (10, 15));
        assert_eq!(result.histogram.count(), 3);
        assert_eq!(result.histogram.quantile(0.99), Duration::from_micros(1024));
        let bad = "http-load requests=4 errors=0 elapsed_us=1 start_ms=1 end_ms=2 hist=40:2";
        assert!(parse_http_line(bad).is_err(), "counts that disagree");
        let tcp = parse_tcp_line("tcp-load bytes=10 elapsed_us=7 answer=received 10\n").unwrap();
        assert_eq!(
            tcp,
            TcpResult {
                bytes: 10,
                elapsed: Duration::from_micros(7),
                answer: "received 10".into()
            }
        );
    }

    /// A keep-alive HTTP/1.1 server on a pod's listener: answers every request with a
    /// fixed body, with a length on odd requests and chunked on even ones (both forms the
    /// guest must read).
    async fn serve(mut listener: skiff_runtime::PodListener) {
        loop {
            let (stream, _) = listener.accept().await;
            tokio::spawn(async move {
                let (read, mut write) = tokio::io::split(stream);
                let mut read = tokio::io::BufReader::new(read);
                let mut served = 0u64;
                let mut line = String::new();
                loop {
                    // The request head, up to its empty line.
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    served += 1;
                    let response: &[u8] = if served % 2 == 1 {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhello\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n3\r\nlo\n\r\n0\r\n\r\n"
                    };
                    if write.write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// Reads each connection to its end and answers `received N`, as `tcp-echo SINK=1`.
    async fn sink(mut listener: skiff_runtime::PodListener) {
        loop {
            let (mut stream, _) = listener.accept().await;
            tokio::spawn(async move {
                let mut total = 0u64;
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                    total += n as u64;
                }
                let _ = stream
                    .write_all(format!("received {total}\n").as_bytes())
                    .await;
            });
        }
    }

    /// Runs the `http-load` sample in a pod with `env`; returns its stdout.
    async fn run_load(pod: &skiff_runtime::PodNetwork, env: &[(&str, &str)]) -> String {
        let runtime = skiff_runtime::Runtime::new(skiff_runtime::RuntimeConfig {
            max_instances: 8,
            ..Default::default()
        })
        .unwrap();
        let bytes = std::fs::read(skiff_samples::HTTP_LOAD).unwrap();
        let workload =
            tokio::task::spawn_blocking(move || runtime.load(&bytes).map(|w| (runtime, w)));
        let (runtime, workload) = workload.await.unwrap().unwrap();
        let log = skiff_runtime::MemorySink::new();
        let mut spec = skiff_runtime::ContainerSpec::new("load", log.clone());
        spec.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec.network = Some(pod.clone());
        let container = runtime.start(&workload, spec).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), container.wait())
            .await
            .expect("http-load did not end within 60 s: likely deadlocked");
        let output: Vec<String> = log.lines().into_iter().map(|l| l.line).collect();
        assert_eq!(status.code(), 0, "{output:?}");
        output.join("\n")
    }

    /// The bench reads what the guest prints: the real `http-load` sample against a server
    /// in its pod, over HTTP and TCP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bench_reads_what_http_load_prints() {
        let network = skiff_runtime::VirtualNetwork::default();
        let pod = network.attach("10.244.0.5".parse().unwrap()).unwrap();
        tokio::spawn(serve(pod.listen("0.0.0.0:8080".parse().unwrap()).unwrap()));
        tokio::spawn(sink(pod.listen("0.0.0.0:9090".parse().unwrap()).unwrap()));

        let output = run_load(
            &pod,
            &[
                ("TARGET", "localhost:8080"),
                ("WARMUP", "3"),
                ("REQUESTS", "40"),
            ],
        )
        .await;
        let result = parse_http_line(&output).unwrap();
        assert_eq!(result.histogram.count(), 40, "{output}");
        assert_eq!(result.errors, 0, "{output}");
        assert!(result.start_ms <= result.end_ms);
        for lower in result.histogram.buckets.keys() {
            assert_eq!(
                bucket(*lower),
                *lower,
                "the guest buckets as the bench does"
            );
        }

        let output = run_load(
            &pod,
            &[("TARGET", "127.0.0.1:9090"), ("SEND_BYTES", "300000")],
        )
        .await;
        let result = parse_tcp_line(&output).unwrap();
        assert_eq!(result.bytes, 300_000);
        assert_eq!(result.answer, "received 300000");
    }
}
