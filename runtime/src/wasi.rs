//! The host side of an instance: store data for core modules and components, and the WASI
//! context built from a [`ContainerSpec`].

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::container::StartError;
use crate::limits::MemoryLimiter;
use crate::logs::{GuestOutput, LogStream};
use crate::network::PodNetwork;
use crate::outgoing::PodHttp;
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
    /// Sends the guest's outgoing `wasi:http` requests through its pod network.
    pub(crate) hooks: PodHttp,
    pub(crate) limiter: MemoryLimiter,
    /// The pod network the guest's sockets live in (src/sockets/); `None`: no sockets.
    pub(crate) network: Option<PodNetwork>,
}

impl P2Host {
    pub(crate) fn new(wasi: WasiCtx, limiter: MemoryLimiter, network: Option<PodNetwork>) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: PodHttp::new(network.clone()),
            limiter,
            network,
        }
    }
}

impl wasmtime_wasi_io::IoView for P2Host {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
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

/// A WASI context for one instance of `spec`: argv, env, stdio into the log sink and volumes.
/// Its own (kernel) sockets stay off: components get theirs from the pod network
/// (src/sockets/), and WASI preview 1 has none.
pub(crate) fn builder(spec: &ContainerSpec) -> Result<WasiCtxBuilder, StartError> {
    let mut builder = WasiCtxBuilder::new();
    builder.arg(&spec.name).args(&spec.args).envs(&spec.env);
    builder.stdout(GuestOutput::new(LogStream::Stdout, spec.log_sink.clone()));
    builder.stderr(GuestOutput::new(LogStream::Stderr, spec.log_sink.clone()));
    for volume in &spec.volumes {
        preopen(&mut builder, volume)?;
    }
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
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
