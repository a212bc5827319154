//! Watches: history then live changes, resume without gap or duplicate, 410 after
//! compaction, selector transitions, timeouts and bookmarks, watch-lists.

use std::time::Duration;

use serde_json::json;
use skiff_control_plane::apiserver::ApiServerConfig;

use crate::support::{EventReader, TestServer, rv};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, app: &str) -> serde_json::Value {
    json!({ "metadata": { "name": name, "labels": { "app": app } }, "data": { "v": "1" } })
}

#[tokio::test]
async fn watch_from_a_version_sends_later_changes_in_order() {
    let t = TestServer::new().await;
    let a = t.create(CONFIGMAPS, cm("a", "web")).await;
    let b = t.create(CONFIGMAPS, cm("b", "web")).await;
    let mut events = EventReader::new(
        t.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={}", rv(&a)))
            .await,
    );
    let (kind, object) = events.expect().await;
    assert_eq!(
        (kind.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("b"))
    );
    assert_eq!(rv(&object), rv(&b));

    let (_, patched) = t
        .patch(
            &format!("{CONFIGMAPS}/a"),
            "application/merge-patch+json",
            json!({ "data": { "v": "2" } }),
        )
        .await;
    let (kind, object) = events.expect().await;
    assert_eq!(kind, "MODIFIED");
    assert_eq!(object["data"]["v"], "2");
    assert_eq!(rv(&object), rv(&patched));

    let (_, deleted) = t.delete(&format!("{CONFIGMAPS}/b")).await;
    let (kind, object) = events.expect().await;
    assert_eq!(kind, "DELETED");
    assert_eq!(object["metadata"]["name"], "b");
    assert_eq!(rv(&object), rv(&deleted));

    // Other namespaces and kinds stay out of this watch.
    t.create(
        "/api/v1/namespaces/kube-system/configmaps",
        cm("elsewhere", "web"),
    )
    .await;
    t.create(
        "/api/v1/namespaces/default/secrets",
        json!({ "metadata": { "name": "s" } }),
    )
    .await;
    let last = t.create(CONFIGMAPS, cm("c", "web")).await;
    let (kind, object) = events.expect().await;
    assert_eq!((kind.as_str(), rv(&object)), ("ADDED", rv(&last)));
}

