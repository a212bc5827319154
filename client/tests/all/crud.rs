//! The verbs of `Api` against the fake server: paths, bodies, content types, errors.

use serde_json::json;
use skiff_client::{Api, DeleteOutcome, DeleteParams, ListParams, Method, Patch};

use crate::fake::{Fake, Thing, ThingStatus};

#[tokio::test]
async fn create_get_replace_patch_speak_the_kubernetes_api() {
    let fake = Fake::start().await;
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");

    let created = api
        .create(&Thing::new("prod", "a", 1))
        .await
        .expect("create");
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    assert!(
        created.metadata.uid.is_some(),
        "the stored object comes back"
    );

    let got = api.get("a").await.expect("get");
    assert_eq!(got, created);
    assert_eq!(api.get_opt("missing").await.expect("get_opt"), None);
    let missing = api.get("missing").await.expect_err("missing");
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(
        missing.status().and_then(|s| s.message.as_deref()),
        Some("things \"missing\" not found")
    );

    let taken = api
        .create(&Thing::new("prod", "a", 9))
        .await
        .expect_err("name taken");
    assert!(taken.is_already_exists() && !taken.is_conflict(), "{taken}");

    let mut changed = got.clone();
    changed.spec.value = 2;
    let replaced = api.replace("a", &changed).await.expect("replace");
    assert_eq!(replaced.spec.value, 2);
    // `changed` still carries the old resourceVersion: a lost update is refused.
    let stale = api.replace("a", &changed).await.expect_err("stale");
    assert!(stale.is_conflict(), "{stale}");

    let mut with_status = replaced.clone();
    with_status.status = Some(ThingStatus { seen: 2 });
    let after_status = api
        .replace_status("a", &with_status)
        .await
        .expect("replace_status");
    assert_eq!(after_status.status, Some(ThingStatus { seen: 2 }));

    let patched = api
        .patch("a", &Patch::Merge(json!({ "spec": { "value": 7 } })))
        .await
        .expect("patch");
    assert_eq!(patched.spec.value, 7);
    api.patch_status(
        "a",
        &Patch::Json(json!([{ "op": "replace", "path": "/status/seen", "value": 3 }])),
    )
    .await
    .expect("json patch");

    let seen = fake.seen();
    let requests: Vec<(Method, &str, Option<&str>)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.as_str(), s.content_type.as_deref()))
        .collect();
    let object = "/apis/example.dev/v1/namespaces/prod/things/a";
    let status = "/apis/example.dev/v1/namespaces/prod/things/a/status";
    assert_eq!(
        requests,
        [
            (
                Method::POST,
                "/apis/example.dev/v1/namespaces/prod/things",
                Some("application/json")
            ),
            (Method::GET, object, None),
            (
                Method::GET,
                "/apis/example.dev/v1/namespaces/prod/things/missing",
                None
            ),
            (
                Method::GET,
                "/apis/example.dev/v1/namespaces/prod/things/missing",
                None
            ),
            (
                Method::POST,
                "/apis/example.dev/v1/namespaces/prod/things",
                Some("application/json")
            ),
            (Method::PUT, object, Some("application/json")),
            (Method::PUT, object, Some("application/json")),
            (Method::PUT, status, Some("application/json")),
            (Method::PATCH, object, Some("application/merge-patch+json")),
            (Method::PATCH, status, Some("application/json-patch+json")),
        ]
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer t0k")),
        "every request carries the token"
    );
}

#[tokio::test]
async fn delete_tells_marked_from_gone() {
    let fake = Fake::start().await;
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");
    let mut held = Thing::new("prod", "held", 1);
    held.metadata.finalizers = vec!["example.dev/cleanup".into()];
    api.create(&held).await.expect("create");
    api.create(&Thing::new("prod", "free", 1))
        .await
        .expect("create");

    match api
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete")
    {
        DeleteOutcome::Deleting(thing) => assert!(thing.metadata.deletion_timestamp.is_some()),
        other => panic!("a finalizer holds the object, got {other:?}"),
    }
    let gone = api
        .delete("free", &DeleteParams::immediate())
        .await
        .expect("delete");
    assert_eq!(gone, DeleteOutcome::Deleted(None));
    assert!(api.get_opt("free").await.expect("get").is_none());
    let again = api
        .delete("free", &DeleteParams::default())
        .await
        .expect_err("already gone");
    assert!(again.is_not_found(), "{again}");

    let deletes: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::DELETE)
        .collect();
    assert_eq!(
        deletes[1].content_type.as_deref(),
        Some("application/json"),
        "DeleteOptions go as the body"
    );
}

#[tokio::test]
async fn list_pages_and_selectors_reach_the_server_intact() {
    let fake = Fake::start().await;
    for name in ["a", "b", "c"] {
        fake.put("prod", name, 1);
    }
    fake.put("dev", "d", 1);
    let api: Api<Thing> = Api::namespaced(fake.client(), "prod");

    let selector = "app in (web, api),tier!=db";
    let first = api
        .list(&ListParams {
            limit: Some(2),
            label_selector: Some(selector.into()),
            ..ListParams::default()
        })
        .await
        .expect("list");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a next page");
    let second = api
        .list(&ListParams {
            limit: Some(2),
            continue_token: Some(token),
            ..ListParams::default()
        })
        .await
        .expect("page 2");
    let names: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|t| t.metadata.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(second.metadata.continue_, None);
    assert_eq!(
        fake.seen()[0]
            .query
            .get("labelSelector")
            .map(String::as_str),
        Some(selector)
    );

    let everywhere: Api<Thing> = Api::all(fake.client());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .expect("list all")
            .items
            .len(),
        4
    );
    // Across namespaces, a create goes to the object's own namespace.
    everywhere
        .create(&Thing::new("dev", "e", 1))
        .await
        .expect("create");
    assert_eq!(
        fake.seen().last().expect("seen").path,
        "/apis/example.dev/v1/namespaces/dev/things"
    );
}

#[tokio::test]
async fn raw_requests_and_subresources() {
    let fake = Fake::start().await;
    let client = fake.client();
    let api: Api<Thing> = Api::namespaced(client.clone(), "prod");
    api.create(&Thing::new("prod", "a", 4))
        .await
        .expect("create");

    let raw = client
        .request_json(
            Method::GET,
            "/apis/example.dev/v1/namespaces/prod/things/a",
            None,
        )
        .await
        .expect("raw get");
    assert_eq!(raw["spec"]["value"], 4);
    let patched = client
        .request_patch(
            "/apis/example.dev/v1/namespaces/prod/things/a",
            &Patch::Merge(json!({ "spec": { "value": 5 } })),
        )
        .await
        .expect("raw patch");
    assert_eq!(patched["spec"]["value"], 5);

    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "target": { "kind": "Node", "name": "n1" } });
    let answer = api
        .create_subresource("a", "binding", &binding)
        .await
        .expect("binding");
    assert_eq!(answer["status"], "Success");
    assert_eq!(
        fake.seen().last().expect("seen").path,
        "/apis/example.dev/v1/namespaces/prod/things/a/binding"
    );

    // An error answer that is not a Status still becomes one.
    let error = client
        .request_json(Method::GET, "/nowhere", None)
        .await
        .expect_err("404");
    assert!(error.is_not_found(), "{error}");
    assert_eq!(
        error.status().and_then(|s| s.message.as_deref()),
        Some("404 page not found")
    );
}
