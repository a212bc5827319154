//! Store and Informer: the cache follows the server through drops and relists.

use std::collections::BTreeSet;

use skiff_client::reflector::{self, Changes, ObjectRef, Store};
use skiff_client::watcher::Event;
use skiff_client::{Api, Informer};

use crate::fake::{Fake, Op, Script, Thing};
use crate::watcher::params;
use crate::within;

fn key(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(name).within(namespace)
}

#[test]
fn the_writer_applies_events_and_reports_changed_keys() {
    let (store, mut writer) = reflector::store::<Thing>();
    assert!(!store.is_ready());
    let changed = writer.apply(&Event::Restarted(vec![
        Thing::new("ns", "a", 1),
        Thing::new("ns", "b", 1),
    ]));
    assert_eq!(
        changed.into_iter().collect::<BTreeSet<_>>(),
        [key("ns", "a"), key("ns", "b")].into()
    );
    assert!(store.is_ready());

    assert_eq!(
        writer.apply(&Event::Applied(Thing::new("ns", "a", 2))),
        [key("ns", "a")]
    );
    assert_eq!(store.get(&key("ns", "a")).expect("a").spec.value, 2);
    assert_eq!(
        writer.apply(&Event::Deleted(Thing::new("ns", "b", 1))),
        [key("ns", "b")]
    );
    assert_eq!(store.len(), 1);

    // A restart replaces everything; what vanished is reported as changed too.
    let changed = writer.apply(&Event::Restarted(vec![Thing::new("ns", "c", 1)]));
    assert_eq!(
        changed.into_iter().collect::<BTreeSet<_>>(),
        [key("ns", "a"), key("ns", "c")].into()
    );
    assert_eq!(store.keys(), [key("ns", "c")]);
    assert_eq!(key("ns", "c").to_string(), "ns/c");
}

/// The store's content as (name, value, resourceVersion), sorted.
fn snapshot(things: impl IntoIterator<Item = Thing>) -> Vec<(String, i64, String)> {
    let mut all: Vec<_> = things
        .into_iter()
        .map(|t| {
            (
                ObjectRef::from_obj(&t).to_string(),
                t.spec.value,
                t.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect();
    all.sort();
    all
}

/// Reads changed keys into `changed` until the store satisfies `done`.
async fn wait_store(
    what: &str,
    store: &Store<Thing>,
    changes: &mut Changes<Thing>,
    changed: &mut BTreeSet<ObjectRef>,
    done: impl Fn(&Store<Thing>) -> bool,
) {
    within(10, what, async {
        while !done(store) {
            changed.insert(changes.next().await.expect("the informer lives"));
        }
    })
    .await
}

fn value(store: &Store<Thing>, namespace: &str, name: &str) -> Option<i64> {
    store.get(&key(namespace, name)).map(|t| t.spec.value)
}

#[tokio::test]
async fn the_store_converges_to_the_server_through_drops_and_relists() {
    let fake = Fake::start().await;
    fake.put("prod", "a", 1); // rv 1
    fake.put("dev", "b", 1); // rv 2
    fake.script(Script::AbortAfter(2));
    fake.script(Script::AbortAfter(1));
    let informer = Informer::new(Api::<Thing>::all(fake.client()), params());
    let store = informer.store();
    let mut changes = informer.subscribe();
    within(10, "waiting for the first list", store.wait_until_ready()).await;
    assert_eq!(
        snapshot(store.list().iter().map(|t| (**t).clone())),
        snapshot(fake.things())
    );

    let mut changed = BTreeSet::new();
    // Through the client, and directly: the first watch carries two, then breaks.
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    api.create(&Thing::new("prod", "c", 1))
        .await
        .expect("create"); // rv 3
    fake.put("prod", "a", 2); // rv 4
    fake.remove("dev", "b"); // rv 5
    wait_store("first watch", &store, &mut changes, &mut changed, |s| {
        value(s, "prod", "a") == Some(2)
    })
    .await;
    fake.cut_watches();
    // The second carries one, then breaks and finds its history compacted.
    wait_store("second watch", &store, &mut changes, &mut changed, |s| {
        value(s, "dev", "b").is_none()
    })
    .await;
    fake.put("prod", "c", 3); // rv 6
    fake.atomically(&[Op::Put("dev", "d", 1), Op::Remove("prod", "a"), Op::Compact]); // rv 7, 8
    fake.cut_watches();
    wait_store("relist", &store, &mut changes, &mut changed, |s| {
        value(s, "dev", "d").is_some()
    })
    .await;
    fake.put("prod", "e", 1); // rv 9, through the watch after the relist

    let server = snapshot(fake.things());
    wait_store("convergence", &store, &mut changes, &mut changed, |s| {
        snapshot(s.list().iter().map(|t| (**t).clone())) == server
    })
    .await;
    assert_eq!(
        fake.watch_versions(),
        ["2", "4", "5", "8"],
        "resumed after each cut, relisted after the 410"
    );
    assert_eq!(fake.list_count(), 4, "two lists of two pages");
    // Every object that changed after subscribing was reported.
    for name in [
        key("prod", "a"),
        key("prod", "c"),
        key("dev", "b"),
        key("dev", "d"),
        key("prod", "e"),
    ] {
        assert!(
            changed.contains(&name),
            "{name} changed but was not reported: {changed:?}"
        );
    }

    // A late subscriber starts with every key the store holds.
    let mut late = informer.subscribe();
    let mut first = BTreeSet::new();
    for _ in 0..store.len() {
        first.insert(
            within(10, "late subscriber", late.next())
                .await
                .expect("a key"),
        );
    }
    assert_eq!(first, store.keys().into_iter().collect());

    // Dropping the informer stops its task: subscribers learn it.
    drop(informer);
    assert_eq!(
        within(10, "waiting for the informer to stop", late.next()).await,
        None
    );
}
