//! The embedder's hook for guest sockets.
//!
//! Today a [`Network`] is a policy over wasmtime-wasi's kernel-socket implementation of
//! `wasi:sockets`: it decides which addresses a guest may bind, listen on, accept from and
//! connect to. The node's pod network will later provide the streams itself (in-memory for
//! pods on one node, a multiplexed tunnel across nodes) by replacing `wasi:sockets/tcp` with
//! its own bindings (shared/WASMTIME-48.md); that will add methods with default
//! implementations to this trait, so today's implementations keep compiling.

use std::net::{IpAddr, SocketAddr};

use wasmtime_wasi::sockets::SocketAddrUse;

/// What a guest wants to do with an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketUse {
    /// Bind a TCP socket, explicitly or implicitly (a `connect` first binds `0.0.0.0:0`).
    TcpBind,
    /// Listen on a bound TCP socket.
    TcpListen,
    /// Accept a connection from this remote address.
    TcpAccept,
    /// Connect to this address.
    TcpConnect,
    /// Bind a UDP socket.
    UdpBind,
    /// Send a datagram to this address.
    UdpSend,
    /// Receive a datagram from this address.
    UdpReceive,
}

impl From<SocketAddrUse> for SocketUse {
    fn from(usage: SocketAddrUse) -> Self {
        match usage {
            SocketAddrUse::TcpBind => SocketUse::TcpBind,
            SocketAddrUse::TcpListen => SocketUse::TcpListen,
            SocketAddrUse::TcpAccept => SocketUse::TcpAccept,
            SocketAddrUse::TcpConnect => SocketUse::TcpConnect,
            SocketAddrUse::UdpBind => SocketUse::UdpBind,
            SocketAddrUse::UdpSend => SocketUse::UdpSend,
            SocketAddrUse::UdpReceive => SocketUse::UdpReceive,
        }
    }
}

/// Sockets for a container, supplied by the embedder. A container given no `Network` has no
/// sockets at all.
pub trait Network: Send + Sync + 'static {
    /// Whether the guest may use `addr` for `usage`. Called on every bind, listen, accept,
    /// connect and datagram; must be quick.
    fn permits(&self, addr: SocketAddr, usage: SocketUse) -> bool;

    /// Whether the guest may use TCP at all. Default: yes.
    fn tcp(&self) -> bool {
        true
    }

    /// Whether the guest may use UDP at all. Default: no.
    fn udp(&self) -> bool {
        false
    }

    /// Whether the guest may resolve names. Default: no.
    fn name_lookup(&self) -> bool {
        false
    }
}

/// TCP on the host's loopback interface only: binds to 127.0.0.0/8 or `::1` (and the
/// wildcard port-0 bind that precedes every `connect`), connections to loopback addresses.
/// For tests and `skiff run`; a guest on it can reach nothing beyond this machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopbackNetwork;

impl Network for LoopbackNetwork {
    fn permits(&self, addr: SocketAddr, usage: SocketUse) -> bool {
        match usage {
            SocketUse::TcpBind => {
                addr.ip().is_loopback() || (addr.ip().is_unspecified() && addr.port() == 0)
            }
            SocketUse::TcpListen | SocketUse::TcpAccept | SocketUse::TcpConnect => {
                is_loopback(addr.ip())
            }
            SocketUse::UdpBind | SocketUse::UdpSend | SocketUse::UdpReceive => false,
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_network_allows_only_loopback() {
        let net = LoopbackNetwork;
        assert!(net.permits("127.0.0.1:8080".parse().unwrap(), SocketUse::TcpBind));
        assert!(net.permits("0.0.0.0:0".parse().unwrap(), SocketUse::TcpBind));
        assert!(!net.permits("0.0.0.0:8080".parse().unwrap(), SocketUse::TcpBind));
        assert!(net.permits("127.0.0.1:9".parse().unwrap(), SocketUse::TcpConnect));
        assert!(!net.permits("10.0.0.1:80".parse().unwrap(), SocketUse::TcpConnect));
        assert!(!net.permits("127.0.0.1:53".parse().unwrap(), SocketUse::UdpSend));
    }
}
