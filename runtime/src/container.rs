//! A running workload: start, wait, stop, and the typed way it ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::I32Exit;

use crate::engine::Runtime;
use crate::http::HttpService;
use crate::limits::{Cpu, KilledError, MemoryGauge, MemoryLimiter};
use crate::spec::{ContainerSpec, ExitStatus};
use crate::wasi::{self, P1Host, P2Host};
use crate::workload::{Pre, Workload, WorkloadKind};

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A volume's host directory could not be opened.
    #[error("opening volume {} for {guest}", host.display())]
    OpenVolume {
        /// The host directory.
        host: PathBuf,
        /// Where the guest was to see it.
        guest: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `start` was called outside a tokio runtime.
    #[error("starting container {name}: no tokio runtime to run it on")]
    NoAsyncRuntime {
        /// The container.
        name: String,
    },
}

/// A started workload. Dropping it kills the guest: every task it owns is aborted.
pub struct Container {
    name: String,
    kind: WorkloadKind,
    status: Arc<watch::Sender<Option<ExitStatus>>>,
    pub(crate) cpu: Arc<Cpu>,
    /// What its instances' memories and tables hold, for [`Container::usage`].
    memory: Arc<MemoryGauge>,
    /// The guest's task (commands); aborted on drop.
    task: Option<AbortOnDrop>,
    /// Per-request instances (HTTP services).
    pub(crate) http: Option<HttpService>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

/// A container's resource usage at one moment, as [`Container::usage`] and
/// [`UsageMeter::read`] give it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Guest CPU time since the container started, summed over its instances (an HTTP
    /// service's requests): cumulative, so a rate is the difference of two readings over
    /// the time between them. Counted at the end of each time slice (10 ms by default), so
    /// the slice in progress is not in it yet.
    pub cpu: Duration,
    /// Bytes of linear memory and tables its live instances hold now: what they have grown
    /// to (wasm memory never shrinks), not the host pages actually touched; compiled code
    /// and the host's own buffers for the guest are not counted. Zero once a command ends.
    pub memory_bytes: u64,
}

/// Reads a container's [`Usage`] without holding the container: two atomic loads, never a
/// lock and never an interruption of the guest. Cheap to clone; reading after the container
/// is gone gives its last CPU time and no memory.
#[derive(Clone, Debug)]
pub struct UsageMeter {
    cpu: Arc<Cpu>,
    memory: Arc<MemoryGauge>,
}

