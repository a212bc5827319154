//! The node's side of the pod network: what lies beyond the pods of this node.
//!
//! The runtime's [`VirtualNetwork`] connects this node's pods to each other in memory and
//! asks [`NodeNetwork`] (its [`Outside`]) about every other address, for TCP connections and
//! UDP datagrams alike:
//!
//! - a Service's ClusterIP and port (of the protocol used): the service proxy picks a ready
//!   endpoint (round robin, or the client's last one under ClientIP affinity); a connection
//!   to a Service without ready endpoints is refused, a datagram to one is answered as
//!   port-unreachable. A UDP flow (client address, Service address) keeps its endpoint while
//!   it is in use and the endpoint ready, as conntrack keeps it for kube-proxy, and the
//!   endpoint's replies reach the client from the Service's address
//!   ([`VirtualNetwork::translate_replies`]);
//! - a pod IP in another node's pod range: a stream, or a UDP flow, over the
//!   [fabric](crate::fabric) to that node ([`crate::udp`]);
//! - anything else: egress through a real socket, unless the node denies egress or the pod
//!   carries the annotation [`DENY_EGRESS_ANNOTATION`]`: "true"`. The nodes' own addresses
//!   (their host ports: API servers, node APIs, fabric ports) and link-local addresses
//!   (cloud metadata) are never reachable from a pod.
//!
//! Names resolve through the Services first (`NAME`, `NAME.NAMESPACE`, `….svc`,
//! `….svc.cluster.local`), then — where egress is allowed — through the host's resolver.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use skiff_api::core::{Endpoints, Node, Service};
use skiff_client::Store;
use skiff_runtime::{
    ConnectError, Datagram, DatagramError, Outside, PodStream, ResolveError, VirtualNetwork,
};

use crate::fabric::{FABRIC_ANNOTATION, FabricClient};
use crate::services::{CLUSTER_DOMAIN, Protocol, Route, ServiceTable};
use crate::udp::{FLOW_IDLE, FlowRoute, MAX_FLOWS, UdpFlows};

/// How long a UDP flow to a Service keeps its endpoint without a datagram (conntrack keeps an
/// answered UDP flow for 120 s).
const SERVICE_FLOW_IDLE: Duration = Duration::from_secs(120);

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
    /// This node's own pod range: an address in it that is no pod here is no pod at all.
    own_range: RwLock<Option<Ipv4Net>>,
    /// Every node's advertised addresses, and every address of this host's interfaces:
    /// no pod may connect to them (a node's APIs, host ports, other nodes' agents).
    node_addresses: RwLock<std::collections::HashSet<IpAddr>>,
    pods: RwLock<HashMap<IpAddr, PodInfo>>,
    fabric: Arc<FabricClient>,
    /// UDP flows to other nodes' pods and beyond the cluster.
    flows: Arc<UdpFlows>,
    /// The endpoint each UDP flow to a Service goes to: (client, Service address) →
    /// (endpoint, last used).
    service_flows: Mutex<HashMap<(SocketAddr, SocketAddrV4), (SocketAddrV4, Instant)>>,
    allow_egress: bool,
}

/// Every address of this host's interfaces. A host whose interfaces cannot be listed
/// gives none (with a warning): its advertised addresses are still refused.
fn host_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(if_addrs::Interface::ip).collect(),
        Err(error) => {
            tracing::warn!(%error, "listing this host's addresses failed: pods may reach those not advertised");
            Vec::new()
        }
    }
}

impl NodeNetwork {
    /// The client of other nodes' fabric.
    pub fn fabric(&self) -> &FabricClient {
        &self.fabric
    }

    pub fn new(fabric: FabricClient, allow_egress: bool) -> NodeNetwork {
        NodeNetwork {
            services: RwLock::new(Arc::new(ServiceTable::default())),
            peers: RwLock::default(),
            own_range: RwLock::default(),
            node_addresses: RwLock::default(),
            pods: RwLock::default(),
            fabric: Arc::new(fabric),
            flows: UdpFlows::new(FLOW_IDLE),
            service_flows: Mutex::default(),
            allow_egress,
        }
    }

