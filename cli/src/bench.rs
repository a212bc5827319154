//! `skiff bench api`: creates per second with 1 and 64 clients (p50/p99 latency), and
//! watch fan-out to 100 watchers, against a real API server on loopback with a
//! durable sled store. Prints its conditions and figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::json;
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::sled::SledStore;

/// Options of `skiff bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchTarget {
    /// The API server and its store.
    Api(ApiBenchArgs),
    /// The scheduler: binds per second against many fake nodes.
    Scheduler(SchedulerBenchArgs),
    /// Pods on a real node: create-to-Running latency, one at a time and in a burst.
    Pods(PodsBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct PodsBenchArgs {
    /// The module the pods run: an idle long-running one, such as the `ticker` sample.
    #[arg(long)]
    pub module: std::path::PathBuf,
    /// Pods created one after the other (each waits for the previous to run).
    #[arg(long, default_value = "20")]
    pub sequential: usize,
    /// Pods created at once.
    #[arg(long, default_value = "1000")]
    pub burst: usize,
}

#[derive(clap::Args, Debug)]
pub struct SchedulerBenchArgs {
    /// Fake nodes registered (Ready, 64 CPUs, 256 GiB, 10,000 pods each).
    #[arg(long, default_value = "1000")]
    pub nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value = "10000")]
    pub pods: usize,
}

#[derive(clap::Args, Debug)]
pub struct ApiBenchArgs {
    /// Creates per concurrency level.
    #[arg(long, default_value = "4000")]
    pub creates: usize,
    /// Concurrency levels to measure, comma-separated.
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value = "100")]
    pub watchers: usize,
    /// Objects written while the watchers listen.
    #[arg(long, default_value = "500")]
    pub watch_events: usize,
}

const TOKEN: &str = "bench-token";

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        BenchTarget::Api(args) => api(args).await,
        BenchTarget::Scheduler(args) => scheduler(args).await,
        BenchTarget::Pods(args) => pods(args).await,
    }
}

/// An API server over a fresh sled store in a temporary directory, on loopback.
struct BenchServer {
    server: Arc<ApiServer>,
    base: String,
    dir: tempfile::TempDir,
}

async fn start_server() -> Result<BenchServer> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut auth = Authenticator::default();
    let user = User {
        name: "bench".into(),
        groups: vec![],
    };
    auth.add_token(TOKEN, user);
    let server = ApiServer::new(Arc::new(store), auth, ApiServerConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(BenchServer { server, base, dir })
}