impl UsageMeter {
    /// The usage now.
    pub fn read(&self) -> Usage {
        Usage {
            cpu: self.cpu.consumed(),
            memory_bytes: self.memory.bytes(),
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes a command's exit status when its task ends, however it ends: a task aborted
/// by `stop` or by dropping the container is dropped mid-flight and reports `Killed`.
struct Publish {
    status: Arc<watch::Sender<Option<ExitStatus>>>,
    result: Option<ExitStatus>,
}

impl Publish {
    fn set(&mut self, status: ExitStatus) {
        self.result = Some(status);
    }
}

impl Drop for Publish {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or(ExitStatus::Killed);
        self.status.send_if_modified(|status| {
            if status.is_none() {
                *status = Some(result);
                true
            } else {
                false
            }
        });
    }
}

impl Container {
    pub(crate) fn start(
        runtime: &Runtime,
        workload: &Workload,
        spec: ContainerSpec,
    ) -> Result<Self, StartError> {
        let config = &runtime.inner.config;
        let cpu = Cpu::new(spec.cpu_millis, config.epoch_tick, config.slice_ticks);
        let memory = Arc::new(MemoryGauge::default());
        let status = Arc::new(watch::channel(None).0);
        let engine = runtime.inner.engine.clone();
        let name = spec.name.clone();
        let kind = workload.kind();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| StartError::NoAsyncRuntime { name: name.clone() })?;
        let mut container = Container {
            name,
            kind,
            status: status.clone(),
            cpu: cpu.clone(),
            memory: memory.clone(),
            task: None,
            http: None,
        };
        let memory_limit = spec.memory_limit_bytes;
        match &workload.inner.pre {
            Pre::P1(pre) => {
                // Built here rather than in the task so a bad volume fails `start` itself.
                let wasi = wasi::builder(&spec)?.build_p1();
                let store = new_store(
                    &engine,
                    P1Host {
                        wasi,
                        limiter: MemoryLimiter::new(memory_limit, memory),
                    },
                    &cpu,
                );
                let pre = pre.clone();
                // Created before the task so that even a task aborted before its first poll
                // publishes `Killed`.
                let publish = Publish {
                    status,
                    result: None,
                };
                let task = handle.spawn(async move {
                    let mut publish = publish;
                    publish.set(run_p1(store, pre, cpu).await);
                });
                container.task = Some(AbortOnDrop(task.abort_handle()));
            }
            Pre::P2(pre) => {
                let wasi = wasi::builder(&spec)?.build();
                let store = new_store(
                    &engine,
                    P2Host::new(
                        wasi,
                        MemoryLimiter::new(memory_limit, memory),
                        spec.network.clone(),
                    ),
                    &cpu,
                );
                let pre = pre.clone();
                // Created before the task so that even a task aborted before its first poll
                // publishes `Killed`.
                let publish = Publish {
                    status,
                    result: None,
                };
                let task = handle.spawn(async move {
                    let mut publish = publish;
                    publish.set(run_p2(store, pre, cpu).await);
                });
                container.task = Some(AbortOnDrop(task.abort_handle()));
            }
            Pre::Http(pre) => {
                // Check the volumes once up front; each request opens its own context.
                drop(wasi::builder(&spec)?);
                container.http = Some(HttpService::new(engine, pre.clone(), spec, cpu, memory));
            }
        }
        Ok(container)
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of workload it runs.
    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    /// How it ended, or `None` while it runs.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status.borrow().clone()
    }

    /// Guest running time so far, measured between the yields of its time slices: the CPU it
    /// was given, within one slice (10 ms by default) per yield.
    pub fn cpu_time(&self) -> Duration {
        self.cpu.consumed()
    }

    /// What the container uses now: its CPU time so far and the memory it holds. Cheap
    /// (atomic loads); the guest is neither locked nor interrupted.
    pub fn usage(&self) -> Usage {
        self.usage_meter().read()
    }

    /// A handle that reads this container's usage, for a sampler that should not keep the
    /// container alive.
    pub fn usage_meter(&self) -> UsageMeter {
        UsageMeter {
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
        }
    }

    /// Waits until the container has ended. An HTTP service ends only when stopped.
    pub async fn wait(&self) -> ExitStatus {
        let mut status = self.status.subscribe();
        let ended = status
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|status| status.clone());
        // The sender lives in `self`, so the channel cannot close while we wait.
        ended.unwrap_or(ExitStatus::Killed)
    }

    /// Stops the container: waits up to `grace` for it to end by itself (an HTTP service
    /// stops taking requests and lets those in flight finish), then kills it. A guest
    /// spinning in a loop is stopped at its next time slice, one waiting in a host call at
    /// once. Returns how it ended.
    pub async fn stop(&self, grace: Duration) -> ExitStatus {
        if let Some(http) = &self.http {
            http.close();
            let status = match tokio::time::timeout(grace, http.drained()).await {
                Ok(()) => ExitStatus::Exited(0),
                Err(_) => {
                    self.cpu.kill();
                    http.abort_all();
                    ExitStatus::Killed
                }
            };
            self.status.send_if_modified(|current| {
                let changed = current.is_none();
                current.get_or_insert(status);
                changed
            });
            return self.wait().await;
        }
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        self.cpu.kill();
        if let Some(task) = &self.task {
            task.0.abort();
        }
        self.wait().await
    }
}

