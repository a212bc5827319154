//! `skiff node`: a worker node joining a cluster; also the node `skiff server` embeds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control_plane::apiserver::credentials::NodeCredential;
use skiff_node::NodeConfig;
use skiff_runtime::{Runtime, RuntimeConfig};

/// Options of `skiff node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The API server's URL; several, comma-separated (or the flag repeated), for a
    /// cluster of several API servers: the first is preferred, and when the one in use
    /// cannot be reached the client fails over to the next.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        required = true,
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// A join token (`skiff token create` prints one). At its first start the node
    /// exchanges it for a credential of its own, kept in DATA_DIR/credential.json; after
    /// that the join token is not needed (and may have expired).
    #[arg(long, env = "SKIFF_JOIN_TOKEN")]
    pub token: Option<String>,
    /// The cluster CA (PEM) that signs the API server's certificate (`skiff server` writes
    /// it to DATA_DIR/pki/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
    /// Where pods' volumes, logs and compiled code live.
    #[arg(long, default_value = "skiff-node-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeOptions,
}

/// What a node agent can be told, in `skiff node` and `skiff server` alike.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeOptions {
    /// The Node's name (default: this machine's host name).
    #[arg(long = "name")]
    pub name: Option<String>,
    /// Let pods mount host directories (hostPath volumes).
    #[arg(long)]
    pub allow_host_path: bool,
    /// First back-off before a crashed container restarts (doubling up to 5 minutes).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub restart_backoff: Duration,
    /// The most pods this node takes.
    #[arg(long, default_value = "10000")]
    pub max_pods: u32,
    /// A label for the Node, KEY=VALUE (for nodeSelector and affinity). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// PEM certificates to trust, besides the public roots, when downloading
    /// `https://…@sha256:…` modules (a private module server).
    #[arg(long, value_name = "FILE")]
    pub module_ca: Option<PathBuf>,
    /// Refuse pods every connection beyond the cluster (by default they may connect out,
    /// as in Kubernetes; a pod can refuse itself with the annotation
    /// `skiff.dev/deny-egress: "true"`).
    #[arg(long)]
    pub deny_egress: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub async fn run(args: NodeArgs) -> Result<()> {
    let name = args.node.name.clone().unwrap_or_else(host_name);
    let credential = credential(&args, &name).await?;
    let mut config = crate::kubeconfig::client_config(
        &args.server,
        &credential.token,
        args.certificate_authority.as_deref(),
    )?;
    config.user_agent = crate::server::user_agent("skiff-node");
    let client = skiff_client::Client::new(config)?;
    tokio::select! {
        result = run_agent(client, &credential, &args.data_dir, &args.node) => result,
        _ = crate::shutdown_signal() => {
            tracing::info!("node agent stopping");
            Ok(())
        }
    }
}

/// The node's own credential: the one kept in DATA_DIR/credential.json, else one the
/// join token is exchanged for (and then kept there, owner-only).
async fn credential(args: &NodeArgs, name: &str) -> Result<NodeCredential> {
    let path = args.data_dir.join("credential.json");
    if path.exists() {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let credential: NodeCredential = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a node credential", path.display()))?;
        if credential.node != name {
            anyhow::bail!(
                "--name {name}: {} holds the credential of node {:?}; run that node with --name {} or give another --data-dir",
                path.display(),
                credential.node,
                credential.node
            );
        }
        check_credential(args, &credential, &path).await?;
        return Ok(credential);
    }
    let Some(join_token) = args.token.as_deref() else {
        anyhow::bail!(
            "--token: {} has no credential yet; join with a token from `skiff token create`",
            args.data_dir.display()
        );
    };
    let config = crate::kubeconfig::client_config(
        &args.server,
        join_token,
        args.certificate_authority.as_deref(),
    )?;
    let client = skiff_client::Client::new(config)?;
    let answer = client
        .request_json(
            skiff_client::Method::POST,
            &format!("/api/v1/nodes/{name}/credential"),
            Some(serde_json::json!({})),
        )
        .await
        .map_err(|error| match error {
            skiff_client::Error::Api(status) if status.code == Some(401) => anyhow::anyhow!(
                "--token: the API server refused the join token: it is unknown or has expired; make another with `skiff token create`"
            ),
            error => anyhow::Error::new(error).context(format!("joining as node {name}")),
        })?;
    let credential: NodeCredential =
        serde_json::from_value(answer).context("the API server's node credential")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    crate::kubeconfig::write_private(&path, &serde_json::to_vec_pretty(&credential)?)?;
    tracing::info!(node = name, path = %path.display(), "joined the cluster; credential kept");
    Ok(credential)
}

/// Fails with what to do when the API server no longer takes a kept credential (it was
/// revoked, or belongs to another cluster).
async fn check_credential(args: &NodeArgs, credential: &NodeCredential, path: &Path) -> Result<()> {
    let config = crate::kubeconfig::client_config(
        &args.server,
        &credential.token,
        args.certificate_authority.as_deref(),
    )?;
    let client = skiff_client::Client::new(config)?;
    match client
        .request_json(skiff_client::Method::GET, "/api", None)
        .await
    {
        Err(skiff_client::Error::Api(status)) if status.code == Some(401) => anyhow::bail!(
            "the API server refused the credential kept in {}: it was revoked or is another cluster's; remove the file and join again with --token",
            path.display()
        ),
        // Anything else (the server not up yet) is the agent's to retry.
        _ => Ok(()),
    }
}

/// Runs a node agent over `data_dir` as the node `credential` names, until it fails or
/// the future is dropped. Its API (logs, port-forward) answers callers holding the
/// credential's node API token, which only the API server can make.
pub async fn run_agent(
    client: skiff_client::Client,
    credential: &NodeCredential,
    data_dir: &Path,
    options: &NodeOptions,
) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let name = credential.node.clone();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(data_dir.join("compiled")),
        max_instances: pool_size(options.max_pods),
        ..RuntimeConfig::default()
    })
    .context("starting the wasm runtime")?;
    let mut config = NodeConfig::new(name, data_dir);
    config.allow_host_path = options.allow_host_path;
    config.restart_backoff = options.restart_backoff;
    config.max_pods = options.max_pods;
    config.api_token = credential.node_api_token.clone();
    config.fabric_token = credential.fabric_token.clone();
    config.labels = options.labels.iter().cloned().collect();
    config.module_ca_file = options.module_ca.clone();
    config.allow_egress = !options.deny_egress;
    skiff_node::run(config, client, runtime).await?;
    Ok(())
}

/// Instances the runtime's pool holds for a node of `max_pods`: one per pod (most pods
/// have one container), and room for the requests being served at once (every request
/// to a wasi:http container is an instance of its own). Beyond the pool, containers fail
/// to start with a clear error; a host that refuses to reserve the pool's address space
/// falls back to allocating on demand.
fn pool_size(max_pods: u32) -> u32 {
    max_pods.saturating_add(1024)
}

/// This machine's host name, lowercased: a node's name by default.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok().map(|s| s.to_lowercase()))
        .unwrap_or_else(|| "skiff-node".into())
}
