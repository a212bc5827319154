//! The pod network: TCP and UDP between pods with no kernel socket.
//!
//! A node has one [`VirtualNetwork`]. Each pod is attached to it as a [`PodNetwork`]: its own
//! IP, its own loopback (127.0.0.0/8 and `::1`) and one TCP and one UDP port space shared by
//! all of its containers, as a network namespace is in Kubernetes. A container given a
//! `PodNetwork` gets `wasi:sockets` over it (src/sockets/):
//!
//! - a bind registers (address, port) in the pod's port space of its protocol and never
//!   touches a host port; two pods may both listen on TCP 8080 or bind UDP 53, and one pod
//!   may hold TCP 53 and UDP 53 at once.
//! - a connect to the pod's loopback or its own IP reaches the pod's own listeners; to another
//!   pod's IP on this node, that pod's listeners bound to its IP or the wildcard. The bytes
//!   travel through in-memory pipes (`tokio::io::duplex`). Where nothing listens the
//!   connection is refused.
//! - a datagram takes the same route to the socket bound at its destination and waits in that
//!   socket's receive queue, bounded in bytes like a kernel's; a full queue drops it, as a
//!   kernel does. Where nothing is bound the datagram is dropped and the sender, if it is a
//!   connected socket, gets `connection-refused` on its next call (a kernel's ICMP
//!   port-unreachable). Datagrams carry at most [`MAX_DATAGRAM`] bytes.
//! - any other address goes to the node's [`Outside`] hook: Services (ClusterIPs), pods on
//!   other nodes, egress. So do names other than IP literals and `localhost`. The default,
//!   [`NoOutside`], refuses connections and answers datagrams with "unreachable" (a kernel
//!   with no route there fails `sendto` with `ENETUNREACH`).
//! - host-originated connections (probes, NodePort, the fabric from other nodes) come in
//!   through [`VirtualNetwork::connect_to_pod`] and datagrams through
//!   [`VirtualNetwork::deliver_datagram`]; `port-forward` connects from inside the pod with
//!   [`PodNetwork::connect`]. Replies of a Service's endpoint are made to look as if they came
//!   from the Service with [`VirtualNetwork::translate_replies`], as conntrack's reverse NAT
//!   does for kube-proxy.

mod ports;
mod stream;
mod udp;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

pub use ports::BindError;
use ports::PortSpace;
pub use stream::PodStream;
pub(crate) use stream::{PIPE_BUFFER, ReadHalf, WriteHalf};
use udp::ReplyTranslations;
pub(crate) use udp::{DEFAULT_RECEIVE_BUFFER, Inbox};
pub use udp::{Datagram, DatagramError, MAX_DATAGRAM, PodUdpSocket};

/// How long a connection waits for room in a listener's full accept queue before it fails
/// with [`ConnectError::TimedOut`] (a kernel retries its SYN for about as long).
const BACKLOG_WAIT: Duration = Duration::from_secs(30);

/// Accept queue length of a [`PodListener`].
const HOST_BACKLOG: usize = 128;

/// A future a socket keeps while its guest polls.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a connection could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens at the address.
    #[error("connection refused")]
    Refused,
    /// There is no route to the address (e.g. not a pod of this node).
    #[error("no route to the address")]
    Unreachable,
    /// Network policy forbids the connection.
    #[error("connection denied by network policy")]
    Denied,
    /// The listener did not take the connection in time.
    #[error("connection timed out")]
    TimedOut,
    /// The far side reset the connection while it was being set up.
    #[error("connection reset")]
    Reset,
    /// The pod has no ephemeral port left to connect from.
    #[error("no ephemeral port left in the pod")]
    NoEphemeralPort,
}

/// Why a name could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist or has no address.
    #[error("name not found")]
    NotFound,
    /// The resolver failed this time; a retry may succeed.
    #[error("temporary resolver failure")]
    Temporary,
    /// Network policy forbids the lookup.
    #[error("name lookup denied by network policy")]
    Denied,
}

/// Why a pod could not be attached to a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// Another attached pod has this IP.
    #[error("{0} is already attached to this network")]
    AddressInUse(IpAddr),
    /// The IP cannot name a pod: unspecified, loopback or multicast.
    #[error("{0} cannot be a pod's address")]
    InvalidAddress(IpAddr),
}