async fn api(args: ApiBenchArgs) -> Result<()> {
    let BenchServer { server, base, dir } = start_server().await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    println!("skiff bench api");
    println!(
        "conditions: API server and clients in one process on loopback HTTP/1.1, {} cores, sled store in {} (every acknowledged write flushed to disk), {} creates per level",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        dir.path().display(),
        args.creates
    );
    println!();
    println!("| clients | creates/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (level, &clients) in args.clients.iter().enumerate() {
        if clients == 0 {
            bail!("--clients: a concurrency level must be at least 1");
        }
        let namespace = format!("bench-{level}");
        create_namespace(&http, &base, &namespace).await?;
        let per_client = args.creates.div_ceil(clients);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let http = http.clone();
            let url = format!("{base}/api/v1/namespaces/{namespace}/configmaps");
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let body = json!({ "metadata": { "name": format!("c{c}-{i}"), "labels": { "bench": "api" } }, "data": { "k": "v" } });
                    let sent = Instant::now();
                    let response = http.post(&url).bearer_auth(TOKEN).json(&body).send().await?;
                    if response.status() != reqwest::StatusCode::CREATED {
                        bail!("create answered {}: {}", response.status(), response.text().await.unwrap_or_default());
                    }
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        let (p50, p99, max) = percentiles(&mut latencies);
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.2} |",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max)
        );
    }

    // Watch fan-out: every watcher must see every event.
    let namespace = "bench-watch";
    create_namespace(&http, &base, namespace).await?;
    let url = format!("{base}/api/v1/namespaces/{namespace}/configmaps");
    let list: serde_json::Value = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let response = http
            .get(format!("{url}?watch=1&resourceVersion={from}"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        let sent_at = sent_at.clone();
        let expected = args.watch_events;
        watchers.push(tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = Vec::new();
            let mut delays = Vec::with_capacity(expected);
            while delays.len() < expected {
                let chunk = match tokio::time::timeout(Duration::from_secs(30), body.next()).await {
                    Ok(Some(chunk)) => chunk?,
                    _ => bail!("watch ended after {} of {expected} events", delays.len()),
                };
                buffer.extend_from_slice(&chunk);
                while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=pos).collect();
                    let event: serde_json::Value = serde_json::from_slice(&line)?;
                    let name = event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let sent = sent_at.lock().expect("not poisoned").get(&name).copied();
                    if let Some(sent) = sent {
                        delays.push(sent.elapsed());
                    }
                }
            }
            Ok::<_, anyhow::Error>(delays)
        }));
    }
    let started = Instant::now();
    for i in 0..args.watch_events {
        let name = format!("w{i}");
        sent_at
            .lock()
            .expect("not poisoned")
            .insert(name.clone(), Instant::now());
        let body = json!({ "metadata": { "name": name }, "data": { "k": "v" } });
        let response = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("create answered {}", response.status());
        }
    }
    let mut delays = Vec::new();
    for watcher in watchers {
        delays.extend(watcher.await??);
    }
    let elapsed = started.elapsed();
    let (p50, p99, max) = percentiles(&mut delays);
    println!();
    println!(
        "watch fan-out: {} watchers x {} events (written one at a time) = {} deliveries in {:.2} s ({:.0} deliveries/s)",
        args.watchers,
        args.watch_events,
        delays.len(),
        elapsed.as_secs_f64(),
        delays.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "write-to-delivery latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(p50),
        ms(p99),
        ms(max)
    );
    server.close_watches();
    Ok(())
}

