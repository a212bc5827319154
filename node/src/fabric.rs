//! The fabric: TCP streams and UDP flows between pods on different nodes.
//!
//! Every node agent listens on a fabric port (published on its Node as the annotation
//! [`FABRIC_ANNOTATION`]). A connection from a pod here to a pod on another node becomes
//! one HTTP/2 `CONNECT` stream to that node's fabric port, whose agent connects it to the
//! pod's listener in its pod network; after the `200` the stream carries the bytes both
//! ways. A UDP flow between two pods is a `CONNECT` stream too, marked with the header
//! `skiff-protocol: udp`, carrying framed datagrams both ways ([`crate::udp`]); the far
//! agent answers `200` for any pod of its own (a datagram to a port nobody bound is dropped
//! there). One HTTP/2 connection per pair of nodes carries every stream between them.
//!
//! In a cluster whose nodes have certificates ([`crate::certificate`]) the fabric is TLS
//! both ways: a node presents its certificate, signed by the cluster CA, and takes
//! connections only from peers presenting one too, so only nodes get in and nobody reads
//! the traffic between them. Every stream must carry the cluster's node token as well (on
//! its own the only guard of the plain fabric of in-process test clusters).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_runtime::{ConnectError, PodStream, VirtualNetwork};
use tokio::net::{TcpListener, TcpStream};

use crate::udp::UdpFlows;

/// The Node annotation naming its fabric endpoint (`ADDRESS:PORT`).
pub const FABRIC_ANNOTATION: &str = "skiff.dev/fabric-endpoint";

/// The header telling the far node which pod address the connection comes from.
const FROM_HEADER: &str = "skiff-from";

/// The header that makes a stream a UDP flow (`udp`); without it the stream is TCP.
const PROTOCOL_HEADER: &str = "skiff-protocol";

/// HTTP/2 flow control of the fabric: hyper's defaults (a 64 KiB window per stream, 16 KiB
/// frames) stall a stream between nodes every 64 KiB for a round trip; these let one
/// stream fill the link (`skiff bench network`, TCP across nodes).
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const MAX_FRAME: u32 = 256 * 1024;

/// How long a peer may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection the fabric speaks HTTP/2 over: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Serves other nodes' streams and UDP flows (kept in `flows`) into this node's pods until
/// dropped; over TLS requiring a node's client certificate when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    network: VirtualNetwork,
    token: Arc<str>,
    flows: Arc<UdpFlows>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a fabric connection failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let network = network.clone();
        let token = token.clone();
        let flows = flows.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let io: Box<dyn Io> = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "a fabric handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "a fabric handshake timed out");
                            return;
                        }
                    }
                }
                None => Box::new(tcp),
            };
            let service = hyper::service::service_fn(move |request| {
                let network = network.clone();
                let token = token.clone();
                let flows = flows.clone();
                async move { Ok::<_, Infallible>(open(request, &network, &token, &flows).await) }
            });
            if let Err(error) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME)
                .serve_connection(TokioIo::new(io), service)
                .await
            {
                tracing::debug!(%error, %peer, "fabric connection ended");
            }
        });
    }
}

/// Answers one `CONNECT`: connects to the pod and, once the caller has the `200`, copies
/// bytes both ways until either side closes; or, for a UDP flow, carries its datagrams.
async fn open(
    mut request: Request<Incoming>,
    network: &VirtualNetwork,
    token: &str,
    flows: &Arc<UdpFlows>,
) -> Response<Empty<Bytes>> {
    let answer = |status: StatusCode| {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = status;
        response
    };
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| crate::api::constant_time_eq(given.as_bytes(), token.as_bytes()));
    // A node without a fabric token accepts no stream, not every empty bearer.
    if !authorized || token.is_empty() {
        return answer(StatusCode::UNAUTHORIZED);
    }
    if request.method() != Method::CONNECT {
        return answer(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(to) = request
        .uri()
        .authority()
        .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
    else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let given_from: Option<SocketAddr> = request
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let from = given_from.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let udp = request
        .headers()
        .get(PROTOCOL_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"udp"));
    if udp {
        // Replies go back to the sender's address: a flow must name it.
        if given_from.is_none_or(|from| from.ip().is_unspecified() || from.port() == 0) {
            return answer(StatusCode::BAD_REQUEST);
        }
        if network.pod(to.ip().to_canonical()).is_none() {
            return answer(StatusCode::NOT_FOUND);
        }
        if !flows.has_room() {
            return answer(StatusCode::SERVICE_UNAVAILABLE);
        }
        let upgrade = hyper::upgrade::on(&mut request);
        let network = network.clone();
        let flows = flows.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let stream = TokioIo::new(upgraded);
                    flows.carry_inbound(stream, network, to, from).await;
                }
                Err(error) => tracing::debug!(%error, %to, "a UDP flow did not open"),
            }
        });
        return answer(StatusCode::OK);
    }
    let mut pod = match network.connect_to_pod(to, from).await {
        Ok(stream) => stream,
        Err(error) => return answer(status_of(error)),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let mut upgraded = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut pod).await;
            }
            Err(error) => tracing::debug!(%error, %to, "a fabric stream did not open"),
        }
    });
    answer(StatusCode::OK)
}