/// Where the pod network sends what is not a pod of this node. The node implements it to
/// route ClusterIPs to endpoints, other nodes' pod IPs over the fabric and egress by policy;
/// for an endpoint on this node it connects back in with [`VirtualNetwork::connect_to_pod`].
#[async_trait::async_trait]
pub trait Outside: Send + Sync + 'static {
    /// Opens a TCP connection from a pod, `from` being the pod's IP and the ephemeral port of
    /// the connecting socket, to `to`, which is no pod of this node. The guest sees its
    /// remote address as `to` whatever the stream really reaches. Default: refused.
    async fn connect(
        &self,
        node: &VirtualNetwork,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<PodStream, ConnectError> {
        let _ = (node, from, to);
        Err(ConnectError::Refused)
    }

    /// Resolves `name` for the pod with IP `from`: cluster DNS, then upstream. Called for every
    /// name but IP literals and `localhost`, which the runtime answers itself. Default: not
    /// found.
    async fn resolve(
        &self,
        node: &VirtualNetwork,
        from: IpAddr,
        name: &str,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let _ = (node, from, name);
        Err(ResolveError::NotFound)
    }

    /// Sends a datagram from a pod (`datagram.from` is the pod's IP and the sending socket's
    /// port) to `datagram.to`, which is no pod of this node. Called from the guest's `send`:
    /// it must not wait, only queue (or drop, as a full kernel queue does) and return. `Ok`
    /// means handed on, not delivered. [`DatagramError::Refused`] tells a connected sender
    /// that nothing is bound there (it sees `connection-refused` next). Default: unreachable,
    /// what a kernel's `sendto` says (`ENETUNREACH`) when it has no route to the address.
    fn send_datagram(
        &self,
        node: &VirtualNetwork,
        datagram: Datagram,
    ) -> Result<(), DatagramError> {
        let _ = (node, datagram);
        Err(DatagramError::Unreachable)
    }
}

/// An [`Outside`] with nothing outside: connections beyond the node's pods are refused,
/// datagrams there are unreachable and only IP literals and `localhost` resolve.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOutside;

impl Outside for NoOutside {}

/// A node's pod network: the pods attached to it and the hook for everything else. Cheap to
/// clone. `VirtualNetwork::default()` has [`NoOutside`].
#[derive(Clone)]
pub struct VirtualNetwork {
    node: Arc<Node>,
}

struct Node {
    /// Attached pods by IP. Weak: a pod leaves the network when its last handle is dropped.
    pods: Mutex<HashMap<IpAddr, Weak<Pod>>>,
    outside: Arc<dyn Outside>,
    /// Datagrams whose source is rewritten on delivery: replies of Service endpoints.
    replies: Mutex<ReplyTranslations>,
}

impl Default for VirtualNetwork {
    fn default() -> Self {
        Self::new(Arc::new(NoOutside))
    }
}

impl std::fmt::Debug for VirtualNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pods: Vec<IpAddr> = lock(&self.node.pods)
            .iter()
            .filter(|(_, pod)| pod.strong_count() > 0)
            .map(|(ip, _)| *ip)
            .collect();
        f.debug_struct("VirtualNetwork")
            .field("pods", &pods)
            .finish_non_exhaustive()
    }
}

impl VirtualNetwork {
    /// A network whose traffic beyond its own pods goes to `outside`.
    pub fn new(outside: Arc<dyn Outside>) -> Self {
        Self {
            node: Arc::new(Node {
                pods: Mutex::new(HashMap::new()),
                outside,
                replies: Mutex::new(ReplyTranslations::default()),
            }),
        }
    }

