//! `skiff bench api`: creates per second with 1 and 64 clients (p50/p99 latency), and
//! watch fan-out to 100 watchers, against a real API server on loopback with a
//! durable sled store. `scheduler`, `pods`, `rollout` and `node-death` measure binding,
//! pod start, a Deployment's rolling update and the replacement of a dead node's pods;
//! `network` the pod network against direct hosting and host loopback. Each prints its
//! conditions and figures.

mod network;
#[cfg(feature = "etcd")]
mod store;

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
    /// A rolling update of a Deployment to a new version, on a real node.
    Rollout(RolloutBenchArgs),
    /// A node agent killed: how long until its replicas run on the node that is left.
    NodeDeath(NodeDeathBenchArgs),
    /// The pod network: HTTP through Services, node ports and across nodes against direct
    /// hosting, and pod-to-pod TCP throughput against host loopback.
    Network(network::NetworkBenchArgs),
    /// The sled store beside etcd: creates per second and latency, on the store alone and
    /// through an API server (built with `--features etcd`).
    #[cfg(feature = "etcd")]
    Store(store::StoreBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct RolloutBenchArgs {
    /// The module the pods run: an idle long-running one, such as the `ticker` sample.
    #[arg(long)]
    pub module: std::path::PathBuf,
    /// Replicas of the Deployment.
    #[arg(long, default_value = "100")]
    pub replicas: u32,
    /// The rolling update's maxSurge (a number or a percentage).
    #[arg(long, default_value = "25%")]
    pub max_surge: String,
    /// The rolling update's maxUnavailable (a number or a percentage).
    #[arg(long, default_value = "25%")]
    pub max_unavailable: String,
    /// Rollouts measured one after the other, each to a new version.
    #[arg(long, default_value = "5", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
}

#[derive(clap::Args, Debug)]
pub struct NodeDeathBenchArgs {
    /// The module the pods run: an idle long-running one, such as the `ticker` sample.
    #[arg(long)]
    pub module: std::path::PathBuf,
    /// Replicas of the Deployment spread over the two nodes.
    #[arg(long, default_value = "20")]
    pub replicas: u32,
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
        BenchTarget::Rollout(args) => rollout(args).await,
        BenchTarget::NodeDeath(args) => node_death(args).await,
        BenchTarget::Network(args) => network::network(args).await,
        #[cfg(feature = "etcd")]
        BenchTarget::Store(args) => store::store(args).await,
    }
}

/// An API server over a fresh sled store in a temporary directory, on loopback.
struct BenchServer {
    server: Arc<ApiServer>,
    base: String,
    dir: tempfile::TempDir,
}

/// A node's share of the pod range in the benches, as `skiff server`'s default.
const DEFAULT_NODE_MASK: u8 = 20;

/// An API server on loopback over a durable store in a temporary directory; each node it
/// registers gets a `/node_cidr_mask_size` of the pod range.
async fn start_server(node_cidr_mask_size: u8) -> Result<BenchServer> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut auth = Authenticator::default();
    // An administrator: the benches' clients, controllers and nodes all use this token.
    let user = User {
        name: "bench".into(),
        groups: vec!["system:masters".into()],
    };
    auth.add_token(TOKEN, user);
    let config = ApiServerConfig {
        ranges: skiff_control_plane::apiserver::allocator::Ranges {
            node_cidr_mask_size,
            ..Default::default()
        },
        // Nodes join with the administrator's token and get their own credentials,
        // with the tokens for their APIs (logs) and the fabric between them.
        node_key: Some(skiff_control_plane::apiserver::credentials::NodeKey::generate()),
        ..ApiServerConfig::default()
    };
    let server = ApiServer::new(Arc::new(store), auth, config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(BenchServer { server, base, dir })
}

async fn api(args: ApiBenchArgs) -> Result<()> {
    let BenchServer { server, base, dir } = start_server(DEFAULT_NODE_MASK).await?;

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
    } = start_server(DEFAULT_NODE_MASK).await?;
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
                // A range of its own, so the server's default pod range (16 nodes) is
                // no limit on how many fake nodes register.
                "spec": { "podCIDR": format!("100.{}.{}.0/24", 64 + i / 256, i % 256) },
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
    // When the first binding showed: what comes before is start-up (informer sync).
    let mut first_bound = None;
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
                first_bound.get_or_insert_with(|| started.elapsed());
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
    let first = first_bound.unwrap_or_default();
    println!(
        "first binding {:.2} s after the scheduler started (informer sync); from then on {:.0} binds/s",
        first.as_secs_f64(),
        (args.pods.saturating_sub(1)) as f64 / (elapsed - first).as_secs_f64().max(1e-9)
    );
    Ok(())
}

