//! `pods/NAME/portforward?ports=P`: a TCP stream from the caller to port P of the pod, in
//! the pod network of the node it runs on. The caller asks for an HTTP/1.1 upgrade
//! (`Upgrade: skiff-tcp`); the API server opens the same upgrade to the node's own API (with
//! the node API token, so only it can) and, once both have switched protocols, copies the
//! bytes both ways. `skiff port-forward` speaks it; kubectl's SPDY and WebSocket variants
//! come with the kubectl compatibility work.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::ApiServer;
use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;

/// The protocol name of the upgrade.
pub const PROTOCOL: &str = "skiff-tcp";

/// Answers an upgrade to a stream to `port` of the pod.
pub async fn port_forward(
    server: &ApiServer,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    query: Option<&str>,
    parts: &mut axum::http::request::Parts,
) -> ApiResult<Response> {
    let port: u16 = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ports="))
        .and_then(|p| p.parse().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request("ports: a port number (1-65535) is required"))?;
    let wants_upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(PROTOCOL));
    if !wants_upgrade {
        return Err(ApiError::bad_request(format!(
            "port forwarding needs an HTTP/1.1 upgrade to {PROTOCOL:?}"
        )));
    }
    let client_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
    let (_, pod) = server.get_object(rt, namespace, name).await?;
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::bad_request(format!(
            "unable to forward to pod {name}: it is not running"
        )));
    }
    let (address, node_name) = super::logs::node_api_address(server, &pod, name).await?;
    let Some(token) = server
        .config
        .node_key
        .as_ref()
        .map(|key| key.api_token(&node_name))
    else {
        return Err(ApiError::forbidden(
            "this API server has no credential for node APIs: port forwarding is unavailable",
        ));
    };
    let namespace = namespace.unwrap_or("default");
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(format!("node {node_name}: {e}")).with_code(StatusCode::BAD_GATEWAY)
    };
    let url = server.node_url(
        &address,
        &format!("/portForward/{namespace}/{name}?port={port}"),
    );
    let response = server
        .http
        .get(url)
        .bearer_auth(token)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, PROTOCOL)
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(
            ApiError::bad_request(format!("node {node_name}: {}", body.trim())).with_code(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            ),
        );
    }
    let node_upgrade = response.upgrade();
    tokio::spawn(async move {
        let (Ok(client), Ok(mut node)) = (client_upgrade.await, node_upgrade.await) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
    });
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    answer
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
    Ok(answer)
}
