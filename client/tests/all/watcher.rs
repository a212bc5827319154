//! The watcher against the fake server: list, watch, resume, relist.

use std::time::Duration;

use futures::StreamExt;
use skiff_client::watcher::Event;
use skiff_client::{Api, Backoff, Result, WatcherParams, watcher};

use crate::fake::{Fake, Op, Script, Thing};
use crate::within;

/// Fast retries, so tests need no paused clock (they talk over real sockets).
pub fn params() -> WatcherParams {
    WatcherParams {
        page_size: Some(1),
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(20), 0.0),
        ..WatcherParams::default()
    }
}

/// `kind name value@resourceVersion`, to compare event sequences at a glance.
fn show(event: &Event<Thing>) -> String {
    let one = |t: &Thing| {
        format!(
            "{}={}@{}",
            t.metadata.name(),
            t.spec.value,
            t.metadata.resource_version.as_deref().unwrap_or("?")
        )
    };
    match event {
        Event::Restarted(all) => format!(
            "restarted [{}]",
            all.iter().map(one).collect::<Vec<_>>().join(" ")
        ),
        Event::Applied(t) => format!("applied {}", one(t)),
        Event::Deleted(t) => format!("deleted {}", one(t)),
    }
}

/// Runs a watcher on its own task, so it makes progress while the test waits on
/// the fake; its items arrive on the returned channel.
pub fn spawn_watcher(api: Api<Thing>, params: WatcherParams) -> Events {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, params));
        while let Some(event) = events.next().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    Events { rx, task }
}

/// The items of a spawned watcher; stops it when dropped.
pub struct Events {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Event<Thing>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Events {
    /// The next `n` successful events, shown, and how many errors came among them.
    pub async fn next(&mut self, n: usize) -> (Vec<String>, usize) {
        within(10, "waiting for watcher events", async {
            let mut events = Vec::new();
            let mut errors = 0;
            while events.len() < n {
                match self.rx.recv().await.expect("the watcher never ends") {
                    Ok(event) => events.push(show(&event)),
                    Err(_) => errors += 1,
                }
            }
            (events, errors)
        })
        .await
    }
}

#[tokio::test]
async fn lists_in_pages_then_watches_and_resumes_after_a_dropped_connection() {
    let fake = Fake::start().await;
    fake.put("prod", "a", 1); // rv 1
    fake.put("prod", "b", 1); // rv 2
    fake.put("dev", "x", 1); // rv 3, another namespace
    fake.script(Script::AbortAfter(2));
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    let mut events = spawn_watcher(api, params());

    let (first, errors) = events.next(1).await;
    assert_eq!(first, ["restarted [a=1@1 b=1@2]"]);
    assert_eq!(errors, 0);
    assert_eq!(
        fake.list_count(),
        2,
        "page_size 1 over two objects: two pages"
    );

    fake.put("prod", "a", 2); // rv 4
    fake.put("prod", "c", 1); // rv 5
    fake.remove("prod", "b"); // rv 6
    fake.put("prod", "c", 2); // rv 7

    // The first watch sends two events, then its connection breaks.
    let (changes, errors) = events.next(2).await;
    assert_eq!(changes, ["applied a=2@4", "applied c=1@5"]);
    assert_eq!(errors, 0);
    fake.cut_watches();
    let (changes, errors) = events.next(2).await;
    assert_eq!(
        changes,
        ["deleted b=1@6", "applied c=2@7"],
        "the rest, nothing twice"
    );
    assert_eq!(errors, 1, "the dropped connection is reported once");
    // Watched from the list's revision, then resumed from the last event seen.
    assert_eq!(fake.watch_versions(), ["3", "5"]);
    assert_eq!(fake.list_count(), 2, "a dropped connection needs no relist");
}

#[tokio::test]
async fn resumes_from_the_last_bookmark() {
    let fake = Fake::start().await;
    fake.put("prod", "a", 1); // rv 1
    fake.script(Script::BookmarkAndEnd);
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    let mut events = spawn_watcher(api, params());
    assert_eq!(events.next(1).await.0, ["restarted [a=1@1]"]);

    // A change this watch does not see moves the revision on; the bookmark tells it,
    // and the watch ends.
    fake.put("dev", "x", 1); // rv 2
    within(
        10,
        "waiting for the resumed watch",
        fake.wait_for_requests(|seen| seen.iter().filter(|s| s.is_watch()).count() == 2),
    )
    .await;
    fake.put("prod", "a", 2); // rv 3
    assert_eq!(events.next(1).await.0, ["applied a=2@3"]);
    assert_eq!(
        fake.watch_versions(),
        ["1", "2"],
        "resumed from the bookmark"
    );
}

#[tokio::test]
async fn relists_when_the_watch_is_too_old() {
    let fake = Fake::start().await;
    fake.put("prod", "a", 1); // rv 1
    fake.put("prod", "b", 1); // rv 2
    fake.script(Script::AbortAfter(1));
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    let mut events = spawn_watcher(api, params());
    assert_eq!(events.next(1).await.0, ["restarted [a=1@1 b=1@2]"]);

    fake.put("prod", "a", 2); // rv 3: delivered
    assert_eq!(events.next(1).await.0, ["applied a=2@3"]);
    // These cut the watch, and the history from 3 is compacted away at once: resuming
    // is refused with an ERROR 410, and the watcher lists again.
    fake.atomically(&[
        Op::Remove("prod", "b"),
        Op::Put("prod", "c", 1),
        Op::Compact,
    ]); // rv 4, 5
    fake.cut_watches();

    let (relisted, errors) = events.next(1).await;
    assert_eq!(relisted, ["restarted [a=2@3 c=1@5]"]);
    assert_eq!(
        errors, 1,
        "only the dropped connection is an error; 410 is routine"
    );
    assert_eq!(fake.watch_versions()[..2], ["2", "3"]);
    assert_eq!(fake.list_count(), 4, "two pages, twice");

    // After the relist it watches from the new list's revision.
    fake.put("prod", "c", 2); // rv 6
    assert_eq!(events.next(1).await.0, ["applied c=2@6"]);
    assert_eq!(fake.watch_versions(), ["2", "3", "5"]);
}

#[tokio::test]
async fn relists_on_an_http_410_and_retries_failed_lists() {
    let fake = Fake::start().await;
    fake.put("prod", "a", 1);
    fake.fail_lists(2);
    fake.script(Script::HttpGone);
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    let mut events = spawn_watcher(
        api,
        WatcherParams {
            page_size: None,
            ..params()
        },
    );

    let (first, errors) = events.next(1).await;
    assert_eq!(first, ["restarted [a=1@1]"]);
    assert_eq!(errors, 2, "each failed list is reported, then retried");
    let (second, errors) = events.next(1).await;
    assert_eq!(
        second,
        ["restarted [a=1@1]"],
        "a watch refused with 410 relists"
    );
    assert_eq!(errors, 0);
    assert_eq!(fake.list_count(), 4);
}
