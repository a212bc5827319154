//! The node's side of the pod network: what lies beyond the pods of this node.
//!
//! The runtime's [`VirtualNetwork`] connects this node's pods to each other in memory and
//! asks [`NodeNetwork`] (its [`Outside`]) about every other address:
//!
//! - a Service's ClusterIP and port: the service proxy picks a ready endpoint (round robin,
//!   or the client's last one under ClientIP affinity); a connection to a Service without
//!   ready endpoints is refused;
//! - a pod IP in another node's pod range: a stream over the [fabric](crate::fabric) to that
//!   node;
//! - anything else: egress through a real socket, unless the node denies egress or the pod
//!   carries the annotation [`DENY_EGRESS_ANNOTATION`]`: "true"`. The nodes' own addresses
//!   (their host ports: API servers, node APIs, fabric ports) and link-local addresses
//!   (cloud metadata) are never reachable from a pod.
//!
//! Names resolve through the Services first (`NAME`, `NAME.NAMESPACE`, `….svc`,
//! `….svc.cluster.local`), then — where egress is allowed — through the host's resolver.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use skiff_api::core::{Endpoints, Node, Service};
use skiff_client::Store;
use skiff_runtime::{ConnectError, Outside, PodStream, ResolveError, VirtualNetwork};

use crate::fabric::{FABRIC_ANNOTATION, FabricClient};
use crate::services::{CLUSTER_DOMAIN, Route, ServiceTable};

/// A pod annotation that denies the pod connections beyond the cluster.
pub const DENY_EGRESS_ANNOTATION: &str = "skiff.dev/deny-egress";

/// What the node knows of a pod of its own, by the pod's IP.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub deny_egress: bool,
}

/// Another node's pod range and where its fabric listens.
#[derive(Clone, Debug)]
struct Peer {
    range: Ipv4Net,
    fabric: SocketAddr,
}

/// This node's [`Outside`]: service proxy, fabric to other nodes, egress, DNS.
pub struct NodeNetwork {
    services: RwLock<Arc<ServiceTable>>,
    peers: RwLock<Vec<Peer>>,
    /// Every node's own addresses: no pod may connect to them.
    node_addresses: RwLock<std::collections::HashSet<IpAddr>>,
    pods: RwLock<HashMap<IpAddr, PodInfo>>,
    fabric: FabricClient,
    allow_egress: bool,
}

impl NodeNetwork {
    pub fn new(fabric: FabricClient, allow_egress: bool) -> NodeNetwork {
        NodeNetwork {
            services: RwLock::new(Arc::new(ServiceTable::default())),
            peers: RwLock::default(),
            node_addresses: RwLock::default(),
            pods: RwLock::default(),
            fabric,
            allow_egress,
        }
    }

    /// Records a pod of this node (attached to the network with this IP).
    pub fn add_pod(&self, ip: IpAddr, info: PodInfo) {
        write(&self.pods).insert(ip, info);
    }

    /// Forgets a pod of this node.
    pub fn remove_pod(&self, ip: IpAddr) {
        write(&self.pods).remove(&ip);
    }

    /// Rebuilds the service table from the informers' stores.
    pub fn update_services(&self, services: &Store<Service>, endpoints: &Store<Endpoints>) {
        let table = ServiceTable::build(&services.list(), &endpoints.list());
        *write(&self.services) = Arc::new(table);
    }

    /// Rebuilds the list of other nodes from the Node store.
    pub fn update_nodes(&self, nodes: &Store<Node>, own_name: &str) {
        let addresses = nodes
            .list()
            .iter()
            .flat_map(|node| node.status.addresses.clone())
            .filter_map(|address| address.address.parse::<IpAddr>().ok())
            .collect();
        *write(&self.node_addresses) = addresses;
        let peers = nodes
            .list()
            .iter()
            .filter(|node| node.metadata.name() != own_name)
            .filter_map(|node| {
                let range = node.spec.pod_cidr.as_deref()?.parse().ok()?;
                let fabric = node
                    .metadata
                    .annotations
                    .get(FABRIC_ANNOTATION)?
                    .parse()
                    .ok()?;
                Some(Peer { range, fabric })
            })
            .collect();
        *write(&self.peers) = peers;
    }

