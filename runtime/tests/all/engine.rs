//! The engine: pooling where the host allows it, on-demand allocation where it does not.

use std::sync::Arc;

use skiff_runtime::{ContainerSpec, ExitStatus, MemorySink, Runtime, RuntimeConfig};

use crate::within;

#[test]
fn the_shared_runtime_pools_instances() {
    assert!(crate::runtime().is_pooling());
}

#[tokio::test]
async fn a_pool_the_host_cannot_reserve_falls_back_to_on_demand() {
    // Far more linear memories than a 64-bit address space can reserve.
    let config = RuntimeConfig {
        max_instances: u32::MAX / 2,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config).expect("the runtime falls back instead of failing");
    assert!(!runtime.is_pooling());
    let workload = runtime.load_file(skiff_samples::HELLO).unwrap();
    let container = runtime
        .start(
            &workload,
            ContainerSpec::new("hello", MemorySink::new() as Arc<_>),
        )
        .unwrap();
    assert_eq!(
        within(30, "hello on demand", container.wait()).await,
        ExitStatus::Exited(0)
    );
}
