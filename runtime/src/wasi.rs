//! The host side of an instance: store data for core modules and components, and the WASI
//! context built from a [`ContainerSpec`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::container::StartError;
use crate::limits::MemoryLimiter;
use crate::logs::{GuestOutput, LogStream};
use crate::network::Network;
use crate::spec::{ContainerSpec, VolumeMount};

/// Store data of a core module (WASI preview 1).
pub(crate) struct P1Host {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
}

/// Store data of a component (WASI preview 2, wasi:http).
pub(crate) struct P2Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: NoOutgoingHttp,
    pub(crate) limiter: MemoryLimiter,
}

impl P2Host {
    pub(crate) fn new(wasi: WasiCtx, limiter: MemoryLimiter) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
            limiter,
        }
    }
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for P2Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Refuses every outgoing HTTP request: outgoing traffic will go through the pod network,
/// which is not wired to wasi:http yet.
pub(crate) struct NoOutgoingHttp;

type OutgoingResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<
            dyn Future<Output = wasmtime_wasi_http::Result<(), wasmtime_wasi_http::Error>> + Send,
        >,
    ) -> Box<dyn Future<Output = OutgoingResult> + Send> {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A WASI context for one instance of `spec`: argv, env, stdio into the log sink, volumes,
/// and sockets only through the spec's network.
pub(crate) fn builder(spec: &ContainerSpec) -> Result<WasiCtxBuilder, StartError> {
    let mut builder = WasiCtxBuilder::new();
    builder.arg(&spec.name).args(&spec.args).envs(&spec.env);
    builder.stdout(GuestOutput::new(LogStream::Stdout, spec.log_sink.clone()));
    builder.stderr(GuestOutput::new(LogStream::Stderr, spec.log_sink.clone()));
    for volume in &spec.volumes {
        preopen(&mut builder, volume)?;
    }
    match &spec.network {
        Some(network) => allow_network(&mut builder, network.clone()),
        None => {
            builder
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
        }
    }
    Ok(builder)
}

fn preopen(builder: &mut WasiCtxBuilder, volume: &VolumeMount) -> Result<(), StartError> {
    let perms = if volume.read_only {
        FsPerms::ReadOnly
    } else {
        FsPerms::ReadWrite
    };
    // wasmtime-wasi opens the directory with cap-std: every guest path is resolved beneath it,
    // and `..`, absolute paths and symlinks leading out of it are refused.
    builder
        .preopened_dir(&volume.host_path, &volume.guest_path, perms)
        .map_err(|source| StartError::OpenVolume {
            host: volume.host_path.clone(),
            guest: volume.guest_path.clone(),
            source: source.into(),
        })?;
    Ok(())
}

fn allow_network(builder: &mut WasiCtxBuilder, network: Arc<dyn Network>) {
    builder
        .allow_tcp(network.tcp())
        .allow_udp(network.udp())
        .allow_ip_name_lookup(network.name_lookup());
    builder.socket_addr_check(move |addr, usage| {
        let permitted = network.permits(addr, usage.into());
        Box::pin(async move { permitted })
    });
}