    /// Attaches a pod with IP `ip`. The pod stays attached while any clone of the returned
    /// handle (or a socket made from it) is alive.
    pub fn attach(&self, ip: IpAddr) -> Result<PodNetwork, AttachError> {
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return Err(AttachError::InvalidAddress(ip));
        }
        let mut pods = lock(&self.node.pods);
        if pods.get(&ip).is_some_and(|pod| pod.strong_count() > 0) {
            return Err(AttachError::AddressInUse(ip));
        }
        let pod = Arc::new(Pod {
            ip,
            node: self.node.clone(),
            ports: Mutex::new(PortSpace::new()),
            udp_ports: Mutex::new(PortSpace::new()),
        });
        pods.insert(ip, Arc::downgrade(&pod));
        Ok(PodNetwork { pod })
    }

    /// The attached pod with IP `ip`.
    pub fn pod(&self, ip: IpAddr) -> Option<PodNetwork> {
        self.node.pod(ip).map(|pod| PodNetwork { pod })
    }

    /// Opens a connection from the host side to a pod's listener on `to` (the pod's IP and a
    /// port), as a probe, a NodePort or a stream from another node does. `from` is the peer
    /// address the guest sees. Listeners bound to the pod's loopback are not reachable this
    /// way (use [`PodNetwork::connect`]). Fails with [`ConnectError::Unreachable`] if `to` is
    /// no pod of this network, [`ConnectError::Refused`] if nothing listens there.
    pub async fn connect_to_pod(
        &self,
        to: SocketAddr,
        from: SocketAddr,
    ) -> Result<PodStream, ConnectError> {
        let pod = self
            .node
            .pod(canonical(to.ip()))
            .ok_or(ConnectError::Unreachable)?;
        deliver(&pod, canonical_addr(to), from).await
    }

    /// Delivers a datagram from the host side to the socket a pod has bound at
    /// `datagram.to` (the pod's IP and a port), as the fabric does for another node's pods and
    /// egress for replies from beyond the cluster. `datagram.from` is the source the guest
    /// sees (after [`translate_replies`](Self::translate_replies)). Sockets bound to a pod's
    /// loopback are not reachable this way. `Ok` also when the receiving queue was full and
    /// the datagram dropped. Fails with [`DatagramError::Unreachable`] if `to` is no pod of
    /// this network, [`DatagramError::Refused`] if nothing is bound there,
    /// [`DatagramError::TooLarge`] beyond [`MAX_DATAGRAM`] bytes.
    pub fn deliver_datagram(&self, datagram: Datagram) -> Result<(), DatagramError> {
        let to = canonical(datagram.to.ip());
        if is_loopback(to) {
            return Err(DatagramError::Unreachable);
        }
        let pod = self.node.pod(to).ok_or(DatagramError::Unreachable)?;
        deliver_datagram(&pod, datagram)
    }

    /// Makes datagrams from `from` to `to` appear to come from `appear_from` while the flow
    /// is in use (it lapses after two minutes without such a datagram, as a conntrack entry
    /// does). The node's service proxy calls it when it sends a client's datagram from `to`
    /// to a Service (`appear_from`) on to an endpoint (`from`): the endpoint's replies then
    /// come from the address the client sent to, wherever the endpoint runs.
    pub fn translate_replies(&self, from: SocketAddr, to: SocketAddr, appear_from: SocketAddr) {
        lock(&self.node.replies).insert(
            canonical_addr(from),
            canonical_addr(to),
            canonical_addr(appear_from),
        );
    }
}

impl Node {
    fn pod(&self, ip: IpAddr) -> Option<Arc<Pod>> {
        lock(&self.pods).get(&ip).and_then(Weak::upgrade)
    }
}

/// One pod's interface on a [`VirtualNetwork`]: its IP, its loopback and its port space.
/// Give a clone to each of the pod's containers ([`ContainerSpec::network`]); cheap to clone.
///
/// [`ContainerSpec::network`]: crate::ContainerSpec::network
#[derive(Clone)]
pub struct PodNetwork {
    pod: Arc<Pod>,
}

struct Pod {
    ip: IpAddr,
    node: Arc<Node>,
    /// TCP: listeners' accept queues.
    ports: Mutex<PortSpace<mpsc::Sender<Incoming>>>,
    /// UDP: bound sockets' receive queues, a port space of its own.
    udp_ports: Mutex<PortSpace<Inbox>>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let mut pods = lock(&self.node.pods);
        // The entry may already name a new pod that took over the IP.
        if pods
            .get(&self.ip)
            .is_some_and(|pod| std::ptr::eq(pod.as_ptr(), self))
        {
            pods.remove(&self.ip);
        }
    }
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork")
            .field("ip", &self.pod.ip)
            .finish_non_exhaustive()
    }
}

impl PodNetwork {
    /// The pod's IP.
    pub fn ip(&self) -> IpAddr {
        self.pod.ip
    }

    /// The network the pod is attached to.
    pub fn network(&self) -> VirtualNetwork {
        VirtualNetwork {
            node: self.pod.node.clone(),
        }
    }

