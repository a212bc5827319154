//! `skiff server`: the API server, the scheduler, the controllers and an embedded node agent over a sled store in one data directory, or over etcd (`--etcd`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control_plane::apiserver::allocator::Ranges;
use skiff_control_plane::apiserver::auth::{self, Authenticator, User};
use skiff_control_plane::apiserver::certificates::NodeSigner;
use skiff_control_plane::apiserver::modules::ModuleStorage;
use skiff_control_plane::apiserver::throttle::ClientLimits;
use skiff_control_plane::apiserver::{ApiServer, ApiServerConfig};
use skiff_control_plane::controllers::{ControllerConfig, LeaderElectionConfig};
use skiff_control_plane::scheduler::SchedulerConfig;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::sled::SledStore;

use crate::kubeconfig;
use crate::secrets::ClusterSecrets;

/// Options of `skiff server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where the store, credentials and kubeconfig live.
    #[arg(long, default_value = "skiff-data")]
    pub data_dir: PathBuf,
    /// Keep the cluster's objects in the etcd cluster at these client URLs instead of
    /// the sled store in the data dir.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The etcd key prefix the cluster's objects are kept under (with --etcd): clusters
    /// sharing one etcd each need their own.
    /// (The default is the etcd store's `DEFAULT_PREFIX`.)
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "/skiff",
        requires = "etcd"
    )]
    pub etcd_prefix: String,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// Address the API server listens on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// The address clients, nodes and the other API servers reach this one at (default:
    /// the listen address, or 127.0.0.1 when listening on every address). The serving
    /// certificate is valid for it.
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<std::net::IpAddr>,
    /// Run the control plane only: no node agent in this process.
    #[arg(long)]
    pub no_node: bool,
    /// Leave the controllers out, for `skiff controller-manager` processes to run them.
    #[arg(long)]
    pub no_controllers: bool,
    /// How long the scheduler's and the controllers' leases last unrenewed before
    /// another server sharing the store may take them over.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading; shorter than
    /// the lease duration, so two servers never lead at once.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often servers try to take the leases and the leader renews them.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The range ClusterIPs of Services come from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: ipnet::Ipv4Net,
    /// The range pod IPs come from; each node gets a block of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: ipnet::Ipv4Net,
    /// The prefix length of each node's block of the pod range (20: 4,094 pods per node,
    /// 16 nodes in a /16).
    #[arg(long, default_value = "20")]
    pub node_cidr_mask_size: u8,
    #[command(flatten)]
    pub node: crate::node::NodeOptions,
    /// Serve plain HTTP instead of HTTPS: anyone on the network can read the tokens.
    /// For local experiments only.
    #[arg(long)]
    pub insecure_http: bool,
    /// Another name or address the serving certificate is valid for (repeatable), besides
    /// localhost, 127.0.0.1, ::1 and the listen address.
    #[arg(long = "tls-san", value_name = "HOST")]
    pub tls_sans: Vec<String>,
    /// How long a graceful shutdown waits for requests in flight.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub shutdown_grace: u64,
    /// Request bodies larger than this are refused (413); it also bounds what a body may
    /// decode to once YAML aliases are expanded.
    #[arg(long, value_name = "BYTES", default_value_t = ApiServerConfig::default().max_body_bytes)]
    pub max_request_bytes: usize,
    /// Requests a second each user may make, sustained (0: no limit). Users in the
    /// system:masters and system:nodes groups (controllers, scheduler, nodes) are exempt
    /// from every per-user limit.
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().requests_per_second)]
    pub max_requests_per_second_per_user: f64,
    /// Requests without valid credentials one client address may make a second (bursts
    /// of 5 times as many) before getting 429 instead of 401 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().failed_auth_per_second)]
    pub max_failed_auth_per_second_per_address: f64,
    /// Requests each user may make at once after being idle.
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().burst)]
    pub max_request_burst_per_user: u32,
    /// Requests of each user handled at once, watches not counted (0: no limit).
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().max_in_flight)]
    pub max_requests_in_flight_per_user: usize,
    /// Watches each user may hold open at once (0: no limit).
    #[arg(long, value_name = "N", default_value_t = ClientLimits::default().max_watches)]
    pub max_watches_per_user: usize,
}