fn status_of(error: ConnectError) -> StatusCode {
    match error {
        ConnectError::Refused => StatusCode::BAD_GATEWAY,
        ConnectError::Unreachable => StatusCode::NOT_FOUND,
        ConnectError::Denied => StatusCode::FORBIDDEN,
        ConnectError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error_of(status: StatusCode) -> ConnectError {
    match status {
        StatusCode::BAD_GATEWAY => ConnectError::Refused,
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => ConnectError::Denied,
        StatusCode::GATEWAY_TIMEOUT => ConnectError::TimedOut,
        _ => ConnectError::Unreachable,
    }
}

/// Opens streams to pods on other nodes, over one HTTP/2 connection per node.
pub struct FabricClient {
    token: String,
    /// TLS towards other nodes, once this node has its certificate.
    tls: std::sync::RwLock<Option<tokio_rustls::TlsConnector>>,
    connections: tokio::sync::Mutex<HashMap<SocketAddr, SendRequest<Empty<Bytes>>>>,
}

impl FabricClient {
    pub fn new(token: impl Into<String>) -> FabricClient {
        FabricClient {
            token: token.into(),
            tls: std::sync::RwLock::new(None),
            connections: Default::default(),
        }
    }

    /// Speaks TLS to other nodes from now on, with `config` (this node's certificate, the
    /// cluster CA).
    pub fn use_tls(&self, config: Arc<rustls::ClientConfig>) {
        let connector = tokio_rustls::TlsConnector::from(config);
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(connector);
    }

    /// A stream from `from` (a pod here) to `to` (a pod on the node whose fabric endpoint
    /// is `node`).
    pub async fn connect(
        &self,
        node: SocketAddr,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<PodStream, ConnectError> {
        let upgraded = self.open(node, from, to, false).await?;
        Ok(PodStream::new(TokioIo::new(upgraded)))
    }

    /// A UDP flow from `from` (a pod here) to `to` (a pod on the node whose fabric endpoint
    /// is `node`): a stream for framed datagrams ([`crate::udp`]).
    pub async fn open_udp(
        &self,
        node: SocketAddr,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<TokioIo<Upgraded>, ConnectError> {
        Ok(TokioIo::new(self.open(node, from, to, true).await?))
    }

    /// Opens a `CONNECT` stream to `to` on the node at `node`.
    async fn open(
        &self,
        node: SocketAddr,
        from: SocketAddr,
        to: SocketAddr,
        udp: bool,
    ) -> Result<Upgraded, ConnectError> {
        let mut sender = self.sender(node).await?;
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri(to.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(FROM_HEADER, from.to_string());
        if udp {
            request = request.header(PROTOCOL_HEADER, "udp");
        }
        let request = request
            .body(Empty::new())
            .map_err(|_| ConnectError::Unreachable)?;
        let mut response = sender.send_request(request).await.map_err(|error| {
            tracing::debug!(%error, %node, "a fabric request failed");
            ConnectError::Unreachable
        })?;
        if response.status() != StatusCode::OK {
            return Err(error_of(response.status()));
        }
        hyper::upgrade::on(&mut response)
            .await
            .map_err(|_| ConnectError::Reset)
    }

    /// The HTTP/2 connection to `node`, dialled when there is none or it closed.
    async fn sender(&self, node: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, ConnectError> {
        let mut connections = self.connections.lock().await;
        if let Some(sender) = connections.get(&node)
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        let tcp = TcpStream::connect(node).await.map_err(|error| {
            tracing::debug!(%error, %node, "dialling a node's fabric port failed");
            ConnectError::Unreachable
        })?;
        let _ = tcp.set_nodelay(true);
        let connector = self.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
        let io: Box<dyn Io> = match connector {
            Some(connector) => {
                // A node's certificate is valid for its address, which the fabric endpoint is.
                let name = rustls::pki_types::ServerName::IpAddress(node.ip().into());
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ConnectError::TimedOut)?
                    .map_err(|error| {
                        tracing::warn!(%error, %node, "the TLS handshake with a node's fabric failed");
                        ConnectError::Unreachable
                    })?;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|_| ConnectError::Unreachable)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %node, "fabric connection ended");
            }
        });
        connections.insert(node, sender.clone());
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A node's fabric server in front of `network`, with its UDP flows in `flows`, and its
    /// address.
    async fn fabric_with(network: VirtualNetwork, token: &str, flows: Arc<UdpFlows>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, network, Arc::from(token), flows, None));
        address
    }

    async fn fabric(network: VirtualNetwork, token: &str) -> SocketAddr {
        fabric_with(network, token, UdpFlows::new(crate::udp::FLOW_IDLE)).await
    }

    /// A node's way out for datagrams in these tests: every address beyond its pods is a pod
    /// on the node whose fabric endpoint is `peer`.
    struct FabricOutside {
        flows: Arc<UdpFlows>,
        fabric: Arc<FabricClient>,
        peer: SocketAddr,
    }

    impl skiff_runtime::Outside for FabricOutside {
        fn send_datagram(
            &self,
            node: &VirtualNetwork,
            datagram: skiff_runtime::Datagram,
        ) -> Result<(), skiff_runtime::DatagramError> {
            let route = crate::udp::FlowRoute::Fabric {
                fabric: self.fabric.clone(),
                node: self.peer,
            };
            self.flows.send(node, datagram, route);
            Ok(())
        }
    }

    #[tokio::test]
    async fn udp_flows_carry_datagrams_to_the_other_node_and_replies_back() {
        // The far node: a pod answering each datagram, upper-cased, to its sender.
        let far_flows = UdpFlows::new(crate::udp::FLOW_IDLE);
        let far = VirtualNetwork::new(Arc::new(FabricOutside {
            flows: far_flows.clone(),
            fabric: Arc::new(FabricClient::new("secret")),
            // Replies take the flow the near node opened: no route of its own is needed.
            peer: "127.0.0.1:9".parse().unwrap(),
        }));
        let far_pod = far.attach("10.244.1.2".parse().unwrap()).unwrap();
        let echo = far_pod.bind_udp("0.0.0.0:5353".parse().unwrap()).unwrap();
        tokio::spawn(async move {
            loop {
                let datagram = echo.recv().await;
                let reply = format!(
                    "{} from {}",
                    String::from_utf8_lossy(&datagram.data).to_uppercase(),
                    datagram.from
                );
                echo.send_to(reply, datagram.from).unwrap();
            }
        });
        let endpoint = fabric_with(far, "secret", far_flows.clone()).await;

        let near_flows = UdpFlows::new(crate::udp::FLOW_IDLE);
        let near = VirtualNetwork::new(Arc::new(FabricOutside {
            flows: near_flows.clone(),
            fabric: Arc::new(FabricClient::new("secret")),
            peer: endpoint,
        }));
        let near_pod = near.attach("10.244.0.5".parse().unwrap()).unwrap();
        let client = near_pod.bind_udp("0.0.0.0:40000".parse().unwrap()).unwrap();
        for message in ["hello", "again"] {
            client
                .send_to(message, "10.244.1.2:5353".parse().unwrap())
                .unwrap();
            let reply = tokio::time::timeout(std::time::Duration::from_secs(10), client.recv())
                .await
                .expect("a reply over the fabric: likely deadlocked");
            assert_eq!(reply.from, "10.244.1.2:5353".parse().unwrap());
            assert_eq!(
                reply.data,
                format!("{} from 10.244.0.5:40000", message.to_uppercase())
            );
        }
        assert_eq!(
            near_flows.len(),
            1,
            "one flow carries the datagrams of a pair"
        );
        assert_eq!(
            far_flows.len(),
            1,
            "and the far node keeps it for the replies"
        );

        let from: SocketAddr = "10.244.0.5:40001".parse().unwrap();
        let unknown = FabricClient::new("secret")
            .open_udp(endpoint, from, "10.244.1.3:53".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(unknown, ConnectError::Unreachable, "no such pod there");
        let denied = FabricClient::new("guess")
            .open_udp(endpoint, from, "10.244.1.2:5353".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(denied, ConnectError::Denied, "the node token is required");
    }

    #[tokio::test]
    async fn streams_reach_pods_on_the_other_node_and_only_with_the_token() {
        // The far node: one pod echoing what it reads, upper-cased.
        let far = VirtualNetwork::default();
        let pod = far.attach("10.244.1.2".parse().unwrap()).unwrap();
        let mut listener = pod.listen("0.0.0.0:8080".parse().unwrap()).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, peer) = listener.accept().await;
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    let n = stream.read(&mut buffer).await.unwrap();
                    let reply = format!(
                        "{} from {peer}",
                        String::from_utf8_lossy(&buffer[..n]).to_uppercase()
                    );
                    stream.write_all(reply.as_bytes()).await.unwrap();
                    stream.shutdown().await.unwrap();
                });
            }
        });
        let endpoint = fabric(far, "secret").await;

        let client = FabricClient::new("secret");
        let from: SocketAddr = "10.244.0.5:40000".parse().unwrap();
        for _ in 0..3 {
            let mut stream = client
                .connect(endpoint, from, "10.244.1.2:8080".parse().unwrap())
                .await
                .unwrap();
            stream.write_all(b"hello").await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            assert_eq!(reply, "HELLO from 10.244.0.5:40000");
        }
        assert_eq!(
            client.connections.lock().await.len(),
            1,
            "one connection carries every stream"
        );

        let refused = client
            .connect(endpoint, from, "10.244.1.2:9999".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(refused, ConnectError::Refused);
        let unknown = client
            .connect(endpoint, from, "10.244.1.3:8080".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(unknown, ConnectError::Unreachable);

        let stranger = FabricClient::new("guess");
        let denied = stranger
            .connect(endpoint, from, "10.244.1.2:8080".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(denied, ConnectError::Denied);
    }
}
