//! controller::run: one reconcile per key, retries with back-off, requeues.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_client::WorkQueue;
use skiff_client::controller::{self, Action};
use tokio::time::Instant;

use crate::within;

#[derive(Default)]
struct Log {
    in_flight: HashSet<&'static str>,
    /// Two reconciles of one key at the same time: must never happen.
    overlaps: usize,
    /// Most reconciles running at once, any keys.
    max_parallel: usize,
    attempts: HashMap<&'static str, Vec<Duration>>,
    errors: usize,
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_successes_forget_and_keys_never_overlap() {
    let queue = WorkQueue::with_backoff(Duration::from_millis(5), Duration::from_secs(1));
    let log = Arc::new(Mutex::new(Log::default()));
    let start = Instant::now();

    let reconcile = {
        let log = log.clone();
        let queue = queue.clone();
        move |key: &'static str| {
            let log = log.clone();
            let queue = queue.clone();
            async move {
                let attempt = {
                    let mut log = log.lock().unwrap();
                    if !log.in_flight.insert(key) {
                        log.overlaps += 1;
                    }
                    log.max_parallel = log.max_parallel.max(log.in_flight.len());
                    let attempts = log.attempts.entry(key).or_default();
                    attempts.push(start.elapsed());
                    attempts.len()
                };
                // A change arrives while this key is being reconciled.
                if key == "busy" && attempt == 1 {
                    queue.add("busy");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                log.lock().unwrap().in_flight.remove(key);
                match (key, attempt) {
                    ("flaky", 1 | 2) => Err("not yet"),
                    ("flaky", 3) => Ok(Action::await_change()),
                    ("periodic", 1) => Ok(Action::requeue_after(Duration::from_secs(10))),
                    _ => Ok(Action::await_change()),
                }
            }
        }
    };
    let error_policy = {
        let log = log.clone();
        move |_: &&'static str, _: &&'static str| log.lock().unwrap().errors += 1
    };

    for key in ["flaky", "busy", "periodic"] {
        queue.add(key);
    }
    let runner = tokio::spawn(controller::run(queue.clone(), 4, reconcile, error_policy));
    tokio::time::sleep(Duration::from_secs(30)).await;
    queue.shutdown();
    within(5, "the controller stops after shutdown", runner)
        .await
        .expect("join");

    let log = log.lock().unwrap();
    assert_eq!(log.overlaps, 0, "one reconcile per key at a time");
    assert!(log.max_parallel >= 2, "different keys run concurrently");
    assert_eq!(log.errors, 2);
    let ms = |key| {
        log.attempts[key]
            .iter()
            .map(|d| d.as_millis())
            .collect::<Vec<_>>()
    };
    // Each failure waits its back-off (5 ms, then 10 ms) after a 50 ms reconcile.
    assert_eq!(ms("flaky"), [0, 55, 115]);
    // Re-added while in flight: once more, right after the first is done.
    assert_eq!(ms("busy"), [0, 50]);
    // Asked to come back after 10 s.
    assert_eq!(ms("periodic"), [0, 10_050]);
    assert_eq!(
        queue.num_requeues(&"flaky"),
        0,
        "a success forgets the back-off"
    );
}