pub async fn run(args: ServerArgs) -> Result<()> {
    if args.leader_elect_renew_deadline >= args.leader_elect_lease_duration {
        anyhow::bail!(
            "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let store = open_store(&args).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    // A server listening on every address is reached here through loopback.
    let advertised = if let Some(ip) = args.advertise_address {
        SocketAddr::new(ip, address.port())
    } else if address.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    };
    let secrets = if args.etcd.is_empty() {
        ClusterSecrets::load_or_create_in_dir(&args.data_dir)?
    } else {
        let secrets = ClusterSecrets::load_or_create_in_store(&*store, &args.data_dir).await?;
        secrets.write_public(&args.data_dir)?;
        secrets
    };
    let ClusterSecrets {
        ca,
        client_ca,
        node_key,
        admin_token: token,
    } = secrets;
    let ca = Arc::new(ca);
    let api_server_client = client_ca
        .issue_client("skiff:apiserver")
        .context("issuing the API server's client certificate")?;
    let node_client_tls = skiff_client::tls::client_config(
        ca.cert_pem(),
        Some((&api_server_client.cert_pem, &api_server_client.key_pem)),
    )?;
    let tls = if args.insecure_http {
        tracing::warn!(
            "--insecure-http: the API is served in plain HTTP; tokens and secrets cross the \
             network readable by anyone on it. Use it for local experiments only."
        );
        eprintln!("WARNING: --insecure-http: serving plain HTTP, for local experiments only");
        None
    } else {
        let mut hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            address.ip().to_string(),
            advertised.ip().to_string(),
        ];
        hosts.extend(args.tls_sans.iter().cloned());
        hosts.sort();
        hosts.dedup();
        let issued = ca
            .issue_server("skiff-apiserver", &hosts)
            .context("--tls-san: issuing the API server's certificate")?;
        Some(skiff_client::tls::server_config(
            &issued.cert_pem,
            &issued.key_pem,
            None,
        )?)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{advertised}");

    let mut authenticator = Authenticator::default();
    authenticator.add_token(
        &token,
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        },
    );
    let kubeconfig_path = args.data_dir.join("kubeconfig");
    kubeconfig::write(&kubeconfig_path, &url, &token, ca.cert_pem())?;

    let ranges = Ranges {
        service_cidr: args.service_cidr,
        cluster_cidr: Some(args.pod_cidr),
        node_cidr_mask_size: args.node_cidr_mask_size,
    };
    ranges.validate().map_err(|problem| {
        anyhow::anyhow!("--service-cidr, --pod-cidr, --node-cidr-mask-size: {problem}")
    })?;
    let config = ApiServerConfig {
        node_key: Some(node_key),
        node_signer: Some(Arc::new(NodeSigner {
            ca: ca.clone(),
            api_server_client_ca_pem: client_ca.cert_pem().to_string(),
        })),
        node_client_tls: Some(node_client_tls),
        // Servers sharing etcd share their modules too: whichever one a node asks
        // must have every module pushed to any of them.
        modules: Some(if args.etcd.is_empty() {
            ModuleStorage::Dir(args.data_dir.join("modules"))
        } else {
            ModuleStorage::Store
        }),
        ranges,
        max_body_bytes: args.max_request_bytes,
        client_limits: ClientLimits {
            requests_per_second: args.max_requests_per_second_per_user,
            burst: args.max_request_burst_per_user,
            max_in_flight: args.max_requests_in_flight_per_user,
            max_watches: args.max_watches_per_user,
            failed_auth_per_second: args.max_failed_auth_per_second_per_address,
            ..ClientLimits::default()
        },
        ..ApiServerConfig::default()
    };
    let server = ApiServer::new(store, authenticator, config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the API server: {e}"))?;
    let compaction = tokio::spawn(server.clone().run_compaction());

    // The scheduler (and the controllers) are API clients of this server, as in
    // Kubernetes: they could as well run in another process.
    let mut client_config = skiff_client::Config::new(&url)?;
    client_config.token = Some(token.clone());
    client_config.ca_pem = Some(ca.cert_pem().as_bytes().to_vec());
    // Each under its own name, which the API server records as the manager of its writes.
    let client_as = |program: &str| {
        let mut config = client_config.clone();
        config.user_agent = user_agent(program);
        skiff_client::Client::new(config)
    };
    let client = client_as("skiff-apiserver")?;
    // Stable across restarts, so a restarted server takes its own leases back at once;
    // distinct per data directory, so servers sharing a store elect one leader.
    let election = LeaderElectionConfig {
        identity: server_identity(&args.data_dir)?,
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
        ..LeaderElectionConfig::default()
    };
    let identity = election.identity.clone();
    let scheduler = tokio::spawn(skiff_control_plane::scheduler::run(
        client_as("skiff-scheduler")?,
        SchedulerConfig {
            leader_election: Some(LeaderElectionConfig {
                name: skiff_control_plane::scheduler::LEASE_NAME.into(),
                ..election.clone()
            }),
            ..SchedulerConfig::default()
        },
    ));
    let controllers = if args.no_controllers {
        None
    } else {
        let config = ControllerConfig {
            leader_election: Some(election),
            ..ControllerConfig::default()
        };
        Some(tokio::spawn(skiff_control_plane::controllers::run(
            client_as("skiff-controller-manager")?,
            config,
        )))
    };
    let node = if args.no_node {
        None
    } else {
        // The embedded node gets its credential as a joining node would, without a join
        // token: the server makes it one, new at every start.
        let name = args
            .node
            .name
            .clone()
            .unwrap_or_else(crate::node::host_name);
        let credential = server
            .issue_node_credential(&name, "skiff-server")
            .await
            .map_err(|e| anyhow::anyhow!("--name {name}: the embedded node's credential: {e}"))?;
        let mut node_config = skiff_client::Config::new(&url)?;
        node_config.token = Some(credential.token.clone());
        node_config.ca_pem = Some(ca.cert_pem().as_bytes().to_vec());
        node_config.user_agent = user_agent("skiff-node");
        let node_client = skiff_client::Client::new(node_config);
        let data_dir = args.data_dir.join("node");
        let options = args.node.clone();
        Some(tokio::spawn(async move {
            let result = match node_client {
                Ok(client) => {
                    crate::node::run_agent(client, &credential, &data_dir, &options).await
                }
                Err(error) => Err(error.into()),
            };
            if let Err(error) = result {
                tracing::error!("the embedded node agent stopped: {error:#}");
            }
        }))
    };

    // Servers sharing a store find each other, and the kubeconfig lists them all so
    // that clients fail over. (A server on sled is alone: its kubeconfig names it only.)
    let peers = (!args.etcd.is_empty()).then(|| {
        let ca_pem = ca.cert_pem().to_string();
        let (path, token) = (kubeconfig_path.clone(), token.clone());
        tokio::spawn(crate::peers::run(
            client.clone(),
            identity.clone(),
            url.clone(),
            move |servers| {
                if let Err(error) = kubeconfig::write_servers(&path, servers, &token, &ca_pem) {
                    tracing::warn!("rewriting {}: {error:#}", path.display());
                }
            },
        ))
    });

    tracing::info!(%url, kubeconfig = %kubeconfig_path.display(), "skiff server is ready");
    println!("skiff server listening on {url}");
    println!("kubeconfig: {}", kubeconfig_path.display());

    let shutdown_server = server.clone();
    let grace = Duration::from_secs(args.shutdown_grace);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        tracing::info!("shutting down: no new connections; in-flight requests get {grace:?}");
        shutdown_server.close_watches();
        shutdown.graceful_shutdown(Some(grace));
    });
    let listener = listener.into_std()?;
    // The client's address reaches the API (requests without valid credentials are
    // limited per address).
    let app = server
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
            let serve = axum_server::tls_rustls::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app);
            tokio::spawn(serve)
        }
        None => tokio::spawn(axum_server::from_tcp(listener)?.handle(handle).serve(app)),
    };
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
    if let Some(peers) = peers {
        peers.abort();
    }
    if let Some(controllers) = controllers {
        controllers.abort();
    }
    if let Some(node) = node {
        node.abort();
    }
    drop(server);
    Ok(())
}

