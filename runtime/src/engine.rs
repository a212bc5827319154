//! The process's one wasmtime engine: configuration, the epoch ticker thread, the on-disk
//! cache of compiled code and the linkers every instance is made from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::container::{Container, StartError};
use crate::spec::ContainerSpec;
use crate::wasi::{P1Host, P2Host};
use crate::workload::{LoadError, Workload};

/// How to build a [`Runtime`]. `RuntimeConfig::default()` suits a node.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory for compiled code, owned by this node. `None`: compile every binary once per
    /// process and keep nothing on disk.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast instantiation, memory reserved up front). When the
    /// host refuses the reservation the runtime falls back to on-demand allocation. Default:
    /// true.
    pub pooling: bool,
    /// Instances (and memories, tables, stacks) the pool holds: the most that can be alive at
    /// once when pooling. Default: 1000.
    pub max_instances: u32,
    /// Period of the epoch ticker. Default: 1 ms.
    pub epoch_tick: Duration,
    /// Ticks a guest runs before it must yield its thread. Default: 10 (10 ms slices).
    pub slice_ticks: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pooling: true,
            max_instances: 1000,
            epoch_tick: Duration::from_millis(1),
            slice_ticks: 10,
        }
    }
}

/// Why the engine could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The cache directory could not be created or configured.
    #[error("setting up the compiled-code cache in {dir}")]
    Cache {
        /// The directory asked for.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// wasmtime refused the configuration even without the pooling allocator.
    #[error("creating the wasmtime engine")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Adding WASI to the linkers failed.
    #[error("linking WASI into the runtime")]
    Link(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The epoch ticker thread could not be started.
    #[error("starting the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
}

/// Counters of the on-disk code cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compilations answered from disk.
    pub hits: usize,
    /// Compilations done and written to disk.
    pub misses: usize,
}

/// Runs wasm workloads. Cheap to clone; make one per process and share it.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    pub(crate) pooling: bool,
    pub(crate) p1_linker: wasmtime::Linker<P1Host>,
    pub(crate) p2_linker: wasmtime::component::Linker<P2Host>,
    cache: Option<Cache>,
    /// Workloads already compiled in this process, by sha256 of the binary.
    pub(crate) loaded: Mutex<HashMap<String, Workload>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine, starts its epoch ticker and prepares the linkers.
    pub fn new(config: RuntimeConfig) -> Result<Self, EngineError> {
        let mut wasm_config = Config::new();
        wasm_config.epoch_interruption(true);
        let cache = match &config.cache_dir {
            Some(dir) => {
                // wasmtime's own cache, not Module::serialize/deserialize: deserializing is
                // `unsafe` (bytes must come from a compatible wasmtime) and this workspace
                // forbids unsafe code. The cache keys entries by a hash of the binary and the
                // engine's settings and checks compatibility itself.
                std::fs::create_dir_all(dir).map_err(|source| EngineError::Cache {
                    dir: dir.clone(),
                    source: source.into(),
                })?;
                // wasmtime wants an absolute path; a relative one (`--data-dir skiff-data`)
                // is taken from the current directory, as everywhere else.
                let dir = std::path::absolute(dir).map_err(|source| EngineError::Cache {
                    dir: dir.clone(),
                    source: source.into(),
                })?;
                let mut cache_config = CacheConfig::new();
                cache_config.with_directory(&dir);
                let cache = Cache::new(cache_config).map_err(|source| EngineError::Cache {
                    dir: dir.clone(),
                    source: source.into(),
                })?;
                wasm_config.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };

        let (engine, pooling) = if config.pooling {
            let mut pooled = wasm_config.clone();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
                config.max_instances,
            )));
            match Engine::new(&pooled) {
                Ok(engine) => (engine, true),
                Err(error) => {
                    tracing::warn!(%error, "pooling allocator unavailable on this host; allocating instances on demand");
                    (
                        Engine::new(&wasm_config)
                            .map_err(|error| EngineError::Engine(error.into()))?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&wasm_config).map_err(|error| EngineError::Engine(error.into()))?,
                false,
            )
        };

        let mut p1_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |host: &mut P1Host| &mut host.wasi)
            .map_err(|error| EngineError::Link(error.into()))?;
        let mut p2_linker = wasmtime::component::Linker::new(&engine);
        // WASI 0.2 with skiff's own sockets over the pod network.
        crate::sockets::add_to_linker(&mut p2_linker)
            .map_err(|error| EngineError::Link(error.into()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2_linker)
            .map_err(|error| EngineError::Link(error.into()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone())
            .map_err(EngineError::Ticker)?;

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                config,
                pooling,
                p1_linker,
                p2_linker,
                cache,
                loaded: Mutex::new(HashMap::new()),
                ticker_stop,
            }),
        })
    }

    /// Whether instances come from the pooling allocator (false after a fallback).
    pub fn is_pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Hits and misses of the on-disk cache since this runtime started (zero without one).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(|cache| CacheStats {
                hits: cache.cache_hits(),
                misses: cache.cache_misses(),
            })
            .unwrap_or_default()
    }

    /// Compiles (or finds compiled) a wasm binary and detects what kind of workload it is.
    /// CPU-heavy on a cache miss: async callers should run it on a blocking thread.
    pub fn load(&self, bytes: &[u8]) -> Result<Workload, LoadError> {
        Workload::load(self, bytes)
    }

    /// Reads and loads a binary from a file.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<Workload, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&bytes)
    }

    /// Starts a container running `workload` as `spec` says. Must be called within a tokio
    /// runtime: the container's guest runs as a task on it.
    pub fn start(&self, workload: &Workload, spec: ContainerSpec) -> Result<Container, StartError> {
        Container::start(self, workload, spec)
    }
}

fn pooling_config(max_instances: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    // A component holds a few core instances and tables besides its memory (the shims
    // wit-component adds), so those pools are larger than the instance count.
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(4))
        .total_memories(max_instances)
        .total_tables(max_instances.saturating_mul(4))
        .total_stacks(max_instances);
    pool
}

/// Advances the engine's epoch every `tick` on a thread of its own: a tokio task could be
/// starved by the very guests it is meant to interrupt.
fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("skiff-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}
