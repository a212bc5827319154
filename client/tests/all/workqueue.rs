//! WorkQueue: dedupe, one worker per key, delays, back-off, shutdown. Paused clock.

use std::time::Duration;

use skiff_client::WorkQueue;
use tokio::time::Instant;

use crate::within;

#[tokio::test(start_paused = true)]
async fn adds_fold_while_a_key_waits() {
    let queue = WorkQueue::new();
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.get().await, Some("a"));
    assert_eq!(queue.get().await, Some("b"));
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_key_in_flight_is_handed_out_again_only_after_done() {
    let queue = WorkQueue::new();
    queue.add("a");
    let key = queue.get().await.expect("a");
    queue.add("a");
    queue.add("a");
    assert_eq!(
        queue.len(),
        0,
        "not handed to a second worker while in flight"
    );
    queue.add("b");
    assert_eq!(queue.get().await, Some("b"), "other keys go on");
    queue.done(&key);
    assert_eq!(queue.len(), 1, "re-added once, however often it was added");
    assert_eq!(queue.get().await, Some("a"));
    queue.done(&"a");
    queue.done(&"b");
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delayed_keys_come_in_due_order_at_their_time() {
    let queue = WorkQueue::new();
    let start = Instant::now();
    queue.add_after("late", Duration::from_millis(300));
    queue.add_after("soon", Duration::from_millis(100));
    queue.add_after("middle", Duration::from_millis(200));
    queue.add_after("middle", Duration::from_millis(250)); // the earlier stays
    queue.add_after("late", Duration::from_millis(150)); // an earlier wins
    assert_eq!(queue.len(), 0);
    assert_eq!(queue.delayed_len(), 3);
    let mut got = Vec::new();
    for _ in 0..3 {
        let key = within(5, "delayed get", queue.get()).await.expect("key");
        got.push((key, start.elapsed().as_millis()));
    }
    assert_eq!(got, [("soon", 100), ("late", 150), ("middle", 200)]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_getter_wakes_for_an_add_and_for_an_earlier_delay() {
    let queue = WorkQueue::<&str>::new();
    let getter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::task::yield_now().await;
    queue.add("x");
    assert_eq!(
        within(5, "woken by add", getter).await.expect("join"),
        Some("x")
    );

    let start = Instant::now();
    queue.add_after("far", Duration::from_secs(60));
    let getter = tokio::spawn({
        let queue = queue.clone();
        async move { queue.get().await }
    });
    tokio::task::yield_now().await;
    queue.add_after("near", Duration::from_secs(1));
    assert_eq!(
        within(5, "woken by the nearer delay", getter)
            .await
            .expect("join"),
        Some("near")
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn rate_limited_back_off_doubles_to_the_cap_and_forget_resets_it() {
    let queue = WorkQueue::with_backoff(Duration::from_millis(5), Duration::from_millis(40));
    let mut delays = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        queue.add_rate_limited("k");
        let key = within(5, "rate-limited get", queue.get())
            .await
            .expect("key");
        delays.push(start.elapsed().as_millis());
        queue.done(&key);
    }
    assert_eq!(delays, [5, 10, 20, 40, 40]);
    assert_eq!(queue.num_requeues(&"k"), 5);

    queue.forget(&"k");
    assert_eq!(queue.num_requeues(&"k"), 0);
    let start = Instant::now();
    queue.add_rate_limited("k");
    queue.get().await.expect("key");
    assert_eq!(start.elapsed(), Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn shutdown_wakes_every_getter() {
    let queue = WorkQueue::<u32>::new();
    queue.add_after(1, Duration::from_secs(3600));
    let getters: Vec<_> = (0..3)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.get().await })
        })
        .collect();
    tokio::task::yield_now().await;
    queue.shutdown();
    for getter in getters {
        assert_eq!(
            within(5, "getter after shutdown", getter)
                .await
                .expect("join"),
            None
        );
    }
    queue.add(2);
    assert_eq!(queue.get().await, None, "adds after shutdown are ignored");
    assert!(queue.is_shut_down());
}