/// The store: etcd with `--etcd`, else sled in `DATA_DIR/store`.
async fn open_store(args: &ServerArgs) -> Result<Arc<dyn Store>> {
    if args.etcd.is_empty() {
        let dir = args.data_dir.join("store");
        let store = SledStore::open(&dir)
            .with_context(|| format!("opening the store in {}", dir.display()))?;
        return Ok(Arc::new(store));
    }
    let store = args
        .etcd_tls
        .connect("--etcd", &args.etcd, &args.etcd_prefix)
        .await?;
    tracing::info!(endpoints = %args.etcd.join(","), prefix = %args.etcd_prefix, "store: etcd");
    Ok(store)
}

/// How `skiff server` and `skiff migrate` reach an etcd served over TLS: kube-apiserver's
/// flags. An etcd reachable beyond loopback must be served so, and require client
/// certificates: whoever can write to it owns the cluster.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EtcdTlsArgs {
    /// The CA (PEM) that signs etcd's serving certificates; `https://` etcd URLs need it.
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate (PEM) presented to etcd, for its `--client-cert-auth`.
    #[arg(long, value_name = "FILE", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The key (PEM) of --etcd-certfile.
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The etcd store at `endpoints` under `prefix`, over TLS if these flags ask; errors
    /// name `flag` (the option that gave the endpoints).
    #[cfg(feature = "etcd")]
    pub async fn connect(
        &self,
        flag: &str,
        endpoints: &[String],
        prefix: &str,
    ) -> Result<Arc<dyn Store>> {
        use skiff_control_plane::store::etcd::EtcdStore;
        let tls = self.load()?;
        let store = EtcdStore::connect_with(endpoints, prefix, tls.as_ref())
            .await
            .with_context(|| format!("{flag}: connecting to etcd"))?;
        Ok(Arc::new(store))
    }

    /// Without the etcd store built in: what to build instead.
    #[cfg(not(feature = "etcd"))]
    pub async fn connect(&self, flag: &str, _: &[String], _: &str) -> Result<Arc<dyn Store>> {
        anyhow::bail!(
            "{flag}: this skiff was built without the etcd store; build it with \
             `cargo build --release -p skiff --features etcd` (which needs protoc)"
        )
    }

    /// The TLS settings the flags give, if any; fails naming the flag whose file is
    /// missing, or a client certificate given without the CA.
    #[cfg(feature = "etcd")]
    fn load(&self) -> Result<Option<skiff_control_plane::store::etcd::EtcdTls>> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).with_context(|| format!("--{flag}: reading {}", path.display()))
        };
        let Some(ca) = &self.etcd_cafile else {
            if self.etcd_certfile.is_some() {
                anyhow::bail!("--etcd-certfile: give --etcd-cafile too (etcd over TLS)");
            }
            return Ok(None);
        };
        let identity = match (&self.etcd_certfile, &self.etcd_keyfile) {
            (Some(cert), Some(key)) => {
                Some((read("etcd-certfile", cert)?, read("etcd-keyfile", key)?))
            }
            _ => None,
        };
        Ok(Some(skiff_control_plane::store::etcd::EtcdTls {
            ca_pem: read("etcd-cafile", ca)?,
            identity,
        }))
    }
}

/// `PROGRAM/VERSION`, the `User-Agent` of one of skiff's programs.
pub fn user_agent(program: &str) -> String {
    format!("{program}/{}", env!("CARGO_PKG_VERSION"))
}

/// This server's name among control planes: made at first start, kept in the data dir.
fn server_identity(dir: &Path) -> Result<String> {
    let path = dir.join("identity");
    if let Ok(identity) = std::fs::read_to_string(&path)
        && !identity.trim().is_empty()
    {
        return Ok(identity.trim().to_string());
    }
    let identity = format!("skiff-server-{}", &auth::generate_token()[..12]);
    kubeconfig::write_private(&path, identity.as_bytes())?;
    Ok(identity)
}
