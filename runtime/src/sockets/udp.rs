//! `wasi:sockets/udp` and `udp-create-socket` over the pod network.
//!
//! A socket is bound explicitly (WASI 0.2 has no implicit bind; wasi-libc binds the wildcard
//! and port 0 itself before a first `sendto`), and from then on its datagrams queue on its
//! [`Inbox`] in the pod's UDP port space. `stream` hands the guest a pair of datagram streams,
//! optionally tied to one peer (a connected socket); sending never waits: a datagram is
//! delivered in memory at once, handed to the node's `Outside` hook, or dropped, as a kernel
//! drops what does not fit a receive queue.

use std::net::SocketAddr;

use bytes::Bytes;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi_io::poll::{DynPollable, Pollable};

use super::bindings::wasi::sockets::udp::{
    self, HostIncomingDatagramStream, HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagram,
    OutgoingDatagram,
};
use super::bindings::wasi::sockets::udp_create_socket;
use super::{PodSocketsView, bind_error, check_address, datagram_error, from_wasi, to_wasi};
use crate::network::{
    DEFAULT_RECEIVE_BUFFER, Datagram, DatagramError, Inbox, MAX_DATAGRAM, PodNetwork, PortLease,
};

/// The most datagrams one `check-send` permits and one `receive` returns (wasmtime-wasi's
/// figure): enough to batch, small enough to keep a call short.
const MAX_BATCH: usize = 16;

/// The send buffer size a guest reads back when it set none: Linux's `wmem_default`. Sends
/// never wait in the pod network, so the value only echoes what the guest set.
const DEFAULT_SEND_BUFFER: u64 = 212_992;

/// A guest's UDP socket.
pub struct UdpSocket {
    pod: PodNetwork,
    family: IpAddressFamily,
    bound: Option<Bound>,
    /// `start-bind` succeeded and `finish-bind` has not been called yet.
    bind_in_progress: bool,
    /// The peer of the streams last handed out, if they were tied to one.
    remote: Option<SocketAddr>,
    /// The receive buffer asked for before the bind (the inbox keeps it after).
    receive_buffer: usize,
    send_buffer: u64,
    hop_limit: u8,
}

struct Bound {
    /// The port, held while the socket lives.
    lease: PortLease,
    inbox: Inbox,
}

impl UdpSocket {
    fn new(pod: PodNetwork, family: IpAddressFamily) -> Self {
        Self {
            pod,
            family,
            bound: None,
            bind_in_progress: false,
            remote: None,
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
            send_buffer: DEFAULT_SEND_BUFFER,
            hop_limit: 64,
        }
    }

    /// The local address: as bound, except that a connected socket bound to the wildcard
    /// reports the address its route to the peer leaves from.
    fn local_address(&self) -> Option<SocketAddr> {
        let bound = self.bound.as_ref()?.lease.addr();
        Some(match self.remote {
            Some(remote) if bound.ip().is_unspecified() => {
                SocketAddr::new(self.pod.source_for(remote.ip()), bound.port())
            }
            _ => bound,
        })
    }
}

#[async_trait::async_trait]
impl Pollable for UdpSocket {
    async fn ready(&mut self) {
        // A bind finishes when it starts: nothing to wait for.
    }
}

/// The guest's `incoming-datagram-stream`: reads the socket's inbox.
pub struct IncomingDatagramStream {
    inbox: Inbox,
}

#[async_trait::async_trait]
impl Pollable for IncomingDatagramStream {
    async fn ready(&mut self) {
        self.inbox.ready().await;
    }
}

/// The guest's `outgoing-datagram-stream`.
pub struct OutgoingDatagramStream {
    pod: PodNetwork,
    family: IpAddressFamily,
    /// The bound address (possibly the wildcard).
    local: SocketAddr,
    /// The connected peer: the only destination allowed.
    remote: Option<SocketAddr>,
    /// The socket's inbox, where an ICMP-like error for a connected socket is recorded.
    inbox: Inbox,
    /// Datagrams the last `check-send` permitted.
    permitted: usize,
}

#[async_trait::async_trait]
impl Pollable for OutgoingDatagramStream {
    async fn ready(&mut self) {
        // Sending never waits for room: a full receiver drops, as a kernel does.
    }
}

