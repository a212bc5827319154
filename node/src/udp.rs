//! UDP flows beyond this node: datagrams between a pod here and a pod on another node, or an
//! address outside the cluster.
//!
//! A flow is the pair (pod address here, far address). Its first datagram opens it; it
//! carries datagrams both ways and closes after [`FLOW_IDLE`] without one, as a conntrack
//! entry lapses.
//!
//! - To another node's pod: one HTTP/2 `CONNECT` stream to that node's fabric port (see
//!   [`crate::fabric`], the same authenticated connection TCP streams use), marked as UDP.
//!   Each datagram travels as a frame: a big-endian `u16` length, then the payload. The far
//!   node registers the stream as a flow of its own, (its pod, our pod), so that its pod's
//!   replies take the same stream back.
//! - Outside the cluster (egress): one real, connected UDP socket of the node per flow.
//!
//! Every queue is bounded and drops on overflow, as a kernel's does: [`FLOW_QUEUE`] datagrams
//! waiting per flow, [`MAX_FLOWS`] flows per node.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use skiff_runtime::{Datagram, MAX_DATAGRAM, VirtualNetwork};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::fabric::FabricClient;

/// How long a flow stays open without a datagram either way.
pub const FLOW_IDLE: Duration = Duration::from_secs(60);

/// Datagrams a flow holds while its stream or socket is busy (or still opening); more are
/// dropped.
pub const FLOW_QUEUE: usize = 128;

/// The most flows a node keeps at once; datagrams that would open more are dropped.
pub const MAX_FLOWS: usize = 16_384;

/// Where a new flow goes.
pub enum FlowRoute {
    /// To a pod on the node whose fabric endpoint is `node`.
    Fabric {
        fabric: Arc<FabricClient>,
        node: SocketAddr,
    },
    /// Outside the cluster, through a real socket.
    Egress,
}

/// This node's UDP flows, by (pod address here, far address).
pub struct UdpFlows {
    flows: Mutex<HashMap<(SocketAddr, SocketAddr), Flow>>,
    next_id: AtomicU64,
    idle: Duration,
}

struct Flow {
    /// Tells this flow from a later one of the same pair.
    id: u64,
    /// Datagrams from the pod here, for the far side.
    outgoing: mpsc::Sender<Bytes>,
}

impl UdpFlows {
    /// No flows yet; each will close after `idle` without a datagram.
    pub fn new(idle: Duration) -> Arc<UdpFlows> {
        Arc::new(UdpFlows {
            flows: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            idle,
        })
    }

