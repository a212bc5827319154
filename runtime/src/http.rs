//! HTTP services: a fresh instance per request from a pre-instantiated component, as
//! `wasmtime serve` does, and a plain HTTP/1.1 server for `skiff run --listen`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use wasmtime::Engine;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::container::{Container, StartError, classify, new_store};
use crate::limits::{Cpu, MemoryGauge, MemoryLimiter};
use crate::spec::{ContainerSpec, ExitStatus};
use crate::wasi::{self, P2Host};

/// The body of a response produced by a guest.
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Why a request got no response from the guest.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The container does not run an HTTP service.
    #[error("container {name} is not an HTTP service")]
    NotHttp {
        /// The container.
        name: String,
    },
    /// The container is stopping or stopped.
    #[error("container {name} is stopped")]
    Stopped {
        /// The container.
        name: String,
    },
    /// The request's instance could not be set up.
    #[error("preparing an instance for the request")]
    Prepare(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The guest answered with an error code instead of a response.
    #[error("the guest failed the request: {0}")]
    Guest(String),
    /// The guest ended without setting a response.
    #[error("the guest sent no response: {0}")]
    NoResponse(ExitStatus),
}

impl From<StartError> for HttpError {
    fn from(error: StartError) -> Self {
        HttpError::Prepare(error.into())
    }
}

/// The per-request machinery of an HTTP service container.
pub(crate) struct HttpService {
    engine: Engine,
    pre: ProxyPre<P2Host>,
    spec: ContainerSpec,
    cpu: Arc<Cpu>,
    /// Shared by every request's instance: the service's memory is theirs together.
    memory: Arc<MemoryGauge>,
    closed: AtomicBool,
    /// Requests whose instance is still alive (the body may outlive the response head).
    in_flight: watch::Sender<usize>,
    /// The request instances' tasks; aborted when the container is dropped.
    requests: Mutex<JoinSet<()>>,
}

/// Counts one request in flight until dropped, however its task ends (even aborted).
struct InFlight(watch::Sender<usize>);

impl InFlight {
    fn enter(count: &watch::Sender<usize>) -> Self {
        count.send_modify(|count| *count += 1);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

impl HttpService {
    pub(crate) fn new(
        engine: Engine,
        pre: ProxyPre<P2Host>,
        spec: ContainerSpec,
        cpu: Arc<Cpu>,
        memory: Arc<MemoryGauge>,
    ) -> Self {
        Self {
            engine,
            pre,
            spec,
            cpu,
            memory,
            closed: AtomicBool::new(false),
            in_flight: watch::channel(0).0,
            requests: Mutex::new(JoinSet::new()),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Resolves once no request is in flight.
    pub(crate) async fn drained(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|count| *count == 0).await;
    }

    pub(crate) fn abort_all(&self) {
        self.requests
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .abort_all();
    }

    async fn handle<B>(
        &self,
        name: &str,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, HttpError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        if self.closed.load(Ordering::SeqCst) {
            return Err(HttpError::Stopped {
                name: name.to_string(),
            });
        }
        let wasi = wasi::builder(&self.spec)?.build();
        let mut store = new_store(
            &self.engine,
            P2Host::new(
                wasi,
                MemoryLimiter::new(self.spec.memory_limit_bytes, self.memory.clone()),
                self.spec.network.clone(),
            ),
            &self.cpu,
        );
        let request = request.map(|body| {
            body.map_err(|error| {
                tracing::debug!(%error, "request body failed");
                wasmtime_wasi_http::Error::ConnectionTerminated
            })
        });
        let (response_tx, response_rx) = oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| HttpError::Prepare(e.into()))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(response_tx)
            .map_err(|e| HttpError::Prepare(e.into()))?;
        let (ended_tx, ended_rx) = oneshot::channel();
        let pre = self.pre.clone();
        let cpu = self.cpu.clone();
        let in_flight = InFlight::enter(&self.in_flight);
        let instance = async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            }
            .await;
            let status = match result {
                Ok(()) => ExitStatus::Exited(0),
                Err(error) => classify(&error, store.data().limiter.refused(), &cpu),
            };
            drop(store);
            let _ = ended_tx.send(status);
            drop(in_flight);
        };
        {
            let mut requests = self
                .requests
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            // Reap finished requests so the set does not grow with every request served.
            while requests.try_join_next().is_some() {}
            requests.spawn(instance);
        }
        match response_rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HttpError::Guest(format!("{code:?}"))),
            Err(_) => Err(HttpError::NoResponse(
                ended_rx.await.unwrap_or(ExitStatus::Killed),
            )),
        }
    }
}

impl Container {
    /// Serves one request with a fresh instance of this HTTP service. The response's body
    /// streams from the instance, which lives until the body is done.
    pub async fn handle_request<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, HttpError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        match &self.http {
            Some(http) => http.handle(self.name(), request).await,
            None => Err(HttpError::NotHttp {
                name: self.name().to_string(),
            }),
        }
    }
}

/// Serves an HTTP service container over plain HTTP/1.1 on `listener` until `shutdown`
/// resolves, the way `skiff run --listen` does. A request the guest fails gets a 500 with
/// the reason; connections still open at shutdown are closed.
pub async fn serve_http(
    container: Arc<Container>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        while connections.try_join_next().is_some() {}
        let container = container.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let container = container.clone();
                async move { Ok::<_, Infallible>(respond(&container, request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
    }
}

async fn respond(
    container: &Container,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<ResponseBody> {
    match container.handle_request(request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(container = container.name(), %error, "request failed");
            let status = match error {
                HttpError::Stopped { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
                _ => http::StatusCode::INTERNAL_SERVER_ERROR,
            };
            let body = http_body_util::Full::new(Bytes::from(format!("{error}\n")))
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut response = http::Response::new(body);
            *response.status_mut() = status;
            response
        }
    }
}