impl OutgoingDatagramStream {
    /// Sends one datagram, checked as the WIT's `send` says.
    fn send_one(&self, datagram: OutgoingDatagram) -> Result<(), ErrorCode> {
        // An error a connected socket was told about is reported by its next call.
        if let Some(error) = self.inbox.take_error() {
            return Err(datagram_error(error));
        }
        let to = match (datagram.remote_address.map(from_wasi), self.remote) {
            (None, Some(remote)) => remote,
            (Some(to), Some(remote)) if to == remote => remote,
            // EISCONN: a connected socket sends to its peer only.
            (Some(_), Some(_)) => return Err(ErrorCode::InvalidArgument),
            (Some(to), None) => to,
            // EDESTADDRREQ.
            (None, None) => return Err(ErrorCode::InvalidArgument),
        };
        check_address(self.family, to)?;
        if to.ip().is_unspecified() || to.port() == 0 {
            return Err(ErrorCode::InvalidArgument);
        }
        if datagram.data.len() > MAX_DATAGRAM {
            return Err(ErrorCode::DatagramTooLarge);
        }
        let from = if self.local.ip().is_unspecified() {
            SocketAddr::new(self.pod.source_for(to.ip()), self.local.port())
        } else {
            self.local
        };
        let sent = self.pod.send_datagram(Datagram {
            from,
            to,
            data: Bytes::from(datagram.data),
        });
        match sent {
            Ok(()) => Ok(()),
            // The datagram left; as with ICMP port-unreachable, a connected socket learns
            // of the refusal on its next call.
            Err(DatagramError::Refused) => {
                self.inbox.report(DatagramError::Refused);
                Ok(())
            }
            Err(error) => Err(datagram_error(error)),
        }
    }
}

impl udp_create_socket::Host for PodSocketsView<'_> {
    fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<UdpSocket>, SocketError> {
        let socket = UdpSocket::new(self.pod()?, family);
        Ok(self.table.push(socket)?)
    }
}

impl udp::Host for PodSocketsView<'_> {}

