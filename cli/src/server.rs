//! `skiff server`: the API server (and, in later steps, scheduler, controllers and an
//! embedded node) over a sled store in one data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control_plane::apiserver::auth::{self, Authenticator, User};
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::store::sled::SledStore;

use crate::kubeconfig;

/// Options of `skiff server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "skiff-data")]
    pub data_dir: PathBuf,
    /// Address the API server listens on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// How long a graceful shutdown waits for requests in flight.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub shutdown_grace: u64,
}

pub async fn run(args: ServerArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let store = SledStore::open(&args.data_dir.join("store")).with_context(|| {
        format!(
            "opening the store in {}",
            args.data_dir.join("store").display()
        )
    })?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");

    let token = admin_token(&args.data_dir)?;
    let mut authenticator = Authenticator::default();
    authenticator.add_token(
        &token,
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        },
    );
    let kubeconfig_path = args.data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &url, &token)?;

    let server = ApiServer::new(Arc::new(store), authenticator, ApiServerConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("starting the API server: {e}"))?;
    let compaction = tokio::spawn(server.clone().run_compaction());

    // The scheduler (and the controllers) are API clients of this server, as in
    // Kubernetes: they could as well run in another process.
    let mut client_config = skiff_client::Config::new(&url)?;
    client_config.token = Some(token.clone());
    let client = skiff_client::Client::new(client_config)?;
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client.clone(),
        Default::default(),
    ));

    tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "skiff server is ready");
    println!("skiff server listening on {url}");
    println!("kubeconfig: {}", kubeconfig_path.display());

    let shutdown_server = server.clone();
    let grace = Duration::from_secs(args.shutdown_grace);
    let serve = axum::serve(listener, server.router()).with_graceful_shutdown(async move {
        crate::shutdown_signal().await;
        tracing::info!("shutting down: no new connections; in-flight requests get {grace:?}");
        shutdown_server.close_watches();
    });
    let served = tokio::spawn(async move { serve.await });
    // The first signal starts the graceful shutdown inside `serve`; a second one, or the
    // grace period running out, ends the process.
    tokio::select! {
        result = served => { result??; }
        _ = async {
            crate::shutdown_signal().await;
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = crate::shutdown_signal() => {}
            }
        } => tracing::warn!("forced shutdown"),
    }
    compaction.abort();
    scheduler.abort();
    drop(server);
    Ok(())
}

/// The admin token: made at first start, its hash kept in the data dir, the token
/// itself only in the kubeconfig (owner-only), which is how a user gets it.
fn admin_token(dir: &Path) -> Result<String> {
    let hash_path = dir.join("admin-token.sha256");
    let kubeconfig_path = dir.join("kubeconfig");
    if let Ok(hash) = std::fs::read_to_string(&hash_path)
        && let Ok(config) = kubeconfig::read_token(&kubeconfig_path)
        && auth::token_hash_hex(&config) == hash.trim()
    {
        return Ok(config);
    }
    let token = auth::generate_token();
    kubeconfig::write_private(&hash_path, auth::token_hash_hex(&token).as_bytes())?;
    Ok(token)
}