    /// Opens a connection from inside the pod, as one of its containers would: to the pod's
    /// loopback (what `port-forward` does), another pod or, through the [`Outside`] hook,
    /// beyond.
    pub async fn connect(&self, to: SocketAddr) -> Result<PodStream, ConnectError> {
        let to = canonical_addr(to);
        if to.ip().is_unspecified() || to.port() == 0 {
            return Err(ConnectError::Refused);
        }
        let lease = self
            .bind(SocketAddr::new(self.source_for(to.ip()), 0))
            .map_err(|_| ConnectError::NoEphemeralPort)?;
        let from = lease.addr();
        let mut stream = self.open(from, to).await?;
        stream.lease = Some(lease);
        Ok(stream)
    }

    /// Listens on `addr` in the pod's port space from the host side, as a guest would: how
    /// the node serves a port of the pod itself (e.g. the containerPort of a `wasi:http`
    /// service container) so that other pods, probes and Services reach it like any guest
    /// listener. `addr` is the pod's IP, its loopback or the wildcard; port 0 takes an
    /// ephemeral port. The port is the pod's until the listener is dropped.
    pub fn listen(&self, addr: SocketAddr) -> Result<PodListener, BindError> {
        let lease = self.bind(canonical_addr(addr))?;
        let queue = self.listen_on(&lease, HOST_BACKLOG);
        Ok(PodListener { lease, queue })
    }

    /// Binds `addr` in the pod's port space: the pod's IP, its loopback or the wildcard;
    /// port 0 takes an ephemeral port.
    pub(crate) fn bind(&self, addr: SocketAddr) -> Result<PortLease, BindError> {
        self.check_bindable(addr.ip())?;
        let (id, addr) = lock(&self.pod.ports).bind(addr)?;
        Ok(PortLease {
            pod: self.pod.clone(),
            protocol: Protocol::Tcp,
            id,
            addr,
        })
    }

    /// Binds a UDP socket at `addr` in the pod's UDP port space (the rules of [`Self::bind`]):
    /// datagrams to it queue, up to `receive_buffer` bytes, on the returned inbox from now on.
    pub(crate) fn bind_datagram(
        &self,
        addr: SocketAddr,
        receive_buffer: usize,
    ) -> Result<(PortLease, Inbox), BindError> {
        let addr = canonical_addr(addr);
        self.check_bindable(addr.ip())?;
        let inbox = Inbox::new(receive_buffer);
        let mut ports = lock(&self.pod.udp_ports);
        let (id, addr) = ports.bind(addr)?;
        ports.listen(id, addr.port(), inbox.clone());
        drop(ports);
        let lease = PortLease {
            pod: self.pod.clone(),
            protocol: Protocol::Udp,
            id,
            addr,
        };
        Ok((lease, inbox))
    }

    /// Binds a UDP socket in the pod from the host side, as a guest would: `addr` is the pod's
    /// IP, its loopback or the wildcard; port 0 takes an ephemeral port. The port is the pod's
    /// until the socket is dropped.
    pub fn bind_udp(&self, addr: SocketAddr) -> Result<PodUdpSocket, BindError> {
        let (lease, inbox) = self.bind_datagram(addr, DEFAULT_RECEIVE_BUFFER)?;
        Ok(PodUdpSocket::new(self.clone(), lease, inbox))
    }

    fn check_bindable(&self, ip: IpAddr) -> Result<(), BindError> {
        if ip.is_unspecified() || is_loopback(ip) || canonical(ip) == self.pod.ip {
            Ok(())
        } else {
            Err(BindError::NotBindable)
        }
    }