pub(crate) fn new_store<T: HasLimiter + 'static>(
    engine: &Engine,
    data: T,
    cpu: &Arc<Cpu>,
) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|data| data.limiter() as &mut dyn wasmtime::ResourceLimiter);
    cpu.install(&mut store);
    store
}

/// Store data with a memory limiter.
pub(crate) trait HasLimiter {
    fn limiter(&mut self) -> &mut MemoryLimiter;
}

impl HasLimiter for P1Host {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

impl HasLimiter for P2Host {
    fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }
}

async fn run_p1(
    mut store: Store<P1Host>,
    pre: wasmtime::InstancePre<P1Host>,
    cpu: Arc<Cpu>,
) -> ExitStatus {
    let result = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    }
    .await;
    match result {
        Ok(()) => ExitStatus::Exited(0),
        Err(error) => classify(&error, store.data().limiter.refused(), &cpu),
    }
}

async fn run_p2(
    mut store: Store<P2Host>,
    pre: wasmtime_wasi::p2::bindings::CommandPre<P2Host>,
    cpu: Arc<Cpu>,
) -> ExitStatus {
    let result = async {
        let command = pre.instantiate_async(&mut store).await?;
        command.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    match result {
        Ok(Ok(())) => ExitStatus::Exited(0),
        // `run` returning an error is how a p2 command says "exit 1".
        Ok(Err(())) if store.data().limiter.refused() => ExitStatus::OutOfMemory,
        Ok(Err(())) => ExitStatus::Exited(1),
        Err(error) => classify(&error, store.data().limiter.refused(), &cpu),
    }
}

/// Types the error a guest ended with. A failure after the memory limit refused a growth is
/// out of memory, whatever form the guest's failure took (an allocator abort, an exit code).
pub(crate) fn classify(error: &wasmtime::Error, memory_refused: bool, cpu: &Cpu) -> ExitStatus {
    if error.downcast_ref::<KilledError>().is_some() || cpu.is_killed() {
        return ExitStatus::Killed;
    }
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return if exit.0 != 0 && memory_refused {
            ExitStatus::OutOfMemory
        } else {
            ExitStatus::Exited(exit.0)
        };
    }
    if memory_refused {
        return ExitStatus::OutOfMemory;
    }
    ExitStatus::Trapped(trap_message(error))
}

/// "wasm trap: ..." (or the host error) followed by the wasm backtrace when there is one.
fn trap_message(error: &wasmtime::Error) -> String {
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        message.push('\n');
        message.push_str(&backtrace.to_string());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemorySink, RuntimeConfig};

    fn runtime() -> Runtime {
        Runtime::new(RuntimeConfig::default()).expect("runtime")
    }

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .unwrap_or_else(|_| panic!("{what} within 60 s: likely deadlocked"))
    }

    /// A guest's memory shows while it runs and is given back when it ends; its CPU time
    /// only grows.
    #[tokio::test]
    async fn usage_follows_a_guests_memory_and_cpu() {
        let runtime = runtime();
        let workload = runtime.load_file(skiff_samples::MEMHOG).unwrap();
        let sink = MemorySink::new();
        let mut spec = ContainerSpec::new("memhog", sink.clone());
        spec.env = vec![("STEP_MS".into(), "2".into())];
        let container = runtime.start(&workload, spec).unwrap();
        let meter = container.usage_meter();
        within(
            "holding 16 MiB",
            sink.wait_for(|line| line.line == "holding 16 MiB"),
        )
        .await;
        let running = container.usage();
        assert!(
            running.memory_bytes >= 16 << 20,
            "memhog holds 16 MiB, the gauge says {running:?}"
        );
        within("stop", container.stop(Duration::ZERO)).await;
        let ended = meter.read();
        assert_eq!(ended.memory_bytes, 0, "an ended guest holds nothing");
        assert!(ended.cpu >= running.cpu && ended.cpu > Duration::ZERO);
    }
}
