//! `skiff bench store`: the same create load on the sled store and on etcd, side by side,
//! in one run: on the store alone (`Store::create`), and through an API server on each
//! (HTTP creates of ConfigMaps, as `skiff bench api`), at each concurrency level.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use bytes::Bytes;
use serde_json::json;
use skiff_control_plane::apiserver::auth::{Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::Store;
use skiff_control_plane::store::etcd::{EtcdStore, LocalEtcd};
use skiff_control_plane::store::sled::SledStore;

use super::{TOKEN, build_profile, cores, create_namespace, ms, percentiles};

/// Options of `skiff bench store`.
#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Creates per store, path and concurrency level.
    #[arg(long, default_value = "4000")]
    pub creates: usize,
    /// Concurrency levels to measure, comma-separated.
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// The etcd cluster to measure (client URLs, comma-separated); the bench writes under
    /// a prefix of its own (`/skiff-bench-...`) and leaves those keys behind. Without it,
    /// the bench starts a single-member etcd (`etcd` from PATH; Debian's etcd-server) in
    /// a temporary directory and stops it at the end.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
}

/// One measured row.
struct Figures {
    creates_per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

pub async fn store(args: StoreBenchArgs) -> Result<()> {
    if args.clients.contains(&0) {
        bail!("--clients: a concurrency level must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let sled_dir = dir.path().join("sled");
    let sled: Arc<dyn Store> =
        Arc::new(SledStore::open(&sled_dir).map_err(|e| anyhow::anyhow!("{e}"))?);

    let (_local, urls, etcd_conditions) = if args.etcd.is_empty() {
        let etcd_dir = dir.path().join("etcd");
        let started = etcd_dir.clone();
        let etcd = tokio::task::spawn_blocking(move || LocalEtcd::start(&started))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let conditions = format!(
            "{}, one member started by the bench on loopback, data in {} (every acknowledged write fsynced to its log)",
            etcd_version(),
            etcd_dir.display()
        );
        let urls = vec![etcd.url().to_string()];
        (Some(etcd), urls, conditions)
    } else {
        let conditions = format!("etcd at {}", args.etcd.join(","));
        (None, args.etcd.clone(), conditions)
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let prefix = format!("/skiff-bench-{nanos}");
    let etcd: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(&urls, &prefix)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let stores = [("sled", sled), ("etcd", etcd)];

    println!("skiff bench store");
    println!(
        "conditions: {} cores shared by the bench, its API servers and etcd, {}; sled in {} \
         (every acknowledged write flushed to disk); {etcd_conditions}, keys under {prefix}; \
         {} creates per row; API rows: HTTP/1.1 on loopback, as `skiff bench api`",
        cores(),
        build_profile(),
        sled_dir.display(),
        args.creates
    );
    println!();
    println!("| path | clients | store | creates/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");

    // A value the size of a small ConfigMap as the API server stores it.
    let value = Bytes::from(
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "c0-0", "namespace": "bench", "uid": "00000000-0000-0000-0000-000000000000",
                "creationTimestamp": "2024-01-01T00:00:00Z", "labels": { "bench": "store" },
            },
            "data": { "k": "v" },
        })
        .to_string(),
    );
    for &clients in &args.clients {
        for (name, store) in &stores {
            let store = store.clone();
            let value = value.clone();
            let figures = load(clients, args.creates, move |c, i| {
                let store = store.clone();
                let value = value.clone();
                async move {
                    store
                        .create(&format!("/bench/{clients}/{c}-{i}"), value)
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from)
                }
            })
            .await?;
            print_row("store", clients, name, &figures);
        }
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut servers = Vec::new();
    for (name, store) in &stores {
        servers.push((*name, serve(store.clone()).await?));
    }
    for &clients in &args.clients {
        for (name, (_, base)) in &servers {
            let namespace = format!("bench-{clients}");
            create_namespace(&http, base, &namespace).await?;
            let url = format!("{base}/api/v1/namespaces/{namespace}/configmaps");
            let http = http.clone();
            let figures = load(clients, args.creates, move |c, i| {
                let body = json!({
                    "metadata": { "name": format!("c{c}-{i}"), "labels": { "bench": "store" } },
                    "data": { "k": "v" },
                });
                let request = http.post(&url).bearer_auth(TOKEN).json(&body).send();
                async move {
                    let response = request.await?;
                    if response.status() != reqwest::StatusCode::CREATED {
                        bail!(
                            "create answered {}: {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        );
                    }
                    Ok(())
                }
            })
            .await?;
            print_row("API", clients, name, &figures);
        }
    }
    for (_, (server, _)) in &servers {
        server.close_watches();
    }
    Ok(())
}

/// `clients` tasks making `creates` creates between them, each one after the other.
async fn load<F, Fut>(clients: usize, creates: usize, create: F) -> Result<Figures>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let per_client = creates.div_ceil(clients);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let create = create.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let sent = Instant::now();
                    create(c, i).await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let (p50, p99, max) = percentiles(&mut latencies);
    Ok(Figures {
        creates_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
        max,
    })
}

fn print_row(path: &str, clients: usize, store: &str, figures: &Figures) {
    println!(
        "| {path} | {clients} | {store} | {:.0} | {:.2} | {:.2} | {:.2} |",
        figures.creates_per_second,
        ms(figures.p50),
        ms(figures.p99),
        ms(figures.max)
    );
}

/// An API server over `store` on a loopback port, with the bench's admin token.
async fn serve(store: Arc<dyn Store>) -> Result<(Arc<ApiServer>, String)> {
    let mut auth = Authenticator::default();
    auth.add_token(
        TOKEN,
        User {
            name: "bench".into(),
            groups: vec!["system:masters".into()],
        },
    );
    let server = ApiServer::new(store, auth, ApiServerConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((server, base))
}

/// `etcd --version`'s first line, for the conditions.
fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| {
            let first = text.lines().next()?;
            Some(first.replace("etcd Version:", "etcd"))
        })
        .unwrap_or_else(|| "etcd (version unknown)".into())
}
