//! Hostile and malformed requests: every one gets a 4xx `Status` with a reason, none a
//! panic or a 5xx, and the server keeps serving.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestServer, pod};

/// Every leaf of `value` replaced in turn by each of `replacements`.
fn mutations(value: &Value, replacements: &[Value]) -> Vec<Value> {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut paths = Vec::new();
    walk(value, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for path in paths.iter().filter(|p| !p.is_empty()) {
        for replacement in replacements {
            let mut copy = value.clone();
            let pointer = format!("/{}", path.join("/"));
            *copy.pointer_mut(&pointer).unwrap() = replacement.clone();
            out.push(copy);
        }
    }
    out
}

fn assert_client_error(status: StatusCode, body: &Value, what: &str) {
    assert!(
        status.is_client_error(),
        "{what}: expected 4xx, got {status}: {body}"
    );
    assert_eq!(body["kind"], "Status", "{what}: not a Status: {body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: no reason: {body}"
    );
}

#[tokio::test]
async fn hostile_bodies_paths_and_queries_get_4xx_and_the_server_keeps_serving() {
    let t = TestServer::new().await;
    let pods = "/api/v1/namespaces/default/pods";
    let mut checked = 0;

    // Every field of a valid pod replaced by values of the wrong shape.
    let replacements = [
        json!("string"),
        json!(-1),
        json!(1.5),
        json!(["a"]),
        json!({ "x": 1 }),
        json!(true),
        json!("x".repeat(300)),
    ];
    let mut base = pod("victim");
    base["spec"]["containers"][0]["ports"] = json!([{ "containerPort": 80, "name": "http" }]);
    base["spec"]["containers"][0]["resources"] =
        json!({ "limits": { "memory": "64Mi", "cpu": "500m" } });
    base["spec"]["volumes"] = json!([{ "name": "v", "emptyDir": {} }]);
    base["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "v", "mountPath": "/data" }]);
    for body in mutations(&base, &replacements) {
        let (status, answer) = t.post(pods, body.clone()).await;
        if status == StatusCode::CREATED {
            // Some replacements are valid (a label value "string"); clean up and move on.
            let name = answer["metadata"]["name"].as_str().unwrap().to_string();
            t.call(
                Method::DELETE,
                &format!("{pods}/{name}?gracePeriodSeconds=0"),
                None,
            )
            .await;
        } else {
            assert_client_error(status, &answer, &format!("body {body}"));
        }
        checked += 1;
    }

    // Bodies that are not objects at all.
    let raw_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"\"text\"".to_vec()),
        ("application/json", b"".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x80]),
        ("application/json", "[".repeat(100_000).into_bytes()),
        (
            "application/json",
            format!("{{\"metadata\":{}}}", "{\"a\":".repeat(5000)).into_bytes(),
        ),
        ("application/yaml", b"a: [".to_vec()),
        ("application/yaml", b"- just\n- a list\n".to_vec()),
        ("application/yaml", b"metadata: !!binary AAAA".to_vec()),
        (
            "application/yaml",
            "a: &a [x]\nb: *a\n".repeat(10).into_bytes(),
        ),
        ("text/html", b"<html>".to_vec()),
        ("application/merge-patch+json", b"{}".to_vec()),
    ];
    for (content_type, body) in raw_bodies {
        let (status, answer) = t.send(Method::POST, pods, content_type, body.clone()).await;
        assert_client_error(
            status,
            &answer,
            &format!("{content_type} body of {} bytes", body.len()),
        );
        checked += 1;
    }

    // Paths, methods and query strings.
    let requests: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/namespaces/default/widgets".into()),
        (Method::GET, "/api/v2/pods".into()),
        (Method::GET, "/apis/nope".into()),
        (Method::GET, "/apis/apps/v9/deployments".into()),
        (Method::GET, "/api/v1/namespaces/default/pods/a/b/c".into()),
        (Method::GET, "/api/v1/namespaces/default/pods/x/exec".into()),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods/x/status".into(),
        ),
        (Method::GET, "/api/v1/namespaces/default/pods/%00".into()),
        (Method::GET, "/api/v1/namespaces/default/pods/..".into()),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?limit=-1".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?limit=abc".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?labelSelector=(((".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?labelSelector=a%20in%20".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?fieldSelector=nonsense".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?fieldSelector=spec.secret%3Dx".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?continue=zz".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?continue=2f6f746865722f".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion=abc".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=-5".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=99999999999999999999999".into(),
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/default/pods/x?gracePeriodSeconds=soon".into(),
        ),
        (Method::PUT, "/api/v1/namespaces/default/pods".into()),
        (Method::PATCH, "/api/v1/namespaces/default/pods".into()),
        (Method::POST, "/api/v1/namespaces/default/pods/x".into()),
        (Method::POST, "/api".into()),
        (Method::DELETE, "/apis".into()),
        (Method::OPTIONS, "/api/v1/namespaces/default/pods".into()),
        (
            Method::POST,
            "/api/v1/namespaces/default/configmaps/x/binding".into(),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/configmaps/x/scale".into(),
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/default/pods/x/status".into(),
        ),
        (Method::GET, "/nothing/here".into()),
        (
            Method::GET,
            format!("/api/v1/namespaces/default/pods/{}", "a".repeat(300)),
        ),
    ];
    for (method, path) in requests {
        let (status, answer) = t.call(method.clone(), &path, Some(json!({}))).await;
        assert_client_error(status, &answer, &format!("{method} {path}"));
        checked += 1;
    }
    assert!(checked > 200, "only {checked} hostile requests were tried");

    // Still serving.
    t.create(pods, pod("after")).await;
    assert_eq!(t.get(&format!("{pods}/after")).await.0, StatusCode::OK);
}
