//! skiff's container runtime: turns a container spec into a running, limited, observable
//! WebAssembly instance on wasmtime.
//!
//! - [`Runtime`] owns the one wasmtime engine of a process (async, epoch interruption driven by
//!   a ticker thread, the pooling allocator where the host allows it) and the on-disk cache of
//!   compiled code.
//! - [`Runtime::load`] compiles a binary into a [`Workload`] and detects its
//!   [`WorkloadKind`]: a WASI preview 1 command, a preview 2 `wasi:cli/run` command, or a
//!   `wasi:http/incoming-handler` service.
//! - [`Runtime::start`] runs a workload as a [`Container`] under a [`ContainerSpec`]: args,
//!   env, volumes, memory and CPU limits, a [`LogSink`] for its output and optionally a
//!   [`PodNetwork`] for its sockets. [`Container::wait`] and [`Container::stop`] give its
//!   [`ExitStatus`]; [`Container::usage`] its CPU time and memory, for `kubectl top`.
//! - [`VirtualNetwork`] is a node's pod network: each pod attached to it is a [`PodNetwork`]
//!   with its own IP, loopback and port spaces, and guests' `wasi:sockets` TCP and UDP run
//!   over it through in-memory streams and queues, never a kernel socket. What lies beyond
//!   the node's pods goes to the embedder's [`Outside`] hook.
//!
//! The runtime knows nothing of skiff's API objects; the node maps pods onto these types.

#![warn(missing_docs)]

mod container;
mod engine;
mod http;
mod limits;
mod logs;
mod network;
mod outgoing;
mod sockets;
mod spec;
mod wasi;
mod workload;

pub use container::{Container, StartError, Usage, UsageMeter};
pub use engine::{CacheStats, EngineError, Runtime, RuntimeConfig};
pub use http::{HttpError, ResponseBody, serve_http};
pub use logs::{LogLine, LogSink, LogStream, MemorySink, StdioSink};
pub use network::{
    AttachError, BindError, ConnectError, Datagram, DatagramError, MAX_DATAGRAM, NoOutside,
    Outside, PodListener, PodNetwork, PodStream, PodUdpSocket, ResolveError, VirtualNetwork,
};
pub use spec::{ContainerSpec, ExitStatus, VolumeMount};
pub use workload::{LoadError, Workload, WorkloadKind};