async fn scheduler(args: SchedulerBenchArgs) -> Result<()> {
    let BenchServer {
        server,
        base,
        dir: _dir,
    } = start_server().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    println!("skiff bench scheduler");
    println!(
        "conditions: API server, scheduler and load generator in one process on loopback HTTP/1.1, {} cores, durable sled store; {} fake Ready nodes, {} pending pods (100m CPU, 64Mi each) created before the scheduler starts; default scoring (least allocated), 64 bindings in flight",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.nodes,
        args.pods
    );
    let create_all = |bodies: Vec<(String, serde_json::Value)>| {
        let http = http.clone();
        async move {
            let bodies = Arc::new(Mutex::new(bodies));
            let mut tasks = Vec::new();
            for _ in 0..32 {
                let http = http.clone();
                let bodies = bodies.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let next = bodies.lock().expect("not poisoned").pop();
                        let Some((url, body)) = next else {
                            return Ok::<_, anyhow::Error>(());
                        };
                        let response = http
                            .post(&url)
                            .bearer_auth(TOKEN)
                            .json(&body)
                            .send()
                            .await?;
                        if !response.status().is_success() {
                            bail!(
                                "create answered {}: {}",
                                response.status(),
                                response.text().await.unwrap_or_default()
                            );
                        }
                    }
                }));
            }
            for task in tasks {
                task.await??;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let nodes: Vec<_> = (0..args.nodes)
        .map(|i| {
            let body = json!({
                "metadata": { "name": format!("node-{i:05}") },
                "status": {
                    "allocatable": { "cpu": "64", "memory": "256Gi", "pods": "10000" },
                    "conditions": [{ "type": "Ready", "status": "True" }],
                },
            });
            (format!("{base}/api/v1/nodes"), body)
        })
        .collect();
    create_all(nodes).await?;
    let pods: Vec<_> = (0..args.pods)
        .map(|i| {
            let body = json!({
                "metadata": { "name": format!("pod-{i:06}") },
                "spec": { "containers": [{ "name": "c", "image": "hello.wasm", "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } }] },
            });
            (format!("{base}/api/v1/namespaces/default/pods"), body)
        })
        .collect();
    create_all(pods).await?;
    println!("created {} nodes and {} pods", args.nodes, args.pods);

    // Count bindings through a watch that started before the scheduler.
    let response = watch_from_now(&http, &format!("{base}/api/v1/pods")).await?;
    let client = bench_client(&base)?;
    let started = Instant::now();
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client,
        Default::default(),
    ));
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut bound = std::collections::HashSet::new();
    let mut last_report = Instant::now();
    while bound.len() < args.pods {
        let chunk = match tokio::time::timeout(Duration::from_secs(60), body.next()).await {
            Ok(Some(chunk)) => chunk?,
            _ => bail!(
                "the watch ended with {} of {} pods bound",
                bound.len(),
                args.pods
            ),
        };
        buffer.extend_from_slice(&chunk);
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let event: serde_json::Value = serde_json::from_slice(&line)?;
            if event["object"]["spec"]["nodeName"].is_string() {
                bound.insert(
                    event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("... {} of {} pods bound", bound.len(), args.pods);
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    scheduler.abort();
    server.close_watches();
    println!(
        "bound {} pods to {} nodes in {:.2} s: {:.0} binds/s (scheduler start, informer sync and every binding through the API included)",
        args.pods,
        args.nodes,
        elapsed.as_secs_f64(),
        args.pods as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

async fn pods(args: PodsBenchArgs) -> Result<()> {
    let module = args
        .module
        .canonicalize()
        .with_context(|| format!("--module {}", args.module.display()))?;
    let BenchServer { server, base, dir } = start_server().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let client = bench_client(&base)?;
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client.clone(),
        Default::default(),
    ));
    let runtime = skiff_runtime::Runtime::new(skiff_runtime::RuntimeConfig {
        cache_dir: Some(dir.path().join("compiled")),
        max_instances: (args.burst + args.sequential + 16) as u32,
        ..Default::default()
    })?;
    let node_config = skiff_node::NodeConfig::new("bench-node", dir.path().join("node"));
    let node = tokio::spawn(skiff_node::run(node_config, client, runtime));
    println!("skiff bench pods");
    println!(
        "conditions: API server, scheduler, one node agent and the load generator in one process, {} cores, durable sled store; pods run {} (idle); latency is from the create request to the watch showing the pod Running with its container running",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        module.display()
    );
    let pods_url = format!("{base}/api/v1/namespaces/default/pods");
    let response = watch_from_now(&http, &pods_url).await?;
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (running_tx, mut running_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Duration)>();
    let watcher = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = Vec::new();
            let mut seen = std::collections::HashSet::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.extend_from_slice(&chunk);
                while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=pos).collect();
                    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let pod = &event["object"];
                    let running = pod["status"]["phase"] == "Running"
                        && pod["status"]["containerStatuses"][0]["state"]["running"].is_object();
                    let name = pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if running && seen.insert(name.clone()) {
                        let sent = sent_at.lock().expect("not poisoned").get(&name).copied();
                        if let Some(sent) = sent {
                            let _ = running_tx.send((name, sent.elapsed()));
                        }
                    }
                }
            }
        })
    };
    // One at a time: the module is compiled by the first and cached for the rest.
    let mut sequential = Vec::new();
    for i in 0..=args.sequential {
        let name = format!("one-{i:04}");
        sent_at
            .lock()
            .expect("not poisoned")
            .insert(name.clone(), Instant::now());
        let response = http
            .post(&pods_url)
            .bearer_auth(TOKEN)
            .json(&idle_pod(&name, &module))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("create answered {}", response.status());
        }
        let (_, latency) = tokio::time::timeout(Duration::from_secs(60), running_rx.recv())
            .await
            .context("a pod did not run within 60 s")?
            .context("the watch ended")?;
        if i > 0 {
            sequential.push(latency);
        }
    }
    let (p50, p99, max) = percentiles(&mut sequential);
    println!();
    println!("| measurement | pods | p50 ms | p99 ms | max ms | wall s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| one pod at a time (warm module cache) | {} | {:.1} | {:.1} | {:.1} | - |",
        sequential.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );

    let rss_before = rss_bytes();
    let started = Instant::now();
    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i:05}")).collect();
    let queue = Arc::new(Mutex::new(names.clone()));
    let mut creators = Vec::new();
    for _ in 0..32 {
        let http = http.clone();
        let queue = queue.clone();
        let sent_at = sent_at.clone();
        let pods_url = pods_url.clone();
        let module = module.clone();
        creators.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("not poisoned").pop();
                let Some(name) = next else {
                    return Ok::<_, anyhow::Error>(());
                };
                let body = idle_pod(&name, &module);
                sent_at
                    .lock()
                    .expect("not poisoned")
                    .insert(name.clone(), Instant::now());
                let response = http
                    .post(&pods_url)
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("create answered {}", response.status());
                }
            }
        }));
    }
    for creator in creators {
        creator.await??;
    }
    let mut burst = Vec::with_capacity(args.burst);
    let mut last_report = Instant::now();
    while burst.len() < args.burst {
        let (_, latency) = tokio::time::timeout(Duration::from_secs(120), running_rx.recv())
            .await
            .with_context(|| {
                format!(
                    "only {} of {} burst pods ran within 120 s",
                    burst.len(),
                    args.burst
                )
            })?
            .context("the watch ended")?;
        burst.push(latency);
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("... {} of {} pods Running", burst.len(), args.burst);
            last_report = Instant::now();
        }
    }
    let wall = started.elapsed();
    let (p50, p99, max) = percentiles(&mut burst);
    println!(
        "| burst of {} pods created at once | {} | {:.1} | {:.1} | {:.1} | {:.2} |",
        args.burst,
        burst.len(),
        ms(p50),
        ms(p99),
        ms(max),
        wall.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        println!(
            "process memory grew {:.1} MiB for {} running pods: {:.1} KiB per pod (node, API server and watch caches included)",
            (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
            args.burst,
            (after.saturating_sub(before)) as f64 / 1024.0 / args.burst as f64
        );
    }
    watcher.abort();
    node.abort();
    scheduler.abort();
    server.close_watches();
    Ok(())
}

