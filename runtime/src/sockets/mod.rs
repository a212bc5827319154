//! `wasi:sockets` over the pod network: skiff's own `tcp`, `tcp-create-socket`, `udp`,
//! `udp-create-socket` and `ip-name-lookup`, and the linker that puts them beside the rest of
//! WASI 0.2 from wasmtime-wasi (shared/WASMTIME-48.md, "Sockets").
//!
//! A guest's sockets live in its pod's [`PodNetwork`]; a container without one gets
//! `access-denied` for every socket and lookup. No kernel socket is ever opened for a guest:
//! wasmtime-wasi's own socket context stays denied, and only its `network` handle and error
//! conversions are used.

mod lookup;
mod streams;
mod tcp;
mod udp;

use std::net::SocketAddr;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpSocketAddress};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

use crate::network::{BindError, ConnectError, DatagramError, PodNetwork, ResolveError};
use crate::wasi::P2Host;

// `pub` because the generated bindings re-export them; the module itself is crate-private.
pub use lookup::Resolution;
pub use tcp::TcpSocket;
pub use udp::{IncomingDatagramStream, OutgoingDatagramStream, UdpSocket};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "skiff:runtime/pod-sockets",
        imports: { default: tracing | trappable },
        require_store_data_send: true,
        trappable_error_type: {
            "wasi:sockets/network.error-code" => wasmtime_wasi::p2::SocketError,
        },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:sockets/network": wasmtime_wasi::p2::bindings::sockets::network,
            "wasi:sockets/tcp.tcp-socket": crate::sockets::TcpSocket,
            "wasi:sockets/udp.udp-socket": crate::sockets::UdpSocket,
            "wasi:sockets/udp.incoming-datagram-stream": crate::sockets::IncomingDatagramStream,
            "wasi:sockets/udp.outgoing-datagram-stream": crate::sockets::OutgoingDatagramStream,
            "wasi:sockets/ip-name-lookup.resolve-address-stream": crate::sockets::Resolution,
        },
    });
}

use bindings::wasi::sockets::{
    ip_name_lookup, tcp as tcp_bindings, tcp_create_socket, udp as udp_bindings, udp_create_socket,
};

/// The store data the socket interfaces work on: the instance's resource table and its
/// pod's network, if it has one.
pub(crate) struct PodSocketsView<'a> {
    table: &'a mut ResourceTable,
    pod: Option<&'a PodNetwork>,
}

impl PodSocketsView<'_> {
    /// The pod's network, or `access-denied` for a container that has none.
    fn pod(&self) -> Result<PodNetwork, SocketError> {
        self.pod
            .cloned()
            .ok_or_else(|| ErrorCode::AccessDenied.into())
    }
}

struct PodSockets;

impl HasData for PodSockets {
    type Data<'a> = PodSocketsView<'a>;
}

fn pod_sockets(host: &mut P2Host) -> PodSocketsView<'_> {
    PodSocketsView {
        table: &mut host.table,
        pod: host.network.as_ref(),
    }
}

/// Links WASI 0.2 for components: wasmtime-wasi's interfaces one by one, except the socket
/// interfaces skiff provides over the pod network.
pub(crate) fn add_to_linker(linker: &mut Linker<P2Host>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};

    type T = P2Host;
    let l = linker;
    wasmtime_wasi_io::add_to_linker_async(l)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    // The network handle and the error conversions are wasmtime-wasi's.
    sockets::network::add_to_linker::<T, WasiSockets>(l, &Default::default(), T::sockets)?;
    sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;

    tcp_bindings::add_to_linker::<T, PodSockets>(l, pod_sockets)?;
    tcp_create_socket::add_to_linker::<T, PodSockets>(l, pod_sockets)?;
    udp_bindings::add_to_linker::<T, PodSockets>(l, pod_sockets)?;
    udp_create_socket::add_to_linker::<T, PodSockets>(l, pod_sockets)?;
    ip_name_lookup::add_to_linker::<T, PodSockets>(l, pod_sockets)?;
    Ok(())
}

// The generated bindings convert `SocketError` through the `network` interface's host trait;
// it is linked from wasmtime-wasi, so only the conversion is ever called here.
impl network::Host for PodSocketsView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let error = self.table.get(&error)?;
        Ok(error.downcast_ref::<std::io::Error>().map(ErrorCode::from))
    }
}

impl network::HostNetwork for PodSocketsView<'_> {
    fn drop(&mut self, network: Resource<network::Network>) -> wasmtime::Result<()> {
        self.table.delete(network)?;
        Ok(())
    }
}

fn bind_error(error: BindError) -> ErrorCode {
    match error {
        BindError::AddressInUse | BindError::NoEphemeralPort => ErrorCode::AddressInUse,
        BindError::NotBindable => ErrorCode::AddressNotBindable,
    }
}

fn connect_error(error: ConnectError) -> ErrorCode {
    match error {
        ConnectError::Refused => ErrorCode::ConnectionRefused,
        ConnectError::Unreachable => ErrorCode::RemoteUnreachable,
        ConnectError::Denied => ErrorCode::AccessDenied,
        ConnectError::TimedOut => ErrorCode::Timeout,
        ConnectError::Reset => ErrorCode::ConnectionReset,
        ConnectError::NoEphemeralPort => ErrorCode::AddressInUse,
    }
}

fn datagram_error(error: DatagramError) -> ErrorCode {
    match error {
        DatagramError::Refused => ErrorCode::ConnectionRefused,
        DatagramError::Unreachable => ErrorCode::RemoteUnreachable,
        DatagramError::Denied => ErrorCode::AccessDenied,
        DatagramError::TooLarge => ErrorCode::DatagramTooLarge,
    }
}

fn resolve_error(error: ResolveError) -> ErrorCode {
    match error {
        ResolveError::NotFound => ErrorCode::NameUnresolvable,
        ResolveError::Temporary => ErrorCode::TemporaryResolverFailure,
        ResolveError::Denied => ErrorCode::AccessDenied,
    }
}

/// Checks that a socket of `family` may use `addr`: its family, unicast (the pod network has no
/// multicast or broadcast), and not IPv4-mapped (WASI 0.2 sockets do not mix families).
fn check_address(family: network::IpAddressFamily, addr: SocketAddr) -> Result<(), ErrorCode> {
    use network::IpAddressFamily;

    let family_ok = match (family, addr) {
        (IpAddressFamily::Ipv4, SocketAddr::V4(_)) => true,
        (IpAddressFamily::Ipv6, SocketAddr::V6(v6)) => v6.ip().to_ipv4_mapped().is_none(),
        _ => false,
    };
    let unicast = match addr {
        SocketAddr::V4(v4) => !v4.ip().is_multicast() && !v4.ip().is_broadcast(),
        SocketAddr::V6(v6) => !v6.ip().is_multicast(),
    };
    if family_ok && unicast {
        Ok(())
    } else {
        Err(ErrorCode::InvalidArgument)
    }
}

fn from_wasi(addr: IpSocketAddress) -> SocketAddr {
    addr.into()
}

fn to_wasi(addr: SocketAddr) -> IpSocketAddress {
    addr.into()
}