async fn pods(args: PodsBenchArgs) -> Result<()> {
    let module = args
        .module
        .canonicalize()
        .with_context(|| format!("--module {}", args.module.display()))?;
    // Its one node may take the whole pod range: a density run goes far past a /20's
    // 4,094 addresses.
    let BenchServer { server, base, dir } = start_server(16).await?;
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
    let mut node_config = skiff_node::NodeConfig::new("bench-node", dir.path().join("node"));
    node_config.max_pods = node_config
        .max_pods
        .max((args.burst + args.sequential + 1) as u32);
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

/// How this binary was built, for the conditions line: debug builds are several times
/// slower.
fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `3` as a number, `25%` as a string: an IntOrString of a rolling update.
fn int_or_string(text: &str) -> serde_json::Value {
    match text.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(text),
    }
}

/// A Deployment `name` of `replicas` idle pods of `module` labelled `app=NAME`, with
/// `VERSION` in their environment: a new version is a new template.
fn bench_deployment(
    name: &str,
    replicas: u32,
    module: &std::path::Path,
    version: &str,
    strategy: &serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "strategy": strategy,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "main", "image": format!("file:{}", module.display()),
                    "env": [
                        { "name": "TICK_MS", "value": "3600000" },
                        { "name": "VERSION", "value": version },
                    ],
                }] },
            },
        },
    })
}

/// Creates the Deployment `body` in the collection at `url`.
async fn create_deployment(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let response = http.post(url).bearer_auth(TOKEN).json(body).send().await?;
    if !response.status().is_success() {
        bail!("creating the deployment answered {}", response.status());
    }
    Ok(())
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let response = http.get(url).bearer_auth(TOKEN).send().await?;
    if !response.status().is_success() {
        bail!("GET {url} answered {}", response.status());
    }
    Ok(response.json().await?)
}

fn pod_is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn pod_is_terminating(pod: &serde_json::Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

/// The `VERSION` a pod of [`bench_deployment`] runs.
fn pod_version(pod: &serde_json::Value) -> &str {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "VERSION")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_default()
}

/// Whether the Deployment reports its rollout done: its spec observed and every
/// replica updated and available, with no old one left.
fn deployment_complete(d: &serde_json::Value, replicas: u32) -> bool {
    let n = |p: &str| {
        d.pointer(p)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(-1)
    };
    let replicas = i64::from(replicas);
    n("/status/observedGeneration") >= n("/metadata/generation")
        && n("/status/updatedReplicas") == replicas
        && n("/status/replicas") == replicas
        && n("/status/availableReplicas") == replicas
}

/// Polls `check` every 100 ms until it holds; fails after `limit` saying `what`.
async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        if started.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

