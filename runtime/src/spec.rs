//! What a caller asks for ([`ContainerSpec`]) and what it gets back ([`ExitStatus`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::logs::LogSink;
use crate::network::PodNetwork;

/// How to run one container: the runtime's own small spec, independent of skiff's API types.
#[derive(Clone)]
pub struct ContainerSpec {
    /// The container's name; also the guest's `argv[0]`.
    pub name: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables, in order. Nothing of the host's environment is inherited.
    pub env: Vec<(String, String)>,
    /// Host directories made visible to the guest. Nothing else of the host's file system is.
    pub volumes: Vec<VolumeMount>,
    /// Cap on the bytes of all linear memories and tables of an instance. `None`: no cap
    /// beyond the engine's (4 GiB per memory). Exceeding it ends the guest as
    /// [`ExitStatus::OutOfMemory`].
    pub memory_limit_bytes: Option<u64>,
    /// CPU limit in millicores (1000 = one core), enforced by throttling. `None`: unlimited
    /// (the guest still yields its thread at every time slice).
    pub cpu_millis: Option<u32>,
    /// Where stdout and stderr lines go.
    pub log_sink: Arc<dyn LogSink>,
    /// The pod network the guest's sockets live in: the pod's IP, loopback and port space,
    /// shared with the other containers of its pod. `None` (the default): no sockets at all.
    pub network: Option<PodNetwork>,
}

impl ContainerSpec {
    /// A spec with no args, env, volumes, limits or network.
    pub fn new(name: impl Into<String>, log_sink: Arc<dyn LogSink>) -> Self {
        Self {
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
            volumes: Vec::new(),
            memory_limit_bytes: None,
            cpu_millis: None,
            log_sink,
            network: None,
        }
    }
}

impl std::fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("volumes", &self.volumes)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("cpu_millis", &self.cpu_millis)
            .field("network", &self.network.as_ref().map(PodNetwork::ip))
            .finish_non_exhaustive()
    }
}

/// A host directory preopened in the guest at `guest_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    /// The directory on the host. It must exist.
    pub host_path: PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest_path: String,
    /// Refuse every write through this mount.
    pub read_only: bool,
}

/// How a container ended: what the node turns into a container status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest exited (returned from `_start`/`run`, or called `exit`) with this code. A
    /// preview 2 command can only say 0 or 1: `wasi:cli/exit` in WASI 0.2 carries no code.
    Exited(i32),
    /// The guest trapped (`unreachable`, stack overflow, a failed host call, ...); the message
    /// says which.
    Trapped(String),
    /// The guest needed more memory than its limit allowed and failed because of it.
    OutOfMemory,
    /// The runtime ended the guest: a forced stop after the grace period.
    Killed,
}

impl ExitStatus {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    /// The exit code a process would report: the guest's own code; 137 (128 + SIGKILL) for
    /// killed and out of memory, as Kubernetes reports them; 134 (128 + SIGABRT) for a trap,
    /// as `wasmtime run` does.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited(code) => *code,
            ExitStatus::Trapped(_) => 134,
            ExitStatus::OutOfMemory | ExitStatus::Killed => 137,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Trapped(message) => write!(f, "trapped: {message}"),
            ExitStatus::OutOfMemory => write!(f, "out of memory"),
            ExitStatus::Killed => write!(f, "killed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn exit_codes_follow_process_conventions() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Killed.code(), 137);
        assert_eq!(ExitStatus::OutOfMemory.code(), 137);
        assert_eq!(ExitStatus::Trapped("x".into()).code(), 134);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Exited(1).success());
    }
}
