//! The behaviour every [`Store`] backend must have, as a suite any backend's tests run.
//!
//! `run_all(factory)` calls each check with a fresh, empty store from `factory`. The
//! factory returns the store and a guard (a temporary directory, a running etcd) that
//! is kept alive for the check.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{EventKind, ListOptions, Store, StoreError, WatchStream};

/// Runs every conformance check against fresh stores from `factory`.
pub async fn run_all<F, Fut, G>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Box<dyn Store>, G)>,
{
    macro_rules! check {
        ($name:ident) => {{
            let (store, guard) = factory().await;
            let store: Arc<dyn Store> = Arc::from(store);
            tokio::time::timeout(Duration::from_secs(60), $name(store.clone()))
                .await
                .expect(concat!(
                    stringify!($name),
                    " did not finish in 60 s: likely deadlocked"
                ));
            drop(store);
            drop(guard);
        }};
    }
    check!(create_get_and_already_exists);
    check!(update_is_compare_and_swap);
    check!(delete_returns_last_value_and_honours_expected_revision);
    check!(revisions_only_grow);
    check!(list_by_prefix_in_order_with_pages);
    check!(watch_replays_history_then_follows_live_changes);
    check!(watch_resumes_without_gap_or_duplicate);
    check!(compaction_refuses_older_watches);
    check!(concurrent_compare_and_swap_loses_no_update);
    check!(slow_watcher_still_gets_every_event_in_order);
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(watch: &mut WatchStream) -> super::Event {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no watch event within 10 s: likely deadlocked")
        .expect("watch ended")
        .expect("watch failed")
}

async fn create_get_and_already_exists(store: Arc<dyn Store>) {
    assert_eq!(store.get("/r/a").await.unwrap(), None);
    let kv = store.create("/r/a", b("one")).await.unwrap();
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(store.get("/r/a").await.unwrap(), Some(kv.clone()));
    let err = store.create("/r/a", b("two")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        store.get("/r/a").await.unwrap().unwrap().value,
        b("one"),
        "a refused create changes nothing"
    );
}

async fn update_is_compare_and_swap(store: Arc<dyn Store>) {
    let first = store.create("/r/a", b("1")).await.unwrap();
    let second = store
        .update("/r/a", b("2"), first.mod_revision)
        .await
        .unwrap();
    assert!(second.mod_revision > first.mod_revision);
    assert_eq!(second.create_revision, first.create_revision);
    match store.update("/r/a", b("3"), first.mod_revision).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, second.mod_revision),
        other => panic!("a stale revision must conflict, got {other:?}"),
    }
    assert_eq!(store.get("/r/a").await.unwrap().unwrap().value, b("2"));
    let err = store.update("/r/missing", b("x"), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

async fn delete_returns_last_value_and_honours_expected_revision(store: Arc<dyn Store>) {
    let kv = store.create("/r/a", b("1")).await.unwrap();
    let err = store
        .delete("/r/a", Some(kv.mod_revision + 100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let gone = store.delete("/r/a", Some(kv.mod_revision)).await.unwrap();
    assert_eq!(gone.value, b("1"));
    assert!(
        gone.mod_revision > kv.mod_revision,
        "a delete takes a revision of its own"
    );
    assert_eq!(store.get("/r/a").await.unwrap(), None);
    let err = store.delete("/r/a", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let again = store.create("/r/a", b("new")).await.unwrap();
    assert!(
        again.create_revision > gone.mod_revision,
        "a re-created key is a new key"
    );
}

async fn revisions_only_grow(store: Arc<dyn Store>) {
    let mut last = store.current_revision().await.unwrap();
    for i in 0..20 {
        let kv = store.create(&format!("/r/{i}"), b("x")).await.unwrap();
        assert!(kv.mod_revision > last);
        assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
        last = kv.mod_revision;
    }
}

async fn list_by_prefix_in_order_with_pages(store: Arc<dyn Store>) {
    for key in [
        "/pods/b/2",
        "/pods/a/1",
        "/pods/a/3",
        "/pods/ab/1",
        "/nodes/n1",
    ] {
        store.create(key, b(key)).await.unwrap();
    }
    let all = store
        .list("/pods/a/", ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/pods/a/1", "/pods/a/3"],
        "the prefix ends at its slash: /pods/ab/ is not in /pods/a/"
    );
    assert!(!all.more);
    assert_eq!(all.revision, store.current_revision().await.unwrap());

    let mut seen = Vec::new();
    let mut start_after = None;
    loop {
        let page = store
            .list(
                "/pods/",
                ListOptions {
                    start_after: start_after.clone(),
                    limit: Some(2),
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, ["/pods/a/1", "/pods/a/3", "/pods/ab/1", "/pods/b/2"]);
}

async fn watch_replays_history_then_follows_live_changes(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let a = store.create("/w/a", b("1")).await.unwrap();
    store.create("/other/x", b("not watched")).await.unwrap();
    let mut watch = store.watch("/w/", start).await.unwrap();
    let first = next(&mut watch).await;
    assert_eq!((first.kind, first.kv.clone()), (EventKind::Put, a.clone()));
    assert_eq!(first.prev, None);

    let updated = store.update("/w/a", b("2"), a.mod_revision).await.unwrap();
    let second = next(&mut watch).await;
    assert_eq!(second.kv, updated);
    assert_eq!(
        second.prev.as_ref().map(|p| p.value.clone()),
        Some(b("1")),
        "an update carries the previous value"
    );

    let deleted = store.delete("/w/a", None).await.unwrap();
    let third = next(&mut watch).await;
    assert_eq!(third.kind, EventKind::Delete);
    assert_eq!(third.kv.mod_revision, deleted.mod_revision);
    assert_eq!(third.kv.value, b("2"), "a delete carries the last value");
}

async fn watch_resumes_without_gap_or_duplicate(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    for i in 0..10 {
        store.create(&format!("/w/{i}"), b("x")).await.unwrap();
    }
    let mut watch = store.watch("/w/", start).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut watch).await.revision());
    }
    drop(watch);
    // Resume after the last event seen, as a client does after a dropped connection.
    let mut resumed = store.watch("/w/", *seen.last().unwrap()).await.unwrap();
    for i in 10..15 {
        store.create(&format!("/w/{i}"), b("x")).await.unwrap();
    }
    for _ in 0..11 {
        seen.push(next(&mut resumed).await.revision());
    }
    let expected: Vec<u64> = (start + 1..=start + 15).collect();
    assert_eq!(seen, expected, "every revision exactly once, in order");
}

async fn compaction_refuses_older_watches(store: Arc<dyn Store>) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(
            store
                .create(&format!("/c/{i}"), b("x"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    store.compact(revisions[2]).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), revisions[2]);
    match store.watch("/c/", revisions[1]).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, revisions[2]),
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("a watch from a compacted revision must fail"),
    }
    let mut watch = store.watch("/c/", revisions[2]).await.unwrap();
    assert_eq!(next(&mut watch).await.revision(), revisions[3]);
    assert_eq!(next(&mut watch).await.revision(), revisions[4]);
    assert_eq!(
        store.get("/c/0").await.unwrap().unwrap().value,
        b("x"),
        "compaction keeps current values"
    );
}

async fn concurrent_compare_and_swap_loses_no_update(store: Arc<dyn Store>) {
    store.create("/counter", b("0")).await.unwrap();
    let writers = 32;
    let increments = 10;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..increments {
                loop {
                    let kv = store.get("/counter").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    match store
                        .update("/counter", b(&(n + 1).to_string()), kv.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(other) => panic!("{other:?}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get("/counter").await.unwrap().unwrap();
    assert_eq!(
        std::str::from_utf8(&kv.value).unwrap(),
        (writers * increments).to_string()
    );
}

async fn slow_watcher_still_gets_every_event_in_order(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/s/", start).await.unwrap();
    let count = 6000u64;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..count / 8 {
                    store.create(&format!("/s/{w}-{i}"), b("x")).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // The watcher read nothing while 6000 events went by; it must still see them all.
    let mut last = start;
    for _ in 0..count {
        let revision = next(&mut watch).await.revision();
        assert_eq!(revision, last + 1, "no gap, no duplicate");
        last = revision;
    }
}