impl HostUdpSocket for PodSocketsView<'_> {
    fn start_bind(
        &mut self,
        this: Resource<UdpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> Result<(), SocketError> {
        // The network handle is only a capability token; checking it exists is all it asks.
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        let addr = from_wasi(local_address);
        if socket.bind_in_progress {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        if socket.bound.is_some() {
            return Err(ErrorCode::InvalidState.into());
        }
        check_address(socket.family, addr)?;
        let (lease, inbox) = socket
            .pod
            .bind_datagram(addr, socket.receive_buffer)
            .map_err(bind_error)?;
        socket.bound = Some(Bound { lease, inbox });
        socket.bind_in_progress = true;
        Ok(())
    }

    fn finish_bind(&mut self, this: Resource<UdpSocket>) -> Result<(), SocketError> {
        let socket = self.table.get_mut(&this)?;
        if !socket.bind_in_progress {
            return Err(ErrorCode::NotInProgress.into());
        }
        socket.bind_in_progress = false;
        Ok(())
    }

    fn stream(
        &mut self,
        this: Resource<UdpSocket>,
        remote_address: Option<IpSocketAddress>,
    ) -> Result<
        (
            Resource<IncomingDatagramStream>,
            Resource<OutgoingDatagramStream>,
        ),
        SocketError,
    > {
        // The WIT lets an implementation trap here; it keeps one pair of streams per socket.
        let has_streams = self.table.iter_children(&this)?.any(|child| {
            child.is::<IncomingDatagramStream>() || child.is::<OutgoingDatagramStream>()
        });
        if has_streams {
            return Err(SocketError::trap(wasmtime::format_err!(
                "the streams of a UDP socket must be dropped before `stream` is called again"
            )));
        }
        let socket = self.table.get_mut(&this)?;
        let Some(bound) = &socket.bound else {
            // WASI 0.2 sockets are bound explicitly first.
            return Err(ErrorCode::InvalidState.into());
        };
        let remote = remote_address.map(from_wasi);
        if let Some(remote) = remote {
            check_address(socket.family, remote)?;
            if remote.ip().is_unspecified() || remote.port() == 0 {
                return Err(ErrorCode::InvalidArgument.into());
            }
        }
        bound.inbox.connect(remote);
        let incoming = IncomingDatagramStream {
            inbox: bound.inbox.clone(),
        };
        let outgoing = OutgoingDatagramStream {
            pod: socket.pod.clone(),
            family: socket.family,
            local: bound.lease.addr(),
            remote,
            inbox: bound.inbox.clone(),
            permitted: 0,
        };
        socket.remote = remote;
        let incoming = self.table.push_child(incoming, &this)?;
        let outgoing = self.table.push_child(outgoing, &this)?;
        Ok((incoming, outgoing))
    }

    fn local_address(&mut self, this: Resource<UdpSocket>) -> Result<IpSocketAddress, SocketError> {
        let socket = self.table.get(&this)?;
        let addr = socket.local_address().ok_or(ErrorCode::InvalidState)?;
        Ok(to_wasi(addr))
    }

    fn remote_address(
        &mut self,
        this: Resource<UdpSocket>,
    ) -> Result<IpSocketAddress, SocketError> {
        let socket = self.table.get(&this)?;
        let remote = socket.remote.ok_or(ErrorCode::InvalidState)?;
        Ok(to_wasi(remote))
    }

    fn address_family(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&this)?.family)
    }

    fn unicast_hop_limit(&mut self, this: Resource<UdpSocket>) -> Result<u8, SocketError> {
        Ok(self.table.get(&this)?.hop_limit)
    }

    fn set_unicast_hop_limit(
        &mut self,
        this: Resource<UdpSocket>,
        value: u8,
    ) -> Result<(), SocketError> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        self.table.get_mut(&this)?.hop_limit = value;
        Ok(())
    }

    fn receive_buffer_size(&mut self, this: Resource<UdpSocket>) -> Result<u64, SocketError> {
        let socket = self.table.get(&this)?;
        let size = match &socket.bound {
            Some(bound) => bound.inbox.capacity(),
            None => socket.receive_buffer,
        };
        Ok(size as u64)
    }

    fn set_receive_buffer_size(
        &mut self,
        this: Resource<UdpSocket>,
        value: u64,
    ) -> Result<(), SocketError> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        let socket = self.table.get_mut(&this)?;
        let size = usize::try_from(value).unwrap_or(usize::MAX);
        match &socket.bound {
            Some(bound) => bound.inbox.set_capacity(size),
            // Clamped at the bind, when the inbox is made.
            None => socket.receive_buffer = size,
        }
        Ok(())
    }

    fn send_buffer_size(&mut self, this: Resource<UdpSocket>) -> Result<u64, SocketError> {
        Ok(self.table.get(&this)?.send_buffer)
    }

    fn set_send_buffer_size(
        &mut self,
        this: Resource<UdpSocket>,
        value: u64,
    ) -> Result<(), SocketError> {
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        self.table.get_mut(&this)?.send_buffer = value;
        Ok(())
    }

    fn subscribe(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi_io::poll::subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<()> {
        // Its streams (children) are gone already; dropping it frees its port.
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostIncomingDatagramStream for PodSocketsView<'_> {
    fn receive(
        &mut self,
        this: Resource<IncomingDatagramStream>,
        max_results: u64,
    ) -> Result<Vec<IncomingDatagram>, SocketError> {
        let stream = self.table.get(&this)?;
        let max = usize::try_from(max_results)
            .unwrap_or(usize::MAX)
            .min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        if let Some(error) = stream.inbox.take_error() {
            return Err(datagram_error(error).into());
        }
        let mut received = Vec::new();
        while received.len() < max {
            let Some(datagram) = stream.inbox.pop() else {
                break;
            };
            received.push(IncomingDatagram {
                data: datagram.data.to_vec(),
                remote_address: to_wasi(datagram.from),
            });
        }
        Ok(received)
    }

    fn subscribe(
        &mut self,
        this: Resource<IncomingDatagramStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi_io::poll::subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl HostOutgoingDatagramStream for PodSocketsView<'_> {
    fn check_send(&mut self, this: Resource<OutgoingDatagramStream>) -> Result<u64, SocketError> {
        let stream = self.table.get_mut(&this)?;
        stream.permitted = MAX_BATCH;
        Ok(MAX_BATCH as u64)
    }

    fn send(
        &mut self,
        this: Resource<OutgoingDatagramStream>,
        datagrams: Vec<OutgoingDatagram>,
    ) -> Result<u64, SocketError> {
        let stream = self.table.get_mut(&this)?;
        if datagrams.is_empty() {
            return Ok(0);
        }
        if datagrams.len() > stream.permitted {
            return Err(SocketError::trap(wasmtime::format_err!(
                "sent {} datagrams where check-send permitted {}",
                datagrams.len(),
                stream.permitted
            )));
        }
        // Each `send` needs a `check-send` of its own.
        stream.permitted = 0;
        let mut sent = 0;
        for datagram in datagrams {
            match stream.send_one(datagram) {
                Ok(()) => sent += 1,
                // Once one datagram went, the WIT's `send` reports no error.
                Err(_) if sent > 0 => break,
                Err(code) => return Err(code.into()),
            }
        }
        Ok(sent)
    }

    fn subscribe(
        &mut self,
        this: Resource<OutgoingDatagramStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi_io::poll::subscribe(self.table, this)
    }

    fn drop(&mut self, this: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
        // Nothing is in flight: every send finished before it returned.
        self.table.delete(this)?;
        Ok(())
    }
}
