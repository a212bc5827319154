//! Outgoing `wasi:http` requests go through the pod network: a frontend component reaches a
//! backend component in another pod by IP or by name, and every failure reaches the guest
//! as the `wasi:http` error it names.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use skiff_runtime::{
    Container, ExitStatus, Outside, PodListener, PodNetwork, ResolveError, VirtualNetwork,
};

use crate::{load, runtime, spec, within};

const BACKEND_IP: &str = "10.244.0.3";

/// Cluster DNS for the tests: one Service name, answered with the backend pod's IP.
struct Dns;

#[async_trait::async_trait]
impl Outside for Dns {
    async fn resolve(
        &self,
        _node: &VirtualNetwork,
        _from: IpAddr,
        name: &str,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        match name {
            "backend.default.svc.cluster.local" => Ok(vec![BACKEND_IP.parse().unwrap()]),
            _ => Err(ResolveError::NotFound),
        }
    }
}

/// A node network with a frontend pod and a backend pod.
fn pods() -> (PodNetwork, PodNetwork) {
    let net = VirtualNetwork::new(Arc::new(Dns));
    let frontend = net.attach("10.244.0.2".parse().unwrap()).unwrap();
    let backend = net.attach(BACKEND_IP.parse().unwrap()).unwrap();
    (frontend, backend)
}

/// Starts http-hello named `pod` in `network` with `env`.
fn http_hello(network: Option<&PodNetwork>, pod: &str, env: &[(&str, &str)]) -> Container {
    let (mut spec, _sink) = spec(pod);
    spec.env = [("POD_NAME", pod)]
        .iter()
        .chain(env)
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    spec.network = network.cloned();
    runtime()
        .start(&load(skiff_samples::HTTP_HELLO), spec)
        .unwrap()
}

/// Serves `container` in its pod on `listener`, as the node does for a wasi:http container.
fn serve(container: Arc<Container>, mut listener: PodListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, _peer) = listener.accept().await;
            let container = container.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let container = container.clone();
                    async move {
                        let response = container.handle_request(request).await.unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Asks `frontend` for `/` and returns the status and body of its answer.
async fn ask(frontend: &Container) -> (u16, String) {
    let request = http::Request::builder()
        .uri("http://frontend.local/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within(30, "frontend request", frontend.handle_request(request))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = within(30, "frontend body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_frontend_reaches_a_backend_pod_by_ip_and_by_service_name() {
    let (frontend_pod, backend_pod) = pods();
    let backend = Arc::new(http_hello(Some(&backend_pod), "backend", &[]));
    let listener = backend_pod.listen("0.0.0.0:8080".parse().unwrap()).unwrap();
    let server = serve(backend.clone(), listener);

    for upstream in [
        format!("http://{BACKEND_IP}:8080/by-ip"),
        "http://backend.default.svc.cluster.local:8080/by-name".to_string(),
    ] {
        let frontend = http_hello(Some(&frontend_pod), "frontend", &[("UPSTREAM", &upstream)]);
        let path = upstream.rsplit('/').next().unwrap();
        assert_eq!(
            ask(&frontend).await,
            (
                200,
                format!("hello from frontend at /\nupstream 200: hello from backend at /{path}\n")
            ),
            "{upstream}"
        );
        assert_eq!(
            within(30, "stop", frontend.stop(Duration::ZERO)).await,
            ExitStatus::Exited(0)
        );
    }
    server.abort();
}

#[tokio::test]
async fn failures_reach_the_guest_as_wasi_http_errors() {
    let (frontend_pod, _backend_pod) = pods();
    let cases = [
        // The backend pod exists but nothing listens on the port.
        (
            Some(&frontend_pod),
            format!("http://{BACKEND_IP}:8080/"),
            "ConnectionRefused",
        ),
        // No pod has this address and the node has nothing outside.
        (
            Some(&frontend_pod),
            "http://10.244.9.9/".to_string(),
            "ConnectionRefused",
        ),
        (
            Some(&frontend_pod),
            "http://nope.default.svc.cluster.local/".to_string(),
            "DnsError",
        ),
        // A container without a pod network may not send requests at all.
        (
            None,
            format!("http://{BACKEND_IP}:8080/"),
            "HttpRequestDenied",
        ),
    ];
    for (network, upstream, error) in cases {
        let frontend = http_hello(network, "frontend", &[("UPSTREAM", &upstream)]);
        let (status, body) = ask(&frontend).await;
        assert_eq!(status, 502, "{upstream}: {body}");
        assert!(
            body.contains("upstream failed: ") && body.contains(error),
            "{upstream}: expected {error} in {body:?}"
        );
    }
}

#[tokio::test]
async fn https_upstreams_must_present_a_trusted_certificate() {
    let (frontend_pod, backend_pod) = pods();
    // A TLS server in the backend pod with a certificate no public root signed.
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![BACKEND_IP.to_string()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![certificate.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut listener = backend_pod.listen("0.0.0.0:8443".parse().unwrap()).unwrap();
    let (handshakes_tx, mut handshakes) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _peer) = listener.accept().await;
            let outcome = acceptor.accept(stream).await.map(|_| ());
            let _ = handshakes_tx.send(outcome);
        }
    });

    let upstream = format!("https://{BACKEND_IP}:8443/");
    let frontend = http_hello(Some(&frontend_pod), "frontend", &[("UPSTREAM", &upstream)]);
    let (status, body) = ask(&frontend).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("TlsCertificateError"), "{body:?}");
    // The request did reach the backend pod, and the handshake is what failed.
    let handshake = within(10, "the server's handshake", handshakes.recv()).await;
    assert!(matches!(handshake, Some(Err(_))), "{handshake:?}");
    server.abort();
}
