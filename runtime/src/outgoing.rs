//! Outgoing `wasi:http` requests, sent through the pod network.
//!
//! A component's `wasi:http/outgoing-handler` requests leave the way its sockets do: the
//! name in the request's authority is resolved for the pod (cluster DNS, then upstream,
//! through the node's [`Outside`](crate::Outside) hook) and the connection is opened from the
//! pod's IP with [`PodNetwork::connect`], so Services, pods on other nodes and egress policy
//! apply to HTTP exactly as to TCP. No kernel socket is opened for the guest unless the node
//! lets the pod out (egress). `https` is TLS over that connection, verified against the
//! Mozilla roots (webpki-roots); a request is HTTP/1.1, one connection each.
//!
//! A container without a pod network gets `HTTP-request-denied`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::network::{ConnectError, PodNetwork, ResolveError};

/// How long a connection may take when the guest sets no `connect-timeout` (about as long
/// as a kernel retries its SYN).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the response head, and then each piece of the body, may take when the guest
/// sets no `first-byte-timeout` or `between-bytes-timeout` (wasmtime's defaults).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);

/// The outcome of one request: the response and the connection's remaining work, which the
/// host drives to its end (wasmtime-wasi-http's contract for [`WasiHttpHooks::send_request`]).
type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
)>;

/// The `wasi:http` hooks of one instance: requests go out through its pod's network.
pub(crate) struct PodHttp {
    network: Option<PodNetwork>,
}

impl PodHttp {
    pub(crate) fn new(network: Option<PodNetwork>) -> Self {
        Self { network }
    }
}

impl WasiHttpHooks for PodHttp {
    /// Plain `http` when the guest names no scheme: inside a cluster most Services speak it,
    /// and `https` must be asked for.
    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let network = self.network.clone();
        Box::new(async move {
            let network = network.ok_or(Error::HttpRequestDenied)?;
            send(&network, request, options.unwrap_or_default()).await
        })
    }
}

async fn send(
    network: &PodNetwork,
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
) -> Sent {
    let target = Target::of(request.uri())?;
    let connect_timeout = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let stream = tokio::time::timeout(connect_timeout, connect(network, &target))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Stream> = if target.tls {
        Box::new(tls(stream, &target.host).await?)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The connection does its I/O in its own task; the response and its body come back
    // through `sender`. The host awaits the task once the guest is done with the response.
    let connection = tokio::spawn(connection);

    // Only a proxy is sent the scheme and authority (the Host header carries the authority).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;

    let first_byte = options.first_byte_timeout.unwrap_or(RESPONSE_TIMEOUT);
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(RESPONSE_TIMEOUT)
        .max(Duration::from_nanos(1));
    let response = response.map(|body| TimedBody::new(body, between_bytes).boxed_unsync());
    let finished = async move {
        match connection.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::InternalError(Some(
                "the connection task failed".to_string(),
            ))),
        }
    };
    Ok((response, Box::new(finished)))
}

/// Where a request goes, from its URI.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// The host as written, without IPv6 brackets.
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    fn of(uri: &http::Uri) -> Result<Target, Error> {
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") | None => false,
            Some(_) => return Err(Error::HttpProtocolError),
        };
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(Error::HttpRequestUriInvalid);
        }
        Ok(Target {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// Resolves the target's host for the pod and connects to its addresses in turn, as a
/// resolver-aware client would.
async fn connect(
    network: &PodNetwork,
    target: &Target,
) -> Result<crate::network::PodStream, Error> {
    let addresses = network
        .resolve(&target.host)
        .await
        .map_err(|error| match error {
            ResolveError::NotFound => Error::DnsError {
                rcode: Some("NXDOMAIN".to_string()),
                info_code: None,
            },
            ResolveError::Temporary => Error::DnsTimeout,
            ResolveError::Denied => Error::DestinationIpProhibited,
        })?;
    let mut last = Error::DestinationNotFound;
    for ip in addresses {
        match network.connect((ip, target.port).into()).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error_of(error),
        }
    }
    Err(last)
}

fn error_of(error: ConnectError) -> Error {
    match error {
        ConnectError::Refused => Error::ConnectionRefused,
        ConnectError::Unreachable => Error::DestinationIpUnroutable,
        ConnectError::Denied => Error::DestinationIpProhibited,
        ConnectError::TimedOut => Error::ConnectionTimeout,
        ConnectError::Reset => Error::ConnectionTerminated,
        ConnectError::NoEphemeralPort => Error::ConnectionLimitReached,
    }
}

/// A connection hyper can speak over: a pod stream, or TLS over one.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn tls<S: Stream>(stream: S, host: &str) -> Result<impl Stream, Error> {
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    tokio_rustls::TlsConnector::from(client_config())
        .connect(name, stream)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => Error::TlsCertificateError,
            _ => Error::Tls(error),
        })
}

/// TLS for guests: the Mozilla roots, nothing from the node's own trust store.
fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A response body that fails when the server goes quiet for longer than the guest's
/// `between-bytes-timeout`.
struct TimedBody {
    body: hyper::body::Incoming,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(body: hyper::body::Incoming, limit: Duration) -> Self {
        Self {
            body,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.limit;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Error::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Result<Target, Error> {
        Target::of(&uri.parse::<http::Uri>().expect("a valid URI"))
    }

    #[test]
    fn targets_take_the_scheme_default_port() {
        let plain = target("http://backend.default.svc.cluster.local/hello").unwrap();
        assert_eq!(
            plain,
            Target {
                host: "backend.default.svc.cluster.local".to_string(),
                port: 80,
                tls: false,
            }
        );
        let secure = target("https://example.com/").unwrap();
        assert_eq!((secure.port, secure.tls), (443, true));
        let explicit = target("http://10.96.0.10:8080/").unwrap();
        assert_eq!(
            (explicit.host.as_str(), explicit.port),
            ("10.96.0.10", 8080)
        );
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets() {
        let target = target("http://[fd00::1]:8080/").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("fd00::1", 8080));
    }

    #[test]
    fn unknown_schemes_and_missing_authorities_are_refused() {
        assert!(matches!(
            target("ftp://example.com/"),
            Err(Error::HttpProtocolError)
        ));
        assert!(matches!(
            target("/relative"),
            Err(Error::HttpRequestUriInvalid)
        ));
    }
}
