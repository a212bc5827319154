//! Integration tests of skiff-runtime against the sample workloads in samples-wasm.

mod cache;
mod engine;
mod files;
mod http;
mod kinds;
mod lifecycle;
mod limits;
mod network;
mod outgoing;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use skiff_runtime::{ContainerSpec, MemorySink, Runtime, RuntimeConfig, Workload};

/// One runtime for the whole test binary, as a node has one per process. It is not tied to
/// any test's tokio runtime: containers run on the runtime of the test that starts them.
/// No disk cache (tests/all/cache.rs covers it), so nothing is left behind in /tmp.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("runtime"))
}

fn load(path: &str) -> Workload {
    runtime()
        .load_file(path)
        .unwrap_or_else(|error| panic!("loading {path}: {error:?}"))
}

fn spec(name: &str) -> (ContainerSpec, Arc<MemorySink>) {
    let sink = MemorySink::new();
    (ContainerSpec::new(name, sink.clone()), sink)
}

/// Awaits `future`, failing the test if it takes longer than `seconds`.
async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {seconds}s: likely deadlocked"),
    }
}

/// Serialises the tests that load the CPU (spinning guests, CPU measurements), so that one
/// does not skew another's figures on a 2-core machine.
async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
