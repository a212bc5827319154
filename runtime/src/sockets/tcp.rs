//! `wasi:sockets/tcp` and `tcp-create-socket` over the pod network.
//!
//! A socket follows the WASI 0.2 state machine (unbound, bound, listening, connecting,
//! connected, closed) with the `start-*`/`finish-*` pairs of the specification. Binds and
//! listens finish at once; a connect is a future the socket keeps and polls when the guest
//! calls `finish-connect` or waits on the socket's pollable, so no task runs per socket.

use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use tokio::sync::mpsc;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi_io::poll::{DynPollable, Pollable};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use super::bindings::wasi::sockets::tcp::{self, Duration, HostTcpSocket, ShutdownType};
use super::bindings::wasi::sockets::tcp_create_socket;
use super::streams::{ReceiveHalf, SendHalf};
use super::{PodSocketsView, bind_error, check_address, connect_error, from_wasi, to_wasi};
use crate::network::{
    BoxFuture, ConnectError, Incoming, PIPE_BUFFER, PodNetwork, PodStream, PortLease,
};

/// Listen queue length when the guest sets none (Rust's std and wasmtime use 128).
const DEFAULT_BACKLOG: usize = 128;
/// The longest listen queue a guest may ask for.
const MAX_BACKLOG: usize = 4096;

/// A guest's TCP socket.
pub struct TcpSocket {
    pod: PodNetwork,
    family: IpAddressFamily,
    state: State,
    /// The operation a `start-*` began and its `finish-*` has not yet ended.
    in_progress: Option<Operation>,
    backlog: usize,
    options: Options,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Bind,
    Listen,
    Connect,
}

enum State {
    Unbound,
    Bound(PortLease),
    Listening {
        lease: PortLease,
        queue: mpsc::Receiver<Incoming>,
        /// A connection taken off the queue by the pollable, for the next `accept`.
        next: Option<Incoming>,
    },
    Connecting {
        connection: BoxFuture<Result<PodStream, ConnectError>>,
        local: SocketAddr,
        remote: SocketAddr,
        lease: PortLease,
    },
    /// Connected: accepted, or a connect that finished (`finish-connect` hands over the
    /// streams the first time it sees this).
    Connected(Connection),
    /// A connect that failed, until `finish-connect` reports it.
    ConnectFailed(ErrorCode),
    /// After a failed connect: every operation is `invalid-state`.
    Closed,
}

struct Connection {
    local: SocketAddr,
    remote: SocketAddr,
    /// The connecting side's port, held while the connection lives.
    _lease: Option<PortLease>,
    receive: ReceiveHalf,
    send: SendHalf,
}

impl Connection {
    fn new(stream: PodStream, local: SocketAddr, remote: SocketAddr) -> Self {
        let (read, write, lease) = stream.into_parts();
        Self {
            local,
            remote,
            _lease: lease,
            receive: ReceiveHalf::new(read),
            send: SendHalf::new(write),
        }
    }

    /// The guest's input and output streams on the connection.
    fn streams(&self) -> (DynInputStream, DynOutputStream) {
        (
            Box::new(self.receive.stream()),
            Box::new(self.send.stream()),
        )
    }
}

/// Socket options: kept so the guest reads back what it set. The in-memory transport has no
/// keep-alive probes, hops or kernel buffers for them to change.
#[derive(Clone, Copy, Debug)]
struct Options {
    keep_alive: bool,
    keep_alive_idle: Duration,
    keep_alive_interval: Duration,
    keep_alive_count: u32,
    hop_limit: u8,
    receive_buffer: u64,
    send_buffer: u64,
}

impl Default for Options {
    fn default() -> Self {
        const SECOND: u64 = 1_000_000_000;
        Self {
            keep_alive: false,
            // Linux's defaults.
            keep_alive_idle: 7200 * SECOND,
            keep_alive_interval: 75 * SECOND,
            keep_alive_count: 9,
            hop_limit: 64,
            receive_buffer: PIPE_BUFFER as u64,
            send_buffer: PIPE_BUFFER as u64,
        }
    }
}