    /// Sends a datagram from a socket of this pod (`datagram.from`, its address as sent from:
    /// never the wildcard): to the pod itself for its loopback or its IP, in memory to another
    /// pod of the node, anything else to the [`Outside`] hook. Never waits.
    pub(crate) fn send_datagram(&self, datagram: Datagram) -> Result<(), DatagramError> {
        if datagram.data.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge);
        }
        let to = canonical(datagram.to.ip());
        if is_loopback(to) || to == self.pod.ip {
            return deliver_datagram(&self.pod, datagram);
        }
        if is_loopback(datagram.from.ip()) {
            // A socket bound to the loopback has no route off the pod.
            return Err(DatagramError::Unreachable);
        }
        match self.pod.node.pod(to) {
            Some(target) => deliver_datagram(&target, datagram),
            None => self
                .pod
                .node
                .outside
                .send_datagram(&self.network(), datagram),
        }
    }

    /// Makes a bound address listen; connections to it queue, up to `backlog`, on the
    /// returned receiver.
    pub(crate) fn listen_on(&self, lease: &PortLease, backlog: usize) -> mpsc::Receiver<Incoming> {
        let (queue, incoming) = mpsc::channel(backlog.max(1));
        lock(&self.pod.ports).listen(lease.id, lease.addr.port(), queue);
        incoming
    }

    /// The address a socket of this pod connects from to reach `to`: the loopback of its
    /// family for loopback, else the pod's IP.
    pub(crate) fn source_for(&self, to: IpAddr) -> IpAddr {
        match to {
            IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => self.pod.ip,
        }
    }

    /// Opens a connection from `from` (an address of this pod) to `to`. The future owns what
    /// it needs, so a socket can keep it while the guest polls.
    pub(crate) fn open(
        &self,
        from: SocketAddr,
        to: SocketAddr,
    ) -> BoxFuture<Result<PodStream, ConnectError>> {
        let to = canonical_addr(to);
        let pod = self.pod.clone();
        Box::pin(async move {
            let target = if is_loopback(to.ip()) || to.ip() == pod.ip {
                Some(pod.clone())
            } else {
                pod.node.pod(to.ip())
            };
            match target {
                Some(target) => deliver(&target, to, from).await,
                None => {
                    let node = VirtualNetwork {
                        node: pod.node.clone(),
                    };
                    pod.node.outside.connect(&node, from, to).await
                }
            }
        })
    }

    /// Resolves a name for a guest of this pod: IP literals and `localhost` here, anything
    /// else through the [`Outside`] hook.
    pub(crate) fn resolve(&self, name: &str) -> BoxFuture<Result<Vec<IpAddr>, ResolveError>> {
        let literal = name
            .strip_prefix('[')
            .and_then(|name| name.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Box::pin(std::future::ready(Ok(vec![canonical(ip)])));
        }
        if name.eq_ignore_ascii_case("localhost") || name.eq_ignore_ascii_case("localhost.") {
            let loopback = vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            return Box::pin(std::future::ready(Ok(loopback)));
        }
        let pod = self.pod.clone();
        let name = name.to_string();
        Box::pin(async move {
            let node = VirtualNetwork {
                node: pod.node.clone(),
            };
            let found = pod.node.outside.resolve(&node, pod.ip, &name).await?;
            Ok(found.into_iter().map(canonical).collect())
        })
    }
}

/// A listener the host holds in a pod's port space ([`PodNetwork::listen`]).
pub struct PodListener {
    lease: PortLease,
    queue: mpsc::Receiver<Incoming>,
}

impl std::fmt::Debug for PodListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodListener")
            .field("local_addr", &self.lease.addr)
            .finish_non_exhaustive()
    }
}

impl PodListener {
    /// The address listened on (the wildcard stays the wildcard).
    pub fn local_addr(&self) -> SocketAddr {
        self.lease.addr
    }

    /// Waits for the next connection: its stream and the connecting side's address.
    pub async fn accept(&mut self) -> (PodStream, SocketAddr) {
        match self.queue.recv().await {
            Some(incoming) => (incoming.stream, incoming.remote),
            // The queue's sender lives in the port space as long as the lease: never closed
            // while this listener exists.
            None => std::future::pending().await,
        }
    }
}

/// A bound (address, port) of a pod, released when dropped.
pub(crate) struct PortLease {
    pod: Arc<Pod>,
    protocol: Protocol,
    id: u64,
    addr: SocketAddr,
}

/// Which of a pod's port spaces a [`PortLease`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Tcp,
    Udp,
}

impl PortLease {
    /// The address bound, as asked (the wildcard stays the wildcard) with the port chosen.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        match self.protocol {
            Protocol::Tcp => lock(&self.pod.ports).release(self.id, self.addr.port()),
            Protocol::Udp => lock(&self.pod.udp_ports).release(self.id, self.addr.port()),
        }
    }
}

/// A connection waiting in a listener's queue.
pub(crate) struct Incoming {
    /// The listener's end.
    pub(crate) stream: PodStream,
    /// The address the connection was made to: the accepted socket's local address.
    pub(crate) local: SocketAddr,
    /// The connecting side's address.
    pub(crate) remote: SocketAddr,
}

