//! The skiff node agent: the kubelet of a wasm node.
//!
//! It registers its Node, heartbeats through a Lease, watches only the pods bound to it
//! (field selector `spec.nodeName`), and keeps one worker per pod that runs the pod's
//! containers on the wasm runtime and reports their status (see [`pod`]). It talks only
//! to the API server. Its own API (logs, port-forward, the containers' usage in
//! [`stats`]) answers only the API server.

pub mod api;
pub mod certificate;
mod env;
mod fabric;
mod images;
mod ipam;
pub mod logs;
mod network;
mod nodeports;
mod pod;
mod probe;
mod register;
mod serve;
mod services;
mod sources;
pub mod stats;
mod udp;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::core::{Endpoints, Node, Pod, Service};
use skiff_client::{Api, Client, Informer, ObjectRef, Store, WatcherParams};
use skiff_runtime::Runtime;

use self::pod::PodWorker;

/// A task aborted when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Settings of a node agent.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Where pod directories (volumes, logs) and the compiled-code cache live.
    pub data_dir: PathBuf,
    /// The address reported as the node's InternalIP and pods' hostIP.
    pub address: String,
    /// The most pods this node takes. Default 10,000: a wasm pod costs little.
    pub max_pods: u32,
    /// First restart back-off of a crashing container. Default 10 s, as Kubernetes.
    pub restart_backoff: Duration,
    /// Back-off cap. Default 5 minutes.
    pub max_restart_backoff: Duration,
    /// Running this long resets the back-off. Default 10 minutes.
    pub backoff_reset_after: Duration,
    /// How often the node's Lease is renewed. Default 2 s.
    pub lease_renew_interval: Duration,
    /// The Lease's duration: silent this long, the node is considered lost. Default 10 s.
    pub lease_duration: Duration,
    /// Whether pods may mount host directories (`hostPath`). Default false.
    pub allow_host_path: bool,
    /// Size at which a container log file is rotated. Default 10 MiB.
    pub log_max_bytes: u64,
    /// Where the node's own API (logs for the API server) listens. Default
    /// `127.0.0.1:0`: loopback, any free port; the port is published in the Node's
    /// `status.daemonEndpoints`.
    pub api_listen: std::net::SocketAddr,
    /// Labels the Node carries besides the well-known ones (hostname, os, arch).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The bearer token the node API requires of the API server (this node's own, from
    /// its credential). `None` refuses every call.
    pub api_token: Option<String>,
    /// The bearer token every fabric stream between nodes carries, both ways (the
    /// cluster's, from the node's credential). `None` refuses every stream.
    pub fabric_token: Option<String>,
    /// PEM certificates trusted, besides the public web PKI roots, for `https://`
    /// modules (a private module server).
    pub module_ca_file: Option<PathBuf>,
    /// Whether pods may connect beyond the cluster (egress through real sockets). Default
    /// true, as in Kubernetes; a pod may deny itself with an annotation.
    pub allow_egress: bool,
    /// How often each running container's CPU and memory are read for the metrics API
    /// (`kubectl top`): the CPU shown is the average over the last period. Default 10 s.
    pub stats_period: Duration,
}

impl NodeConfig {
    /// Defaults for a node called `name` keeping its data in `data_dir`.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            data_dir: data_dir.into(),
            address: "127.0.0.1".into(),
            max_pods: 10_000,
            restart_backoff: Duration::from_secs(10),
            max_restart_backoff: Duration::from_secs(300),
            backoff_reset_after: Duration::from_secs(600),
            lease_renew_interval: Duration::from_secs(2),
            lease_duration: Duration::from_secs(10),
            allow_host_path: false,
            log_max_bytes: logs::DEFAULT_MAX_BYTES,
            api_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            api_token: None,
            fabric_token: None,
            labels: Default::default(),
            module_ca_file: None,
            allow_egress: true,
            stats_period: stats::DEFAULT_PERIOD,
        }
    }
}