impl TcpSocket {
    fn new(pod: PodNetwork, family: IpAddressFamily) -> Self {
        Self {
            pod,
            family,
            state: State::Unbound,
            in_progress: None,
            backlog: DEFAULT_BACKLOG,
            options: Options::default(),
        }
    }

    /// Checks that the guest may use `addr` with this socket: its family, unicast, and not
    /// IPv4-mapped (WASI 0.2 sockets do not mix families).
    fn check_address(&self, addr: SocketAddr) -> Result<(), SocketError> {
        Ok(check_address(self.family, addr)?)
    }

    /// Polls a connect in progress; on completion moves to `Connected` or `ConnectFailed`.
    fn poll_connect(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let State::Connecting { connection, .. } = &mut self.state else {
            return Poll::Ready(());
        };
        let Poll::Ready(result) = connection.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        let State::Connecting {
            local,
            remote,
            lease,
            ..
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            unreachable!("matched above")
        };
        self.state = match result {
            Ok(mut stream) => {
                stream.lease = Some(lease);
                State::Connected(Connection::new(stream, local, remote))
            }
            Err(error) => State::ConnectFailed(connect_error(error)),
        };
        Poll::Ready(())
    }

    fn connection(&self) -> Option<&Connection> {
        match &self.state {
            State::Connected(connection) => Some(connection),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for TcpSocket {
    async fn ready(&mut self) {
        match &mut self.state {
            State::Connecting { .. } => std::future::poll_fn(|cx| self.poll_connect(cx)).await,
            State::Listening { queue, next, .. } if next.is_none() => {
                // `None` cannot happen while the socket holds its binding: the queue's sender
                // lives there. Either way the socket is ready.
                *next = queue.recv().await;
            }
            _ => {}
        }
    }
}

impl tcp_create_socket::Host for PodSocketsView<'_> {
    fn create_tcp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<TcpSocket>, SocketError> {
        let socket = TcpSocket::new(self.pod()?, family);
        Ok(self.table.push(socket)?)
    }
}

impl tcp::Host for PodSocketsView<'_> {}

impl HostTcpSocket for PodSocketsView<'_> {
    fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> Result<(), SocketError> {
        // The network handle is only a capability token; checking it exists is all it asks.
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        let addr = from_wasi(local_address);
        if socket.in_progress.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        if !matches!(socket.state, State::Unbound) {
            return Err(ErrorCode::InvalidState.into());
        }
        socket.check_address(addr)?;
        let lease = socket.pod.bind(addr).map_err(bind_error)?;
        socket.state = State::Bound(lease);
        socket.in_progress = Some(Operation::Bind);
        Ok(())
    }

    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> Result<(), SocketError> {
        finish(self.table.get_mut(&this)?, Operation::Bind)
    }

    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> Result<(), SocketError> {
        self.table.get(&network)?;
        let socket = self.table.get_mut(&this)?;
        let remote = from_wasi(remote_address);
        if socket.in_progress.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        socket.check_address(remote)?;
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        let source = socket.pod.source_for(remote.ip());
        let lease = match std::mem::replace(&mut socket.state, State::Closed) {
            State::Bound(lease) => lease,
            State::Unbound => match socket.pod.bind(SocketAddr::new(source, 0)) {
                Ok(lease) => lease,
                Err(error) => {
                    socket.state = State::Unbound;
                    return Err(bind_error(error).into());
                }
            },
            other => {
                socket.state = other;
                return Err(ErrorCode::InvalidState.into());
            }
        };
        // A socket bound to the wildcard connects from the address the route picks.
        let bound = lease.addr();
        let local = if bound.ip().is_unspecified() {
            SocketAddr::new(source, bound.port())
        } else {
            bound
        };
        socket.state = State::Connecting {
            connection: socket.pod.open(local, remote),
            local,
            remote,
            lease,
        };
        socket.in_progress = Some(Operation::Connect);
        Ok(())
    }

    fn finish_connect(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> Result<(Resource<DynInputStream>, Resource<DynOutputStream>), SocketError> {
        let socket = self.table.get_mut(&this)?;
        if socket.in_progress != Some(Operation::Connect) {
            return Err(ErrorCode::NotInProgress.into());
        }
        if socket
            .poll_connect(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            return Err(ErrorCode::WouldBlock.into());
        }
        socket.in_progress = None;
        let (input, output) = match &mut socket.state {
            State::Connected(connection) => connection.streams(),
            State::ConnectFailed(code) => {
                let code = *code;
                socket.state = State::Closed;
                return Err(code.into());
            }
            _ => return Err(ErrorCode::InvalidState.into()),
        };
        let input = self.table.push_child(input, &this)?;
        let output = self.table.push_child(output, &this)?;
        Ok((input, output))
    }

    fn start_listen(&mut self, this: Resource<TcpSocket>) -> Result<(), SocketError> {
        let socket = self.table.get_mut(&this)?;
        if socket.in_progress.is_some() {
            return Err(ErrorCode::ConcurrencyConflict.into());
        }
        // WASI 0.2 sockets are bound explicitly before they listen.
        if !matches!(socket.state, State::Bound(_)) {
            return Err(ErrorCode::InvalidState.into());
        }
        let State::Bound(lease) = std::mem::replace(&mut socket.state, State::Closed) else {
            unreachable!("checked above")
        };
        let queue = socket.pod.listen_on(&lease, socket.backlog);
        socket.state = State::Listening {
            lease,
            queue,
            next: None,
        };
        socket.in_progress = Some(Operation::Listen);
        Ok(())
    }

    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> Result<(), SocketError> {
        finish(self.table.get_mut(&this)?, Operation::Listen)
    }

    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> Result<
        (
            Resource<TcpSocket>,
            Resource<DynInputStream>,
            Resource<DynOutputStream>,
        ),
        SocketError,
    > {
        let socket = self.table.get_mut(&this)?;
        let State::Listening { queue, next, .. } = &mut socket.state else {
            return Err(ErrorCode::InvalidState.into());
        };
        let incoming = match next.take() {
            Some(incoming) => incoming,
            None => queue
                .try_recv()
                .map_err(|_| SocketError::from(ErrorCode::WouldBlock))?,
        };
        // The accepted socket inherits the listener's family and options.
        let mut accepted = TcpSocket::new(socket.pod.clone(), socket.family);
        accepted.options = socket.options;
        let connection = Connection::new(incoming.stream, incoming.local, incoming.remote);
        let (input, output) = connection.streams();
        accepted.state = State::Connected(connection);
        let accepted = self.table.push(accepted)?;
        let input = self.table.push_child(input, &accepted)?;
        let output = self.table.push_child(output, &accepted)?;
        Ok((accepted, input, output))
    }

    fn local_address(&mut self, this: Resource<TcpSocket>) -> Result<IpSocketAddress, SocketError> {
        let socket = self.table.get(&this)?;
        let addr = match &socket.state {
            State::Bound(lease) | State::Listening { lease, .. } => lease.addr(),
            State::Connecting { local, .. } => *local,
            State::Connected(connection) => connection.local,
            State::Unbound | State::ConnectFailed(_) | State::Closed => {
                return Err(ErrorCode::InvalidState.into());
            }
        };
        Ok(to_wasi(addr))
    }

    fn remote_address(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> Result<IpSocketAddress, SocketError> {
        let socket = self.table.get(&this)?;
        match socket.connection() {
            Some(connection) => Ok(to_wasi(connection.remote)),
            None => Err(ErrorCode::InvalidState.into()),
        }
    }

    fn is_listening(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        let socket = self.table.get(&this)?;
        Ok(matches!(socket.state, State::Listening { .. }))
    }

    fn address_family(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        Ok(self.table.get(&this)?.family)
    }

    fn set_listen_backlog_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> Result<(), SocketError> {
        let socket = self.table.get_mut(&this)?;
        if value == 0 {
            return Err(ErrorCode::InvalidArgument.into());
        }
        match socket.state {
            State::Connecting { .. } | State::Connected(_) => Err(ErrorCode::InvalidState.into()),
            // A listening queue keeps its length: the hint is accepted and ignored.
            State::Listening { .. } => Ok(()),
            _ => {
                socket.backlog = usize::try_from(value)
                    .unwrap_or(MAX_BACKLOG)
                    .min(MAX_BACKLOG);
                Ok(())
            }
        }
    }

    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> Result<bool, SocketError> {
        Ok(self.table.get(&this)?.options.keep_alive)
    }

    fn set_keep_alive_enabled(
        &mut self,
        this: Resource<TcpSocket>,
        value: bool,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.keep_alive = value;
        Ok(())
    }

    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> Result<Duration, SocketError> {
        Ok(self.table.get(&this)?.options.keep_alive_idle)
    }

    fn set_keep_alive_idle_time(
        &mut self,
        this: Resource<TcpSocket>,
        value: Duration,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.keep_alive_idle = positive(value)?;
        Ok(())
    }

    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> Result<Duration, SocketError> {
        Ok(self.table.get(&this)?.options.keep_alive_interval)
    }

    fn set_keep_alive_interval(
        &mut self,
        this: Resource<TcpSocket>,
        value: Duration,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.keep_alive_interval = positive(value)?;
        Ok(())
    }

    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> Result<u32, SocketError> {
        Ok(self.table.get(&this)?.options.keep_alive_count)
    }

    fn set_keep_alive_count(
        &mut self,
        this: Resource<TcpSocket>,
        value: u32,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.keep_alive_count = positive(value)?;
        Ok(())
    }

    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> Result<u8, SocketError> {
        Ok(self.table.get(&this)?.options.hop_limit)
    }

    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.hop_limit = positive(value)?;
        Ok(())
    }

    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> Result<u64, SocketError> {
        Ok(self.table.get(&this)?.options.receive_buffer)
    }

    fn set_receive_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.receive_buffer = positive(value)?;
        Ok(())
    }

    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> Result<u64, SocketError> {
        Ok(self.table.get(&this)?.options.send_buffer)
    }

    fn set_send_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> Result<(), SocketError> {
        self.table.get_mut(&this)?.options.send_buffer = positive(value)?;
        Ok(())
    }

    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi_io::poll::subscribe(self.table, this)
    }