    /// Sends a datagram from a pod here (`datagram.from`) to `datagram.to`: on the open flow
    /// between them if there is one (whoever opened it), else on a new flow along `route`.
    /// Never waits; a full queue, or too many flows, drops the datagram.
    pub fn send(self: &Arc<Self>, network: &VirtualNetwork, datagram: Datagram, route: FlowRoute) {
        let key = (datagram.from, datagram.to);
        let mut flows = lock(&self.flows);
        if let Some(flow) = flows.get(&key)
            && !flow.outgoing.is_closed()
        {
            if flow.outgoing.try_send(datagram.data).is_err() {
                tracing::trace!(from = %key.0, to = %key.1, "a full UDP flow dropped a datagram");
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if flows.len() >= MAX_FLOWS {
            flows.retain(|_, flow| !flow.outgoing.is_closed());
            if flows.len() >= MAX_FLOWS {
                tracing::debug!(from = %key.0, to = %key.1, "too many UDP flows: datagram dropped");
                return;
            }
        }
        let (outgoing, queue) = mpsc::channel(FLOW_QUEUE);
        // The first datagram waits in the queue while the flow opens.
        let _ = outgoing.try_send(datagram.data);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        flows.insert(key, Flow { id, outgoing });
        drop(flows);
        let this = self.clone();
        let network = network.clone();
        runtime.spawn(async move {
            let (local, remote) = key;
            match route {
                FlowRoute::Fabric { fabric, node } => {
                    match fabric.open_udp(node, local, remote).await {
                        Ok(stream) => {
                            this.carry(stream, &network, local, remote, queue).await;
                        }
                        Err(error) => {
                            tracing::debug!(%error, %local, %remote, "opening a UDP flow failed");
                        }
                    }
                }
                FlowRoute::Egress => this.egress(&network, local, remote, queue).await,
            }
            this.forget(key, id);
        });
    }

    /// Whether a flow may open (there are fewer than [`MAX_FLOWS`]).
    pub fn has_room(&self) -> bool {
        let mut flows = lock(&self.flows);
        if flows.len() >= MAX_FLOWS {
            flows.retain(|_, flow| !flow.outgoing.is_closed());
        }
        flows.len() < MAX_FLOWS
    }

    /// Carries a flow another node opened from its pod `remote` to a pod here (`local`),
    /// until the stream ends or the flow idles out. Registered as this node's flow for the
    /// pair, so the pod's replies take it back.
    pub async fn carry_inbound<S>(
        self: Arc<Self>,
        stream: S,
        network: VirtualNetwork,
        local: SocketAddr,
        remote: SocketAddr,
    ) where
        S: AsyncRead + AsyncWrite,
    {
        let key = (local, remote);
        let (outgoing, queue) = mpsc::channel(FLOW_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Replaces a flow of ours for the same pair, if any: the newest carries replies.
        lock(&self.flows).insert(key, Flow { id, outgoing });
        self.carry(stream, &network, local, remote, queue).await;
        self.forget(key, id);
    }

    /// How many flows are open.
    pub fn len(&self) -> usize {
        lock(&self.flows).len()
    }

    /// Whether no flow is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn forget(&self, key: (SocketAddr, SocketAddr), id: u64) {
        let mut flows = lock(&self.flows);
        if flows.get(&key).is_some_and(|flow| flow.id == id) {
            flows.remove(&key);
        }
    }

    /// Moves framed datagrams between `stream` and the pod at `local` until the stream ends
    /// or the flow idles out.
    async fn carry<S>(
        &self,
        stream: S,
        network: &VirtualNetwork,
        local: SocketAddr,
        remote: SocketAddr,
        mut queue: mpsc::Receiver<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let activity = Activity::new();
        let inbound = async {
            while let Ok(data) = read_frame(&mut reader).await {
                activity.touch();
                deliver(network, remote, local, data);
            }
        };
        let outbound = async {
            while let Some(data) = queue.recv().await {
                activity.touch();
                if write_frame(&mut writer, &data).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = inbound => {}
            () = outbound => {}
            () = activity.idle_for(self.idle) => {}
        }
    }

    /// Carries a flow to an address outside the cluster through a connected UDP socket of the
    /// node, until it idles out.
    async fn egress(
        &self,
        network: &VirtualNetwork,
        local: SocketAddr,
        remote: SocketAddr,
        mut queue: mpsc::Receiver<Bytes>,
    ) {
        let any = match remote {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = match tokio::net::UdpSocket::bind(any).await {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(%error, %remote, "binding an egress UDP socket failed");
                return;
            }
        };
        if let Err(error) = socket.connect(remote).await {
            tracing::debug!(%error, %remote, "no route for egress UDP");
            return;
        }
        let activity = Activity::new();
        let inbound = async {
            let mut buffer = vec![0u8; MAX_DATAGRAM];
            loop {
                // An ICMP error (e.g. port unreachable) fails one receive, not the flow.
                if let Ok(n) = socket.recv(&mut buffer).await {
                    activity.touch();
                    deliver(network, remote, local, Bytes::copy_from_slice(&buffer[..n]));
                }
            }
        };
        let outbound = async {
            while let Some(data) = queue.recv().await {
                activity.touch();
                let _ = socket.send(&data).await;
            }
        };
        tokio::select! {
            () = inbound => {}
            () = outbound => {}
            () = activity.idle_for(self.idle) => {}
        }
    }
}

/// Delivers a datagram that arrived on a flow to the pod; one nobody takes is dropped.
fn deliver(network: &VirtualNetwork, from: SocketAddr, to: SocketAddr, data: Bytes) {
    if let Err(error) = network.deliver_datagram(Datagram { from, to, data }) {
        tracing::trace!(%error, %from, %to, "a datagram from a UDP flow was dropped");
    }
}

/// When a flow last carried a datagram.
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Ends once `idle` has passed without a [`touch`](Self::touch).
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Reads one framed datagram: a big-endian `u16` length, then the payload.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Bytes> {
    let length = usize::from(reader.read_u16().await?);
    let mut data = vec![0u8; length];
    reader.read_exact(&mut data).await?;
    Ok(Bytes::from(data))
}

/// Writes one framed datagram. Datagrams are at most [`MAX_DATAGRAM`] bytes, so the length
/// always fits its `u16`.
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> std::io::Result<()> {
    let length = u16::try_from(data.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut frame = BytesMut::with_capacity(2 + data.len());
    frame.put_u16(length);
    frame.put_slice(data);
    writer.write_all(&frame).await?;
    writer.flush().await
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under this lock is one insert or remove: consistent even after a panic.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn frames_carry_datagrams_of_every_size_in_order() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let sizes = [0, 1, 1500, MAX_DATAGRAM];
        let writer = tokio::spawn(async move {
            for size in sizes {
                write_frame(&mut a, &vec![size as u8; size]).await.unwrap();
            }
        });
        for size in sizes {
            let data = read_frame(&mut b).await.unwrap();
            assert_eq!(data.len(), size);
            assert!(data.iter().all(|byte| *byte == size as u8));
        }
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn an_egress_flow_carries_datagrams_both_ways_and_idles_out() {
        // An echo server on the host, standing for a DNS server outside the cluster.
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            loop {
                let (n, peer) = server.recv_from(&mut buffer).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buffer[..n]);
                server.send_to(&reply, peer).await.unwrap();
            }
        });
        let network = VirtualNetwork::default();
        let pod = network.attach("10.244.1.7".parse().unwrap()).unwrap();
        let socket = pod.bind_udp(addr("0.0.0.0:5000")).unwrap();
        let flows = UdpFlows::new(Duration::from_millis(300));
        for message in ["one", "two"] {
            flows.send(
                &network,
                Datagram {
                    from: addr("10.244.1.7:5000"),
                    to: server_addr,
                    data: Bytes::from(message),
                },
                FlowRoute::Egress,
            );
            let reply = tokio::time::timeout(Duration::from_secs(10), socket.recv())
                .await
                .expect("an echo from outside: likely deadlocked");
            assert_eq!(reply.from, server_addr);
            assert_eq!(reply.to, addr("10.244.1.7:5000"));
            assert_eq!(reply.data, Bytes::from(format!("echo:{message}")));
        }
        assert_eq!(flows.len(), 1, "one flow carried both");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !flows.is_empty() {
            assert!(Instant::now() < deadline, "the idle flow did not close");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