/// What every part of the agent shares.
pub struct NodeContext {
    pub config: NodeConfig,
    pub client: Client,
    pub runtime: Runtime,
    /// The pods bound to this node, as the API has them.
    pub pods: Store<Pod>,
    /// Log files being written, for followers.
    pub logs: logs::LiveLogs,
    /// Watches of the ConfigMaps and Secrets the pods project, to keep them current.
    pub sources: sources::SourceWatches,
    /// The HTTPS client `https://` modules are downloaded with.
    pub module_client: reqwest::Client,
    /// Addresses of this node's pods, once the node knows its pod range.
    pub pod_ips: std::sync::Mutex<Option<ipam::PodIps>>,
    /// The pod network: this node's pods, in memory.
    pub network: skiff_runtime::VirtualNetwork,
    /// What lies beyond this node's pods: Services, other nodes, egress.
    pub outside: Arc<network::NodeNetwork>,
    /// The running containers' CPU and memory, for the metrics API.
    pub stats: stats::Stats,
}

impl NodeContext {
    /// The node's own address in the pod network (the first of its pod range), which
    /// probes and host-originated connections come from.
    pub fn pod_network_address(&self) -> std::net::SocketAddr {
        let ip = self
            .pod_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|ips| ips.node_address())
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        std::net::SocketAddr::from((ip, 0))
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("registering node {name}: {source}")]
    Register {
        name: String,
        source: skiff_client::Error,
    },
    #[error("making {path} private to the node: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the client for https:// modules: {0}")]
    ModuleClient(String),
    #[error("the node's certificate: {0}")]
    Certificate(certificate::CertificateError),
    #[error("listening for the node API on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the node agent until the future is dropped or registration fails.
pub async fn run(config: NodeConfig, client: Client, runtime: Runtime) -> Result<(), NodeError> {
    let pods_dir = config.data_dir.join("pods");
    volumes::make_private(&pods_dir).map_err(|source| NodeError::DataDir {
        path: pods_dir.display().to_string(),
        source,
    })?;
    let address = config.api_listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| NodeError::Listen { address, source })?;
    let api_port = listener
        .local_addr()
        .map_err(|source| NodeError::Listen { address, source })?
        .port();
    let module_client =
        images::module_client(config.module_ca_file.as_deref()).map_err(NodeError::ModuleClient)?;
    let fabric_listener = tokio::net::TcpListener::bind((config.address.as_str(), 0))
        .await
        .map_err(|source| NodeError::Listen {
            address: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let fabric_port = fabric_listener
        .local_addr()
        .map_err(|source| NodeError::Listen { address, source })?
        .port();
    // Without a fabric token no stream is accepted: an empty token matches no bearer.
    let fabric_token = config.fabric_token.clone().unwrap_or_default();
    let outside = Arc::new(network::NodeNetwork::new(
        fabric::FabricClient::new(fabric_token.clone()),
        config.allow_egress,
    ));
    let pod_network = skiff_runtime::VirtualNetwork::new(outside.clone());
    let params = WatcherParams::fields(&format!("spec.nodeName={}", config.name));
    let informer = Informer::new(Api::<Pod>::all(client.clone()), params);
    let ctx = Arc::new(NodeContext {
        pods: informer.store(),
        logs: logs::LiveLogs::default(),
        sources: sources::SourceWatches::new(client.clone()),
        module_client,
        pod_ips: std::sync::Mutex::new(None),
        network: pod_network.clone(),
        outside,
        stats: stats::Stats::default(),
        config,
        client,
        runtime,
    });
    let range = register::register(&ctx, api_port, fabric_port)
        .await
        .map_err(|source| NodeError::Register {
            name: ctx.config.name.clone(),
            source,
        })?;
    *ctx.pod_ips.lock().unwrap_or_else(|e| e.into_inner()) = range.map(ipam::PodIps::new);
    tracing::info!(node = %ctx.config.name, api_port, "node registered");
    let identity = certificate::obtain(&ctx.client, &ctx.config.name)
        .await
        .map_err(NodeError::Certificate)?;
    let api_tls = identity
        .as_ref()
        .map(certificate::NodeIdentity::api_server_config)
        .transpose()
        .map_err(NodeError::Certificate)?;
    let fabric_tls = match &identity {
        Some(identity) => {
            let client = identity
                .fabric_client_config()
                .map_err(NodeError::Certificate)?;
            ctx.outside.fabric().use_tls(client);
            Some(
                identity
                    .fabric_server_config()
                    .map_err(NodeError::Certificate)?,
            )
        }
        None => None,
    };
    let router = api::router(ctx.clone());
    let serve_api = async move {
        let served = match (api_tls, listener.into_std()) {
            (Some(tls), Ok(listener)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
                match axum_server::tls_rustls::from_tcp_rustls(listener, tls) {
                    Ok(server) => server.serve(router.into_make_service()).await,
                    Err(error) => Err(error),
                }
            }
            (None, Ok(listener)) => match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, router).await,
                Err(error) => Err(error),
            },
            (_, Err(error)) => Err(error),
        };
        if let Err(error) = served {
            tracing::error!(%error, "the node API stopped");
        }
    };
    let heartbeat = register::heartbeat(ctx.clone());
    let sync = sync_pods(ctx.clone(), informer);
    let fabric = fabric::serve(
        fabric_listener,
        pod_network,
        Arc::from(fabric_token.as_str()),
        ctx.outside.udp_flows(),
        fabric_tls,
    );
    let cluster = watch_cluster(ctx.clone());
    let sampler = ctx.stats.clone().run_sampler(ctx.config.stats_period);
    tokio::join!(serve_api, heartbeat, sync, fabric, cluster, sampler);
    Ok(())
}