    /// The node's UDP flows, which the fabric server adds other nodes' flows to.
    pub fn udp_flows(&self) -> Arc<UdpFlows> {
        self.flows.clone()
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

    /// Rebuilds the list of other nodes from the Node store, and the addresses no pod may
    /// reach (this host's interfaces are read again: an address may have come or gone).
    pub fn update_nodes(&self, nodes: &Store<Node>, own_name: &str) {
        let addresses = nodes
            .list()
            .iter()
            .flat_map(|node| node.status.addresses.clone())
            .filter_map(|address| address.address.parse::<IpAddr>().ok())
            .chain(host_addresses())
            .collect();
        *write(&self.node_addresses) = addresses;
        *write(&self.own_range) = nodes
            .list()
            .iter()
            .find(|node| node.metadata.name() == own_name)
            .and_then(|node| node.spec.pod_cidr.as_deref()?.parse().ok());
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

    /// Whether a pod may not reach `to` beyond the cluster: egress denied to the pod `from`,
    /// or an address no pod may ever reach (a node's own, link-local, unspecified, loopback,
    /// broadcast, multicast).
    fn egress_denied(&self, from: IpAddr, to: Ipv4Addr) -> bool {
        !self.egress_allowed(from)
            || to.is_link_local()
            || to.is_unspecified()
            || to.is_loopback()
            || to.is_broadcast()
            || to.is_multicast()
            || read(&self.node_addresses).contains(&IpAddr::V4(to))
    }

    fn peer_for(&self, ip: &Ipv4Addr) -> Option<Peer> {
        read(&self.peers)
            .iter()
            .find(|peer| peer.range.contains(ip))
            .cloned()
    }

    /// The endpoint of a UDP datagram from `client` to `service` (if it is a Service's
    /// address): the flow's endpoint while it is used and ready, else a new pick.
    fn udp_service_route(
        &self,
        table: &ServiceTable,
        client: SocketAddr,
        service: SocketAddrV4,
    ) -> Route {
        let key = (client, service);
        let now = Instant::now();
        let mut flows = self.service_flows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((endpoint, used)) = flows.get_mut(&key)
            && now.duration_since(*used) < SERVICE_FLOW_IDLE
            && table.has_endpoint(Protocol::Udp, service, *endpoint)
        {
            *used = now;
            return Route::To(*endpoint);
        }
        let client_ip = match client.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let route = table.route(Protocol::Udp, client_ip, service);
        match route {
            Route::To(endpoint) => {
                if flows.len() >= MAX_FLOWS {
                    flows.retain(|_, (_, used)| now.duration_since(*used) < SERVICE_FLOW_IDLE);
                }
                if flows.len() < MAX_FLOWS {
                    flows.insert(key, (endpoint, now));
                }
            }
            Route::NoEndpoints { .. } | Route::Direct => {
                flows.remove(&key);
            }
        }
        route
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
        let peer = self.peer_for(to.ip())?;
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
        match table.route(Protocol::Tcp, client, service) {
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
        let to = match table.route(Protocol::Tcp, client, to) {
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
        if self.egress_denied(from.ip(), *to.ip()) {
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

    fn send_datagram(
        &self,
        node: &VirtualNetwork,
        mut datagram: Datagram,
    ) -> Result<(), DatagramError> {
        let SocketAddr::V4(to) = datagram.to else {
            return Err(DatagramError::Unreachable);
        };
        let table = read(&self.services).clone();
        let to = match self.udp_service_route(&table, datagram.from, to) {
            Route::To(endpoint) => {
                // The endpoint's replies must come from where the client sent to.
                node.translate_replies(endpoint.into(), datagram.from, datagram.to);
                datagram.to = endpoint.into();
                endpoint
            }
            Route::NoEndpoints { service } => {
                tracing::debug!(%service, "a datagram to a service without ready endpoints");
                return Err(DatagramError::Refused);
            }
            // A ClusterIP on a port no Service has: rejected, as kube-proxy's nftables does.
            Route::Direct if table.is_cluster_ip(*to.ip()) => {
                return Err(DatagramError::Refused);
            }
            Route::Direct => to,
        };
        if node.pod(IpAddr::V4(*to.ip())).is_some() {
            return node.deliver_datagram(datagram);
        }
        if let Some(peer) = self.peer_for(to.ip()) {
            let route = FlowRoute::Fabric {
                fabric: self.fabric.clone(),
                node: peer.fabric,
            };
            self.flows.send(node, datagram, route);
            return Ok(());
        }
        if read(&self.own_range).is_some_and(|range| range.contains(to.ip())) {
            // An address of this node's range with no pod behind it.
            return Err(DatagramError::Unreachable);
        }
        if self.egress_denied(datagram.from.ip(), *to.ip()) {
            return Err(DatagramError::Denied);
        }
        self.flows.send(node, datagram, FlowRoute::Egress);
        Ok(())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A node network whose one Service, `dns` at 10.96.0.10, has UDP port 53 leading to
    /// `endpoints` on port 5353 (none: no ready endpoint).
    fn node_with_dns(endpoints: &[&str], allow_egress: bool) -> (Arc<NodeNetwork>, VirtualNetwork) {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": "dns", "namespace": "default" },
            "spec": { "clusterIP": "10.96.0.10", "ports": [{ "protocol": "UDP", "port": 53, "targetPort": 5353 }] },
        }))
        .unwrap();
        let addresses: Vec<_> = endpoints.iter().map(|ip| json!({ "ip": ip })).collect();
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": { "name": "dns", "namespace": "default" },
            "subsets": [{ "addresses": addresses, "ports": [{ "port": 5353, "protocol": "UDP" }] }],
        }))
        .unwrap();
        let outside = Arc::new(NodeNetwork::new(FabricClient::new("secret"), allow_egress));
        *write(&outside.services) = Arc::new(ServiceTable::build(
            &[Arc::new(service)],
            &[Arc::new(endpoints)],
        ));
        let network = VirtualNetwork::new(outside.clone());
        (outside, network)
    }

    #[tokio::test]
    async fn a_udp_flow_to_a_service_keeps_its_endpoint_and_hears_the_service_answer() {
        let (_outside, network) = node_with_dns(&["10.244.0.8", "10.244.0.9"], true);
        let client_pod = network.attach("10.244.0.5".parse().unwrap()).unwrap();
        let mut replicas = Vec::new();
        for ip in ["10.244.0.8", "10.244.0.9"] {
            let pod = network.attach(ip.parse().unwrap()).unwrap();
            let socket = pod.bind_udp(addr("0.0.0.0:5353")).unwrap();
            replicas.push((pod, socket));
        }
        let client = client_pod.bind_udp(addr("0.0.0.0:40000")).unwrap();
        for _ in 0..3 {
            client.send_to("query", addr("10.96.0.10:53")).unwrap();
        }
        let (first, second) = (&replicas[0].1, &replicas[1].1);
        let (chosen, other) = if first.try_recv().is_some() {
            (first, second)
        } else {
            (second, first)
        };
        assert!(chosen.try_recv().is_some() && chosen.try_recv().is_some());
        assert!(other.try_recv().is_none(), "one flow, one endpoint");
        chosen.send_to("answer", addr("10.244.0.5:40000")).unwrap();
        let answer = client.try_recv().unwrap();
        assert_eq!(
            answer.from,
            addr("10.96.0.10:53"),
            "as if the Service answered"
        );
        // Another client's flow goes to the other endpoint (round robin).
        let second_client = client_pod.bind_udp(addr("0.0.0.0:40001")).unwrap();
        second_client
            .send_to("query", addr("10.96.0.10:53"))
            .unwrap();
        assert!(other.try_recv().is_some());
    }

    /// No address of the node's host is reachable from a pod, advertised or not: a pod
    /// that may connect anywhere beyond the cluster still cannot reach the node's APIs or
    /// anything else listening on the host.
    #[tokio::test]
    async fn no_address_of_the_host_is_reachable_from_a_pod() {
        let (outside, network) = node_with_dns(&[], true);
        let (nodes, _) = skiff_client::reflector::store::<Node>();
        outside.update_nodes(&nodes, "n1");
        let pod = network.attach("10.244.0.5".parse().unwrap()).unwrap();
        let socket = pod.bind_udp(addr("0.0.0.0:40000")).unwrap();
        let host: Vec<Ipv4Addr> = host_addresses()
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(ip) if !ip.is_loopback() => Some(ip),
                _ => None,
            })
            .collect();
        assert!(
            !host.is_empty(),
            "this machine has a non-loopback IPv4 address"
        );
        for ip in host {
            let to = SocketAddr::from((ip, 9));
            assert_eq!(socket.send_to("x", to), Err(DatagramError::Denied), "{to}");
            let refused = pod.connect(to).await.err();
            assert_eq!(refused, Some(ConnectError::Denied), "{to}");
        }
    }

    #[tokio::test]
    async fn udp_without_endpoints_is_refused_and_egress_follows_policy() {
        let (outside, network) = node_with_dns(&[], true);
        let pod = network.attach("10.244.0.5".parse().unwrap()).unwrap();
        let socket = pod.bind_udp(addr("0.0.0.0:40000")).unwrap();
        assert_eq!(
            socket.send_to("query", addr("10.96.0.10:53")),
            Err(DatagramError::Refused)
        );
        assert_eq!(
            socket.send_to("query", addr("10.96.0.10:54")),
            Err(DatagramError::Refused),
            "a ClusterIP port no Service has"
        );
        for never in ["169.254.169.254:80", "255.255.255.255:67", "0.0.0.0:53"] {
            assert_eq!(
                socket.send_to("x", addr(never)),
                Err(DatagramError::Denied),
                "{never}"
            );
        }
        outside.add_pod(
            "10.244.0.5".parse().unwrap(),
            PodInfo {
                namespace: "default".into(),
                deny_egress: true,
            },
        );
        assert_eq!(
            socket.send_to("x", addr("192.0.2.1:53")),
            Err(DatagramError::Denied),
            "the pod denies itself egress"
        );
        let (_, closed) = node_with_dns(&[], false);
        let pod = closed.attach("10.244.0.5".parse().unwrap()).unwrap();
        let socket = pod.bind_udp(addr("0.0.0.0:40000")).unwrap();
        assert_eq!(
            socket.send_to("x", addr("192.0.2.1:53")),
            Err(DatagramError::Denied),
            "the node denies egress"
        );
    }
}
