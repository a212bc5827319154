//! The node agent's own small HTTP API: container logs, for the API server to proxy
//! (`pods/NAME/log`), port-forward, and the running containers' usage for the metrics API
//! (`/stats/summary`, see [`crate::stats`]). It answers only callers holding the node API
//! token, which the API server has; nothing else of the node is reachable through it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use skiff_client::ObjectRef;

use crate::NodeContext;
use crate::logs::{self, StoredLine};

/// The query of a log request, with kubectl's names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    pub follow: Option<bool>,
    pub previous: Option<bool>,
    pub tail_lines: Option<usize>,
    pub timestamps: Option<bool>,
    pub since_seconds: Option<u64>,
}

/// The node API's router.
pub fn router(ctx: Arc<NodeContext>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/portForward/{namespace}/{pod}", get(port_forward))
        .route("/stats/summary", get(stats_summary))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(ctx.clone(), authenticate))
        .with_state(ctx)
}

async fn authenticate(
    State(ctx): State<Arc<NodeContext>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&ctx.config.api_token, given) {
        (Some(expected), Some(given))
            if !expected.is_empty() && constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
        {
            next.run(request).await
        }
        _ => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

/// Equality that takes as long whatever the bytes, so a token cannot be guessed by timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The pod `namespace/name` if it is bound to this node.
fn pod_here(ctx: &NodeContext, namespace: &str, name: &str) -> Option<Arc<skiff_api::core::Pod>> {
    ctx.pods.get(&ObjectRef::new(name).within(namespace))
}

/// The 404 for a pod that is not on this node.
fn not_here(namespace: &str, name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("pod {namespace}/{name} is not on this node"),
    )
        .into_response()
}

/// What the node's pods use now, for the API server's metrics API.
async fn stats_summary(State(ctx): State<Arc<NodeContext>>) -> Response {
    axum::Json(ctx.stats.summary(&ctx.config.name, ctx.config.stats_period)).into_response()
}

/// The query of a port-forward request.
#[derive(Debug, Deserialize)]
pub struct PortQuery {
    pub port: u16,
}

/// Upgrades the connection to a TCP stream to the pod's port, in the pod network.
async fn port_forward(
    State(ctx): State<Arc<NodeContext>>,
    Path((namespace, pod)): Path<(String, String)>,
    Query(query): Query<PortQuery>,
    mut request: Request,
) -> Response {
    let Some(found) = pod_here(&ctx, &namespace, &pod) else {
        return not_here(&namespace, &pod);
    };
    let Some(ip) = found
        .status
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            format!("pod {namespace}/{pod} has no IP address"),
        )
            .into_response();
    };
    let to = std::net::SocketAddr::new(ip, query.port);
    let mut stream = match ctx
        .network
        .connect_to_pod(to, ctx.pod_network_address())
        .await
    {
        Ok(stream) => stream,
        Err(error) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("connecting to {to} in pod {namespace}/{pod}: {error}"),
            )
                .into_response();
        }
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut upgraded = hyper_util::rt::TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut stream).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "skiff-tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

async fn container_logs(
    State(ctx): State<Arc<NodeContext>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let Some(found) = pod_here(&ctx, &namespace, &pod) else {
        return not_here(&namespace, &pod);
    };
    let known = found
        .spec
        .containers
        .iter()
        .chain(&found.spec.init_containers)
        .any(|c| c.name == container);
    if !known {
        return (
            StatusCode::BAD_REQUEST,
            format!("container {container:?} is not valid for pod {pod:?}"),
        )
            .into_response();
    }
    let pod_dir = ctx
        .config
        .data_dir
        .join("pods")
        .join(found.metadata.uid.as_deref().unwrap_or_default());
    let runs = logs::runs(&pod_dir, &container);
    let run = if query.previous.unwrap_or(false) {
        match runs.len().checked_sub(2).map(|i| runs[i]) {
            Some(run) => run,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
                    .into_response();
            }
        }
    } else {
        match runs.last() {
            Some(run) => *run,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("container {container:?} in pod {pod:?} has not started yet"),
                )
                    .into_response();
            }
        }
    };
    let path = logs::log_path(&pod_dir, &container, run);
    let (mut lines, offset) = match logs::read_lines(&path) {
        Ok(read) => read,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the log: {error}"),
            )
                .into_response();
        }
    };
    if let Some(since) = query.since_seconds {
        let cutoff = SystemTime::now() - Duration::from_secs(since);
        lines.retain(|l| humantime::parse_rfc3339_weak(&l.time).is_ok_and(|t| t >= cutoff));
    }
    if let Some(tail) = query.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let timestamps = query.timestamps.unwrap_or(false);
    let first = Bytes::from(render(&lines, timestamps));
    let follow = if query.follow.unwrap_or(false) && !query.previous.unwrap_or(false) {
        ctx.logs.follow(&path)
    } else {
        None
    };
    let Some(mut written) = follow else {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], first).into_response();
    };
    // Follow: send what is there, then each new batch of lines, until the run ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        let mut offset = offset;
        loop {
            let ended = written.changed().await.is_err();
            match logs::read_from(&path, offset) {
                Ok((lines, next)) => {
                    offset = next;
                    if !lines.is_empty()
                        && tx
                            .send(Bytes::from(render(&lines, timestamps)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Err(_) => return,
            }
            if ended {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn render(lines: &[StoredLine], timestamps: bool) -> String {
    let mut out = String::new();
    for line in lines {
        if timestamps {
            out.push_str(&line.time);
            out.push(' ');
        }
        out.push_str(&line.text);
        out.push('\n');
    }
    out
}