/// Keeps the pod network's view of Services, Endpoints and other nodes current.
async fn watch_cluster(ctx: Arc<NodeContext>) {
    let services = Informer::<Service>::new(Api::all(ctx.client.clone()), WatcherParams::default());
    let endpoints =
        Informer::<Endpoints>::new(Api::all(ctx.client.clone()), WatcherParams::default());
    let nodes = Informer::<Node>::new(Api::all(ctx.client.clone()), WatcherParams::default());
    let mut node_ports = nodeports::NodePorts::default();
    let keep_services = async {
        let mut service_changes = services.subscribe();
        let mut endpoint_changes = endpoints.subscribe();
        loop {
            tokio::select! {
                Some(_) = service_changes.next() => {}
                Some(_) = endpoint_changes.next() => {}
                else => return,
            }
            // A burst of changes rebuilds the table once.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            ctx.outside
                .update_services(&services.store(), &endpoints.store());
            node_ports.reconcile(&ctx, &services.store()).await;
        }
    };
    let keep_nodes = async {
        let mut changes = nodes.subscribe();
        while changes.next().await.is_some() {
            ctx.outside.update_nodes(&nodes.store(), &ctx.config.name);
        }
    };
    tokio::join!(keep_services, keep_nodes);
}

/// Keeps one worker per pod bound to this node, handing each the newest pod.
async fn sync_pods(ctx: Arc<NodeContext>, informer: Informer<Pod>) {
    let store = informer.store();
    let mut changes = informer.subscribe();
    let mut workers: HashMap<ObjectRef, PodWorker> = HashMap::new();
    let mut seen = 0u64;
    while let Some(key) = changes.next().await {
        // Workers end on their own only when something went wrong; sweeping them now and
        // then (not on every change) keeps a burst of changes linear in the pods.
        seen += 1;
        if seen.is_multiple_of(1024) {
            workers.retain(|_, worker| !worker.is_finished());
        }
        if workers.get(&key).is_some_and(|worker| worker.is_finished()) {
            workers.remove(&key);
        }
        match store.get(&key) {
            Some(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                match workers.get(&key) {
                    Some(worker) if worker.uid == uid => worker.update(pod),
                    _ => {
                        // New, or a new pod under an old name: the old one's worker stops.
                        if let Some(old) = workers.remove(&key) {
                            tokio::spawn(stop(ctx.clone(), old));
                        }
                        let ip = ctx
                            .pod_ips
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_mut()
                            .and_then(|ips| ips.assign(&uid, pod.status.pod_ip.as_deref()));
                        workers.insert(key, PodWorker::spawn(ctx.clone(), pod, ip));
                    }
                }
            }
            None => {
                if let Some(worker) = workers.remove(&key) {
                    tokio::spawn(stop(ctx.clone(), worker));
                }
            }
        }
    }
}

/// Stops a pod's worker, then gives the pod's address back.
async fn stop(ctx: Arc<NodeContext>, worker: PodWorker) {
    let uid = worker.uid.clone();
    worker.remove().await;
    if let Some(ips) = ctx
        .pod_ips
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        ips.release(&uid);
    }
}