/// Queues a connection to `to` on the listener of `pod` that takes it.
async fn deliver(pod: &Pod, to: SocketAddr, from: SocketAddr) -> Result<PodStream, ConnectError> {
    let queue = lock(&pod.ports).listener(to).ok_or(ConnectError::Refused)?;
    let permit = match tokio::time::timeout(BACKLOG_WAIT, queue.reserve()).await {
        Ok(Ok(permit)) => permit,
        // The listener closed while we waited.
        Ok(Err(_)) => return Err(ConnectError::Refused),
        Err(_) => return Err(ConnectError::TimedOut),
    };
    let (client, server) = PodStream::pair(PIPE_BUFFER);
    permit.send(Incoming {
        stream: server,
        local: to,
        remote: from,
    });
    Ok(client)
}

/// Queues a datagram on the socket of `pod` bound at its destination, rewriting its source if
/// it is the reply of a translated flow. A full queue drops it (still `Ok`, as for a kernel).
fn deliver_datagram(pod: &Pod, mut datagram: Datagram) -> Result<(), DatagramError> {
    if datagram.data.len() > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge);
    }
    datagram.from = canonical_addr(datagram.from);
    datagram.to = canonical_addr(datagram.to);
    lock(&pod.node.replies).translate(&mut datagram);
    let inbox = lock(&pod.udp_ports)
        .listener(datagram.to)
        .ok_or(DatagramError::Refused)?;
    inbox.push(datagram);
    Ok(())
}

