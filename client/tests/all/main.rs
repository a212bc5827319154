//! Integration tests of skiff-client: one binary (STYLE.md).

mod controller;
mod crud;
mod failover;
mod fake;
mod informer;
mod kubeconfig;
mod watcher;
mod workqueue;

use std::future::Future;
use std::time::Duration;

/// Fails the test instead of hanging when `future` does not finish in time.
pub async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done after {seconds} s, likely deadlocked"),
    }
}