/// A watch of `url` from its current state: every change after now.
async fn watch_from_now(http: &reqwest::Client, url: &str) -> Result<reqwest::Response> {
    let list: serde_json::Value = http
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?;
    Ok(http
        .get(format!("{url}?watch=1&resourceVersion={from}"))
        .bearer_auth(TOKEN)
        .send()
        .await?)
}

/// A client of the bench's server, as the scheduler and the node use.
fn bench_client(base: &str) -> Result<skiff_client::Client> {
    let mut config = skiff_client::Config::new(base)?;
    config.token = Some(TOKEN.into());
    Ok(skiff_client::Client::new(config)?)
}

/// A pod running `module` that sits idle (a tick an hour).
fn idle_pod(name: &str, module: &std::path::Path) -> serde_json::Value {
    json!({
        "metadata": { "name": name },
        "spec": { "containers": [{
            "name": "main", "image": format!("file:{}", module.display()),
            "env": [{ "name": "TICK_MS", "value": "3600000" }],
        }] },
    })
}

/// Resident memory of this process, from /proc where there is one.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

async fn create_namespace(http: &reqwest::Client, base: &str, name: &str) -> Result<()> {
    let response = http
        .post(format!("{base}/api/v1/namespaces"))
        .bearer_auth(TOKEN)
        .json(&json!({ "metadata": { "name": name } }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("creating namespace {name}: {}", response.status());
    }
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    if samples.is_empty() {
        return Default::default();
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