/// 127.0.0.0/8 or `::1`.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// Listens on `addr` in `pod` and answers each connection with its peer address.
    fn serve_peer_address(pod: &PodNetwork, addr: SocketAddr) -> PortLease {
        let lease = pod.bind(addr).unwrap();
        let mut incoming = pod.listen_on(&lease, 8);
        tokio::spawn(async move {
            while let Some(mut connection) = incoming.recv().await {
                let reply = format!("{} -> {}", connection.remote, connection.local);
                connection.stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        lease
    }

    async fn read_reply(mut stream: PodStream) -> String {
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }

    #[tokio::test]
    async fn pods_reach_each_other_and_their_own_loopback() {
        let net = VirtualNetwork::default();
        let a = net.attach(ip("10.244.1.7")).unwrap();
        let b = net.attach(ip("10.244.1.8")).unwrap();
        let _a_server = serve_peer_address(&a, addr("0.0.0.0:8080"));
        let _b_server = serve_peer_address(&b, addr("10.244.1.8:8080"));
        let _b_local = serve_peer_address(&b, addr("127.0.0.1:9090"));

        let reply = read_reply(a.connect(addr("10.244.1.8:8080")).await.unwrap()).await;
        assert!(reply.starts_with("10.244.1.7:"), "{reply}");
        assert!(reply.ends_with(" -> 10.244.1.8:8080"), "{reply}");
        let reply = read_reply(b.connect(addr("10.244.1.7:8080")).await.unwrap()).await;
        assert!(reply.ends_with(" -> 10.244.1.7:8080"), "{reply}");
        let reply = read_reply(a.connect(addr("127.0.0.1:8080")).await.unwrap()).await;
        assert!(reply.starts_with("127.0.0.1:"), "{reply}");
        assert_eq!(
            a.connect(addr("10.244.1.8:9090")).await.unwrap_err(),
            ConnectError::Refused,
            "b's loopback listener is not reachable from a"
        );
        assert_eq!(
            a.connect(addr("127.0.0.1:9090")).await.unwrap_err(),
            ConnectError::Refused,
            "a's loopback is not b's"
        );
        assert_eq!(
            a.connect(addr("8.8.8.8:53")).await.unwrap_err(),
            ConnectError::Refused,
            "nothing outside by default"
        );
    }

    #[tokio::test]
    async fn the_host_reaches_a_pod_listener_by_pod_ip() {
        let net = VirtualNetwork::default();
        let pod = net.attach(ip("10.244.1.7")).unwrap();
        let _server = serve_peer_address(&pod, addr("0.0.0.0:80"));
        let reply = read_reply(
            net.connect_to_pod(addr("10.244.1.7:80"), addr("10.244.1.1:5000"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(reply, "10.244.1.1:5000 -> 10.244.1.7:80");
        assert_eq!(
            net.connect_to_pod(addr("10.244.1.9:80"), addr("10.244.1.1:5000"))
                .await
                .unwrap_err(),
            ConnectError::Unreachable
        );
    }

    #[tokio::test]
    async fn the_host_listens_in_a_pod_port_space_like_a_guest() {
        let net = VirtualNetwork::default();
        let pod = net.attach(ip("10.244.1.7")).unwrap();
        let other = net.attach(ip("10.244.1.8")).unwrap();
        let mut listener = pod.listen(addr("0.0.0.0:8080")).unwrap();
        assert_eq!(listener.local_addr(), addr("0.0.0.0:8080"));
        assert_eq!(
            pod.bind(addr("10.244.1.7:8080")).err(),
            Some(BindError::AddressInUse)
        );
        assert_eq!(
            pod.listen(addr("10.244.1.8:80")).err(),
            Some(BindError::NotBindable)
        );
        let client = tokio::spawn(async move {
            let mut stream = other.connect(addr("10.244.1.7:8080")).await.unwrap();
            stream.write_all(b"ping").await.unwrap();
            stream.shutdown().await.unwrap();
        });
        let (stream, peer) = listener.accept().await;
        assert_eq!(peer.ip(), ip("10.244.1.8"));
        assert_eq!(read_reply(stream).await, "ping");
        client.await.unwrap();
        drop(listener);
        pod.bind(addr("10.244.1.7:8080")).unwrap();
    }

    #[tokio::test]
    async fn a_pod_leaves_the_network_with_its_last_handle() {
        let net = VirtualNetwork::default();
        let pod = net.attach(ip("10.244.1.7")).unwrap();
        assert_eq!(
            net.attach(ip("10.244.1.7")).unwrap_err(),
            AttachError::AddressInUse(ip("10.244.1.7"))
        );
        let lease = pod.bind(addr("0.0.0.0:80")).unwrap();
        drop(pod);
        assert!(net.pod(ip("10.244.1.7")).is_some(), "a socket keeps it");
        drop(lease);
        assert!(net.pod(ip("10.244.1.7")).is_none());
        let again = net.attach(ip("10.244.1.7")).unwrap();
        again.bind(addr("0.0.0.0:80")).unwrap();
        assert_eq!(
            net.attach(ip("127.0.0.1")).unwrap_err(),
            AttachError::InvalidAddress(ip("127.0.0.1"))
        );
    }

    fn datagram(from: &str, to: &str, data: &'static str) -> Datagram {
        Datagram {
            from: addr(from),
            to: addr(to),
            data: data.into(),
        }
    }

    #[tokio::test]
    async fn datagrams_reach_the_socket_bound_at_their_destination() {
        let net = VirtualNetwork::default();
        let a = net.attach(ip("10.244.1.7")).unwrap();
        let b = net.attach(ip("10.244.1.8")).unwrap();
        // Both pods bind UDP 53, and a also TCP 53: separate port spaces.
        let a_dns = a.bind_udp(addr("0.0.0.0:53")).unwrap();
        let b_dns = b.bind_udp(addr("10.244.1.8:53")).unwrap();
        let _a_tcp = a.bind(addr("0.0.0.0:53")).unwrap();
        assert_eq!(
            a.bind_udp(addr("127.0.0.1:53")).err(),
            Some(BindError::AddressInUse)
        );
        let b_local = b.bind_udp(addr("127.0.0.1:9")).unwrap();

        let client = a.bind_udp(addr("0.0.0.0:0")).unwrap();
        let port = client.local_addr().port();
        assert!(port >= 32768, "an ephemeral port: {port}");
        client.send_to("to b", addr("10.244.1.8:53")).unwrap();
        let got = b_dns.try_recv().unwrap();
        assert_eq!(got.from, SocketAddr::new(ip("10.244.1.7"), port));
        assert_eq!(got.data, "to b");
        client.send_to("to me", addr("127.0.0.1:53")).unwrap();
        let got = a_dns.try_recv().unwrap();
        assert_eq!(got.from, SocketAddr::new(ip("127.0.0.1"), port));
        assert_eq!(
            client.send_to("no", addr("10.244.1.8:9")),
            Err(DatagramError::Refused),
            "b's loopback socket is not reachable from a"
        );
        assert!(b_local.try_recv().is_none());
        assert_eq!(
            client.send_to(vec![0; MAX_DATAGRAM + 1], addr("10.244.1.8:53")),
            Err(DatagramError::TooLarge)
        );
        assert_eq!(
            client.send_to("out", addr("8.8.8.8:53")),
            Err(DatagramError::Unreachable),
            "no route beyond the node by default"
        );

        // From the host: to a pod's IP only, and a dropped socket frees its port.
        net.deliver_datagram(datagram("10.244.9.1:4000", "10.244.1.8:53", "in"))
            .unwrap();
        assert_eq!(b_dns.try_recv().unwrap().from, addr("10.244.9.1:4000"));
        assert_eq!(
            net.deliver_datagram(datagram("10.244.9.1:4000", "127.0.0.1:9", "in")),
            Err(DatagramError::Unreachable)
        );
        assert_eq!(
            net.deliver_datagram(datagram("10.244.9.1:4000", "10.244.1.9:53", "in")),
            Err(DatagramError::Unreachable)
        );
        drop(b_dns);
        assert_eq!(
            net.deliver_datagram(datagram("10.244.9.1:4000", "10.244.1.8:53", "in")),
            Err(DatagramError::Refused)
        );
        b.bind_udp(addr("0.0.0.0:53")).unwrap();
    }

    #[tokio::test]
    async fn replies_of_a_translated_flow_come_from_the_service() {
        let net = VirtualNetwork::default();
        let client_pod = net.attach(ip("10.244.1.7")).unwrap();
        let endpoint_pod = net.attach(ip("10.244.1.8")).unwrap();
        let client = client_pod.bind_udp(addr("0.0.0.0:40000")).unwrap();
        let endpoint = endpoint_pod.bind_udp(addr("0.0.0.0:5353")).unwrap();
        net.translate_replies(
            addr("10.244.1.8:5353"),
            addr("10.244.1.7:40000"),
            addr("10.96.0.10:53"),
        );
        endpoint
            .send_to("answer", addr("10.244.1.7:40000"))
            .unwrap();
        assert_eq!(client.try_recv().unwrap().from, addr("10.96.0.10:53"));
        // The same endpoint port to another client is untouched.
        let other = client_pod.bind_udp(addr("0.0.0.0:40001")).unwrap();
        endpoint
            .send_to("answer", addr("10.244.1.7:40001"))
            .unwrap();
        assert_eq!(other.try_recv().unwrap().from, addr("10.244.1.8:5353"));
    }

    #[tokio::test]
    async fn the_outside_hook_gets_what_is_not_a_local_pod() {
        struct Echo;
        #[async_trait::async_trait]
        impl Outside for Echo {
            async fn connect(
                &self,
                _node: &VirtualNetwork,
                from: SocketAddr,
                to: SocketAddr,
            ) -> Result<PodStream, ConnectError> {
                let (mine, theirs) = PodStream::pair(64);
                let mut mine = mine;
                mine.write_all(format!("{from} -> {to}").as_bytes())
                    .await
                    .unwrap();
                Ok(theirs)
            }

            async fn resolve(
                &self,
                _node: &VirtualNetwork,
                from: IpAddr,
                name: &str,
            ) -> Result<Vec<IpAddr>, ResolveError> {
                match name {
                    "web.default.svc.cluster.local" if from == ip("10.244.1.7") => {
                        Ok(vec![ip("::ffff:10.96.0.10")])
                    }
                    _ => Err(ResolveError::NotFound),
                }
            }
        }
        let net = VirtualNetwork::new(Arc::new(Echo));
        let pod = net.attach(ip("10.244.1.7")).unwrap();
        let reply = read_reply(pod.connect(addr("10.96.0.10:80")).await.unwrap()).await;
        assert!(reply.starts_with("10.244.1.7:"), "{reply}");
        assert!(reply.ends_with(" -> 10.96.0.10:80"), "{reply}");

        assert_eq!(
            pod.resolve("web.default.svc.cluster.local").await,
            Ok(vec![ip("10.96.0.10")])
        );
        assert_eq!(pod.resolve("nope").await, Err(ResolveError::NotFound));
        assert_eq!(pod.resolve("10.1.2.3").await, Ok(vec![ip("10.1.2.3")]));
        assert_eq!(pod.resolve("[::1]").await, Ok(vec![ip("::1")]));
        assert_eq!(
            pod.resolve("localhost").await,
            Ok(vec![ip("127.0.0.1"), ip("::1")])
        );
    }
}