    fn pod(&self, ip: IpAddr) -> Option<PodInfo> {
        read(&self.pods).get(&ip).cloned()
    }

    fn egress_allowed(&self, from: IpAddr) -> bool {
        self.allow_egress && !self.pod(from).is_some_and(|pod| pod.deny_egress)
    }

    /// A stream to a pod IP and port: in memory if the pod is here, over the fabric if it is
    /// on another node; `None` if no node has the address in its range.
    async fn to_pod(
        &self,
        node: &VirtualNetwork,
        from: SocketAddr,
        to: SocketAddrV4,
    ) -> Option<Result<PodStream, ConnectError>> {
        if node.pod(IpAddr::V4(*to.ip())).is_some() {
            return Some(node.connect_to_pod(to.into(), from).await);
        }
        let peer = read(&self.peers)
            .iter()
            .find(|peer| peer.range.contains(to.ip()))
            .cloned()?;
        Some(self.fabric.connect(peer.fabric, from, to.into()).await)
    }
}

impl NodeNetwork {
    /// A stream to one of a Service's ready endpoints (for node ports and port-forward):
    /// `service` is its ClusterIP and port.
    pub async fn connect_service(
        &self,
        node: &VirtualNetwork,
        from: SocketAddr,
        service: SocketAddrV4,
    ) -> Result<PodStream, ConnectError> {
        let client = match from.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let table = read(&self.services).clone();
        match table.route(client, service) {
            Route::To(endpoint) => self
                .to_pod(node, from, endpoint)
                .await
                .unwrap_or(Err(ConnectError::Unreachable)),
            Route::NoEndpoints { .. } | Route::Direct => Err(ConnectError::Refused),
        }
    }
}

#[async_trait::async_trait]
impl Outside for NodeNetwork {
    async fn connect(
        &self,
        node: &VirtualNetwork,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<PodStream, ConnectError> {
        let SocketAddr::V4(to) = to else {
            return Err(ConnectError::Unreachable);
        };
        let client = match from.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let table = read(&self.services).clone();
        let to = match table.route(client, to) {
            Route::To(endpoint) => endpoint,
            Route::NoEndpoints { service } => {
                tracing::debug!(%service, "a connection to a service without ready endpoints");
                return Err(ConnectError::Refused);
            }
            Route::Direct => to,
        };
        if let Some(result) = self.to_pod(node, from, to).await {
            return result;
        }
        let host = IpAddr::V4(*to.ip());
        if !self.egress_allowed(from.ip())
            || to.ip().is_link_local()
            || to.ip().is_unspecified()
            || read(&self.node_addresses).contains(&host)
        {
            return Err(ConnectError::Denied);
        }
        let stream =
            tokio::net::TcpStream::connect(to)
                .await
                .map_err(|error| match error.kind() {
                    std::io::ErrorKind::ConnectionRefused => ConnectError::Refused,
                    std::io::ErrorKind::TimedOut => ConnectError::TimedOut,
                    _ => ConnectError::Unreachable,
                })?;
        let _ = stream.set_nodelay(true);
        Ok(PodStream::new(stream))
    }

    async fn resolve(
        &self,
        _node: &VirtualNetwork,
        from: IpAddr,
        name: &str,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let namespace = self
            .pod(from)
            .map(|pod| pod.namespace)
            .unwrap_or_else(|| "default".into());
        let table = read(&self.services).clone();
        if let Some(ips) = table.resolve(name, &namespace) {
            return if ips.is_empty() {
                Err(ResolveError::NotFound)
            } else {
                Ok(ips.into_iter().map(IpAddr::V4).collect())
            };
        }
        let trimmed = name.trim_end_matches('.');
        if trimmed.ends_with(CLUSTER_DOMAIN) || !trimmed.contains('.') {
            return Err(ResolveError::NotFound);
        }
        if !self.egress_allowed(from) {
            return Err(ResolveError::Denied);
        }
        match tokio::net::lookup_host((trimmed, 0)).await {
            Ok(addresses) => {
                let ips: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
                if ips.is_empty() {
                    Err(ResolveError::NotFound)
                } else {
                    Ok(ips)
                }
            }
            Err(_) => Err(ResolveError::NotFound),
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