#[tokio::test]
async fn watch_without_a_version_starts_with_the_current_objects() {
    let t = TestServer::new().await;
    t.create(CONFIGMAPS, cm("a", "web")).await;
    t.create(CONFIGMAPS, cm("b", "web")).await;
    let mut events = EventReader::new(t.watch(&format!("{CONFIGMAPS}?watch=true")).await);
    let mut names = vec![
        events.expect().await.1["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    names.push(
        events.expect().await.1["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert_eq!(names, ["a", "b"]);
    t.create(CONFIGMAPS, cm("c", "web")).await;
    let (kind, object) = events.expect().await;
    assert_eq!(
        (kind.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("c"))
    );
}

#[tokio::test]
async fn a_resumed_watch_has_no_gap_and_no_duplicate() {
    let t = TestServer::new().await;
    let start = t.get(CONFIGMAPS).await.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..5 {
        t.create(CONFIGMAPS, cm(&format!("c{i}"), "web")).await;
    }
    let mut seen = Vec::new();
    {
        let mut events = EventReader::new(
            t.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion={start}"))
                .await,
        );
        for _ in 0..3 {
            seen.push(rv(&events.expect().await.1));
        }
    } // the client goes away mid-stream
    let resume_from = *seen.last().unwrap();
    for i in 5..8 {
        t.create(CONFIGMAPS, cm(&format!("c{i}"), "web")).await;
    }
    let mut events = EventReader::new(
        t.watch(&format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={resume_from}"
        ))
        .await,
    );
    for _ in 0..5 {
        seen.push(rv(&events.expect().await.1));
    }
    let start: u64 = start.parse().unwrap();
    assert_eq!(seen, (start + 1..=start + 8).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_watch_from_compacted_history_gets_410_expired() {
    let t = TestServer::with_config(ApiServerConfig {
        history_revisions: 2,
        ..ApiServerConfig::default()
    })
    .await;
    let first = t.create(CONFIGMAPS, cm("a", "web")).await;
    for i in 0..5 {
        t.create(CONFIGMAPS, cm(&format!("c{i}"), "web")).await;
    }
    t.server.compact_once().await.unwrap();
    let mut events = EventReader::new(
        t.watch(&format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={}",
            rv(&first)
        ))
        .await,
    );
    let (kind, status) = events.expect().await;
    assert_eq!(kind, "ERROR");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(
        events.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn selector_watches_see_objects_enter_and_leave() {
    let t = TestServer::new().await;
    let start = rv(&t.create(CONFIGMAPS, cm("other", "db")).await);
    let mut events = EventReader::new(
        t.watch(&format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={start}&labelSelector=app%3Dweb"
        ))
        .await,
    );
    t.create(CONFIGMAPS, cm("x", "db")).await;
    t.patch(
        &format!("{CONFIGMAPS}/x"),
        "application/merge-patch+json",
        json!({ "metadata": { "labels": { "app": "web" } } }),
    )
    .await;
    assert_eq!(events.expect().await.0, "ADDED", "x started to match");
    t.patch(
        &format!("{CONFIGMAPS}/x"),
        "application/merge-patch+json",
        json!({ "data": { "v": "2" } }),
    )
    .await;
    assert_eq!(events.expect().await.0, "MODIFIED");
    t.patch(
        &format!("{CONFIGMAPS}/x"),
        "application/merge-patch+json",
        json!({ "metadata": { "labels": { "app": "db" } } }),
    )
    .await;
    assert_eq!(events.expect().await.0, "DELETED", "x stopped matching");
    t.delete(&format!("{CONFIGMAPS}/x")).await;
    let last = t.create(CONFIGMAPS, cm("y", "web")).await;
    let (kind, object) = events.expect().await;
    assert_eq!(
        (kind.as_str(), rv(&object)),
        ("ADDED", rv(&last)),
        "the delete of a non-matching object was not sent"
    );
}

#[tokio::test]
async fn timeouts_end_watches_and_bookmarks_report_progress() {
    let t = TestServer::with_config(ApiServerConfig {
        bookmark_interval: Duration::from_millis(100),
        ..ApiServerConfig::default()
    })
    .await;
    let created = t.create(CONFIGMAPS, cm("a", "web")).await;
    let mut events = EventReader::new(
        t.watch(&format!(
            "{CONFIGMAPS}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=2",
            rv(&created)
        ))
        .await,
    );
    let (kind, object) = events.expect().await;
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(rv(&object), rv(&created));
    // Only bookmarks follow, until timeoutSeconds ends the stream.
    while let Some(event) = events.next().await {
        assert_eq!(event["type"], "BOOKMARK");
    }
}

#[tokio::test]
async fn closing_watches_ends_them_for_shutdown() {
    let t = TestServer::new().await;
    let mut events = EventReader::new(
        t.watch(&format!("{CONFIGMAPS}?watch=1&resourceVersion=1"))
            .await,
    );
    t.server.close_watches();
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_watch_list_sends_the_current_objects_then_a_bookmark_then_changes() {
    let t = TestServer::new().await;
    let a = t.create(CONFIGMAPS, cm("a", "web")).await;
    let b = t.create(CONFIGMAPS, cm("b", "web")).await;
    // What client-go's informers ask for (kubectl `wait`, `rollout status`): the state as
    // of at least the given version, then its end, then what changes.
    let mut events = EventReader::new(
        t.watch(&format!(
            "{CONFIGMAPS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={}",
            rv(&a)
        ))
        .await,
    );
    for expected in ["a", "b"] {
        let (kind, object) = events.expect().await;
        assert_eq!(kind, "ADDED");
        assert_eq!(object["metadata"]["name"], expected);
    }
    let (kind, end) = events.expect().await;
    assert_eq!(kind, "BOOKMARK");
    assert_eq!(
        end["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&end) >= rv(&b), "the state ends at or after b: {end}");
    let c = t.create(CONFIGMAPS, cm("c", "web")).await;
    let (kind, object) = events.expect().await;
    assert_eq!((kind.as_str(), rv(&object)), ("ADDED", rv(&c)));

    // `sendInitialEvents=false` without a version: changes from now on only.
    let mut events = EventReader::new(
        t.watch(&format!("{CONFIGMAPS}?watch=1&sendInitialEvents=false"))
            .await,
    );
    t.create(CONFIGMAPS, cm("d", "web")).await;
    let (kind, object) = events.expect().await;
    assert_eq!(kind, "ADDED");
    assert_eq!(object["metadata"]["name"], "d");
}