async fn rollout(args: RolloutBenchArgs) -> Result<()> {
    let module = args
        .module
        .canonicalize()
        .with_context(|| format!("--module {}", args.module.display()))?;
    let strategy = json!({
        "type": "RollingUpdate",
        "rollingUpdate": {
            "maxSurge": int_or_string(&args.max_surge),
            "maxUnavailable": int_or_string(&args.max_unavailable),
        },
    });
    let (surge, unavailable) = skiff_control_plane::controllers::deployment::resolve_fenceposts(
        &serde_json::from_value(strategy.clone())?,
        args.replicas as i32,
    )
    .map_err(|e| anyhow::anyhow!("--max-surge/--max-unavailable: {e}"))?;
    let BenchServer { server, base, dir } = start_server(DEFAULT_NODE_MASK).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let client = bench_client(&base)?;
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client.clone(),
        Default::default(),
    ));
    let controllers = tokio::spawn(skiff_control_plane::controllers::run(
        client.clone(),
        skiff_control_plane::controllers::ControllerConfig {
            leader_election: None,
            ..Default::default()
        },
    ));
    let runtime = skiff_runtime::Runtime::new(skiff_runtime::RuntimeConfig {
        cache_dir: Some(dir.path().join("compiled")),
        max_instances: args.replicas * 2 + 16,
        ..Default::default()
    })?;
    let node_config = skiff_node::NodeConfig::new("bench-node", dir.path().join("node"));
    let node = tokio::spawn(skiff_node::run(node_config, client, runtime));
    println!("skiff bench rollout");
    println!(
        "conditions: API server, scheduler, controllers, one node agent and the load generator in one process ({}), {} cores, durable sled store; a Deployment of {} replicas of {} (idle), RollingUpdate with maxSurge {} and maxUnavailable {} ({surge} and {unavailable} pods), minReadySeconds 0, no probes; each new version changes an environment variable (module already compiled); pods and the Deployment read every 50 ms during a rollout",
        build_profile(),
        cores(),
        args.replicas,
        module.display(),
        args.max_surge,
        args.max_unavailable,
    );

    let name = "bench-rollout";
    let deployments = format!("{base}/apis/apps/v1/namespaces/default/deployments");
    let deployment_url = format!("{deployments}/{name}");
    let pods_url = format!("{base}/api/v1/namespaces/default/pods?labelSelector=app%3D{name}");
    create_deployment(
        &http,
        &deployments,
        &bench_deployment(name, args.replicas, &module, "v1", &strategy),
    )
    .await?;
    let scale_up = poll_until(
        "all replicas of v1 available",
        Duration::from_secs(300),
        || async {
            Ok(deployment_complete(
                &get_json(&http, &deployment_url).await?,
                args.replicas,
            ))
        },
    )
    .await?;

    let replicas = args.replicas as usize;
    let (mut max_pods, mut min_ready) = (0usize, usize::MAX);
    let (mut reported, mut finished) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        // The next version: the template's VERSION changes.
        let (old_version, version) = (format!("v{round}"), format!("v{}", round + 1));
        let mut template = get_json(&http, &deployment_url).await?["spec"]["template"].clone();
        if let Some(env) = template["spec"]["containers"][0]["env"].as_array_mut() {
            for var in env.iter_mut().filter(|e| e["name"] == "VERSION") {
                var["value"] = json!(version);
            }
        }
        let started = Instant::now();
        let response = http
            .patch(&deployment_url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/merge-patch+json")
            .json(&json!({ "spec": { "template": template } }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("changing the template answered {}", response.status());
        }
        let mut reported_complete = None;
        let mut last_report = Instant::now();
        let done = loop {
            let list = get_json(&http, &pods_url).await?;
            let pods = list["items"].as_array().cloned().unwrap_or_default();
            let live: Vec<&serde_json::Value> =
                pods.iter().filter(|p| !pod_is_terminating(p)).collect();
            let ready = live.iter().filter(|p| pod_is_ready(p)).count();
            let new_ready = live
                .iter()
                .filter(|p| pod_version(p) == version && pod_is_ready(p))
                .count();
            let old = pods
                .iter()
                .filter(|p| pod_version(p) == old_version)
                .count();
            max_pods = max_pods.max(live.len());
            min_ready = min_ready.min(ready);
            if reported_complete.is_none()
                && deployment_complete(&get_json(&http, &deployment_url).await?, args.replicas)
            {
                reported_complete = Some(started.elapsed());
            }
            if new_ready == replicas && old == 0 && live.len() == replicas {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!(
                    "the rollout to {version} did not finish within 600 s ({new_ready} of {replicas} new replicas ready, {old} old pods left)"
                );
            }
            if last_report.elapsed() > Duration::from_secs(2) {
                eprintln!("... {new_ready} of {replicas} new replicas ready, {old} old pods left");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The Deployment reports done at the latest when its pods show it.
        reported.push(reported_complete.unwrap_or(done));
        finished.push(done);
    }
    let row = |what: &str, samples: &mut Vec<Duration>| {
        samples.sort_unstable();
        let median = samples[samples.len() / 2];
        println!(
            "| {what} | {} | {:.2} | {:.2} | {:.2} | {:.1} |",
            samples.len(),
            samples[0].as_secs_f64(),
            median.as_secs_f64(),
            samples[samples.len() - 1].as_secs_f64(),
            replicas as f64 / median.as_secs_f64()
        );
    };
    println!();
    println!("| measurement | runs | min s | median s | max s | replicas/s (median) |");
    println!("|---|---|---|---|---|---|");
    row(
        &format!("scale-up from 0 to {replicas} available (the first start compiles the module)"),
        &mut vec![scale_up],
    );
    row(
        "rollout: template change to the Deployment reporting complete",
        &mut reported,
    );
    row(
        &format!(
            "rollout: template change to all {replicas} new replicas ready and every old pod gone"
        ),
        &mut finished,
    );
    println!(
        "during the rollouts: at most {max_pods} pods not terminating (bound {}), at least {min_ready} ready (bound {})",
        replicas + surge as usize,
        replicas.saturating_sub(unavailable as usize)
    );
    node.abort();
    controllers.abort();
    scheduler.abort();
    server.close_watches();
    Ok(())
}

async fn node_death(args: NodeDeathBenchArgs) -> Result<()> {
    let module = args
        .module
        .canonicalize()
        .with_context(|| format!("--module {}", args.module.display()))?;
    let BenchServer { server, base, dir } = start_server(DEFAULT_NODE_MASK).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let client = bench_client(&base)?;
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client.clone(),
        Default::default(),
    ));
    let config = skiff_control_plane::controllers::ControllerConfig {
        leader_election: None,
        ..Default::default()
    };
    let lifecycle = config.node_lifecycle;
    let controllers = tokio::spawn(skiff_control_plane::controllers::run(client, config));
    // Real node agents, so that one can die as a process dies.
    let exe = std::env::current_exe().context("finding the skiff binary")?;
    let names = ["bench-node-a", "bench-node-b"];
    let mut agents = Vec::new();
    for name in names {
        let agent = tokio::process::Command::new(&exe)
            .args(["node", "--server", &base, "--name", name, "--data-dir"])
            .arg(dir.path().join(name))
            .env("SKIFF_JOIN_TOKEN", TOKEN)
            .env("SKIFF_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a node agent")?;
        agents.push(agent);
    }
    let node_ready = |node: &serde_json::Value| {
        node["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let nodes_url = format!("{base}/api/v1/nodes");
    poll_until("both nodes Ready", Duration::from_secs(60), || async {
        let nodes = get_json(&http, &nodes_url).await?;
        Ok(nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| node_ready(n))
            .count()
            == 2)
    })
    .await?;

    let name = "bench-node-death";
    let replicas = args.replicas as usize;
    let pods_url = format!("{base}/api/v1/namespaces/default/pods?labelSelector=app%3D{name}");
    let strategy = json!({ "type": "RollingUpdate" });
    create_deployment(
        &http,
        &format!("{base}/apis/apps/v1/namespaces/default/deployments"),
        &bench_deployment(name, args.replicas, &module, "v1", &strategy),
    )
    .await?;
    // Live Running pods per node.
    let placement = || async {
        let list = get_json(&http, &pods_url).await?;
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for pod in list["items"].as_array().into_iter().flatten() {
            if !pod_is_terminating(pod) && pod["status"]["phase"] == "Running" {
                let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
                *per_node.entry(node.to_string()).or_default() += 1;
            }
        }
        Ok::<_, anyhow::Error>(per_node)
    };
    poll_until(
        "every replica Running",
        Duration::from_secs(120),
        || async { Ok(placement().await?.values().sum::<usize>() == replicas) },
    )
    .await?;
    let before = placement().await?;
    let (victim, victim_pods) = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i, before.get(*n).copied().unwrap_or(0)))
        .max_by_key(|&(_, count)| count)
        .context("no node")?;
    if victim_pods == 0 {
        bail!("no replica runs on either node");
    }
    let survivor = names[1 - victim];
    println!("skiff bench node-death");
    println!(
        "conditions: API server, scheduler and controllers in one process, two `skiff node` processes on the same machine ({}), {} cores, durable sled store; a Deployment of {replicas} replicas of {} (idle), {} on {} and {} on {survivor}; {} killed with SIGKILL; default node lifecycle: monitor every {:?}, grace {:?}, eviction {:?} after the unreachable taint; node and pods read every 100 ms",
        build_profile(),
        cores(),
        module.display(),
        victim_pods,
        names[victim],
        replicas - victim_pods,
        names[victim],
        lifecycle.monitor_period,
        lifecycle.monitor_grace,
        lifecycle.pod_eviction_timeout,
    );
    let victim_url = format!("{nodes_url}/{}", names[victim]);
    let killed = Instant::now();
    agents[victim].start_kill()?;
    agents[victim].wait().await?;
    let (mut not_ready_at, mut first_eviction_at) = (None, None);
    let mut last_report = Instant::now();
    let all_running = loop {
        if not_ready_at.is_none() && !node_ready(&get_json(&http, &victim_url).await?) {
            not_ready_at = Some(killed.elapsed());
        }
        let per_node = placement().await?;
        let on_victim = per_node.get(names[victim]).copied().unwrap_or(0);
        let on_survivor = per_node.get(survivor).copied().unwrap_or(0);
        if first_eviction_at.is_none() && on_victim < victim_pods {
            first_eviction_at = Some(killed.elapsed());
        }
        if on_victim == 0 && on_survivor == replicas {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(300) {
            bail!(
                "{on_survivor} of {replicas} replicas Running on {survivor} 300 s after the kill"
            );
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("... {on_survivor} of {replicas} replicas Running on {survivor}");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
    println!();
    println!("| after the kill | seconds |");
    println!("|---|---|");
    println!("| node marked not Ready | {} |", seconds(not_ready_at));
    println!(
        "| first of its pods evicted | {} |",
        seconds(first_eviction_at)
    );
    println!(
        "| all {replicas} replicas Running on {survivor} ({victim_pods} replaced) | {:.2} |",
        all_running.as_secs_f64()
    );
    drop(agents);
    controllers.abort();
    scheduler.abort();
    server.close_watches();
    Ok(())
}