    fn shutdown(
        &mut self,
        this: Resource<TcpSocket>,
        how: ShutdownType,
    ) -> Result<(), SocketError> {
        let socket = self.table.get(&this)?;
        let connection = socket.connection().ok_or(ErrorCode::InvalidState)?;
        if matches!(how, ShutdownType::Receive | ShutdownType::Both) {
            connection.receive.shutdown();
        }
        if matches!(how, ShutdownType::Send | ShutdownType::Both) {
            connection.send.shutdown();
        }
        Ok(())
    }

    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        // Dropping the socket releases its port; a connection's streams (children of the
        // socket, so already dropped) closed the connection.
        self.table.delete(this)?;
        Ok(())
    }
}

/// Ends the `start-*`/`finish-*` pair of `operation`, which finished when it started.
fn finish(socket: &mut TcpSocket, operation: Operation) -> Result<(), SocketError> {
    if socket.in_progress != Some(operation) {
        return Err(ErrorCode::NotInProgress.into());
    }
    socket.in_progress = None;
    Ok(())
}

/// Socket option values must be positive.
fn positive<N: Default + PartialEq>(value: N) -> Result<N, SocketError> {
    if value == N::default() {
        Err(ErrorCode::InvalidArgument.into())
    } else {
        Ok(value)
    }
}
