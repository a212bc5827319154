//! HTTP services: one instance per request, served directly or over HTTP/1.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use skiff_runtime::{ExitStatus, HttpError, WorkloadKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{load, runtime, spec, within};

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(format!("http://pod.local{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn each_request_gets_an_answer_naming_the_pod() {
    let workload = load(skiff_samples::HTTP_HELLO);
    let (mut spec, _sink) = spec("http-hello");
    spec.env = vec![("POD_NAME".into(), "pod-a".into())];
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(container.kind(), WorkloadKind::HttpService);
    for path in ["/", "/second?x=1"] {
        let response = within(30, "request", container.handle_request(get(path)))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = within(30, "body", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, format!("hello from pod-a at {path}\n"));
    }
    assert_eq!(
        container.status(),
        None,
        "an HTTP service runs until stopped"
    );
    assert_eq!(
        within(30, "stop", container.stop(Duration::from_secs(5))).await,
        ExitStatus::Exited(0)
    );
    let refused = container.handle_request(get("/")).await;
    assert!(
        matches!(refused, Err(HttpError::Stopped { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn serve_http_answers_over_loopback() {
    let workload = load(skiff_samples::HTTP_HELLO);
    let (mut spec, _sink) = spec("http-hello");
    spec.env = vec![("POD_NAME".into(), "served".into())];
    let container = Arc::new(runtime().start(&workload, spec).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(skiff_runtime::serve_http(
        container.clone(),
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));

    let response = within(30, "http round trip", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /over-tcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    })
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("hello from served at /over-tcp\n"),
        "{response}"
    );

    stop_tx.send(()).unwrap();
    within(10, "server shutdown", server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_request_over_the_memory_limit_fails_as_out_of_memory() {
    let workload = load(skiff_samples::HTTP_HELLO);
    let (mut spec, _sink) = spec("http-hello");
    spec.memory_limit_bytes = Some(64 * 1024);
    let container = runtime().start(&workload, spec).unwrap();
    let result = within(30, "request", container.handle_request(get("/"))).await;
    assert!(
        matches!(result, Err(HttpError::NoResponse(ExitStatus::OutOfMemory))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_command_does_not_take_requests() {
    let workload = load(skiff_samples::TICKER);
    let (spec, _sink) = spec("ticker");
    let container = runtime().start(&workload, spec).unwrap();
    let result = container.handle_request(get("/")).await;
    assert!(
        matches!(result, Err(HttpError::NotHttp { .. })),
        "{result:?}"
    );
}
