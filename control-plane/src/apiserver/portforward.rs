//! `pods/NAME/portforward?ports=P`: a TCP stream from the caller to port P of the pod, in
//! the pod network of the node it runs on. The caller asks for an HTTP/1.1 upgrade
//! (`Upgrade: skiff-tcp`); the API server opens the same upgrade to the node's own API (with
//! the node API token, so only it can) and, once both have switched protocols, copies the
//! bytes both ways. `skiff port-forward` speaks it. kubectl speaks SPDY/3 instead (after
//! trying WebSocket, which is refused so that it falls back): each of its streams is
//! carried the same way ([`super::spdy`]).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::ApiServer;
use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;

/// The protocol name of skiff's own upgrade.
pub const PROTOCOL: &str = "skiff-tcp";
/// kubectl's: SPDY/3 carrying `portforward.k8s.io` streams (see [`super::spdy`]).
const SPDY: &str = "SPDY/3.1";
const SPDY_SUBPROTOCOL: &str = "portforward.k8s.io";

/// Which protocol the caller asked to upgrade to.
enum Upgrade {
    /// One stream to one port (`?ports=P`).
    Skiff(u16),
    /// kubectl's: streams to the ports its stream headers name.
    Spdy,
}

/// Answers an upgrade to streams to ports of the pod.
pub async fn port_forward(
    server: &ApiServer,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    query: Option<&str>,
    parts: &mut axum::http::request::Parts,
) -> ApiResult<Response> {
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let upgrade = header(header::UPGRADE);
    let upgrade = if upgrade.iter().any(|u| u == &SPDY.to_ascii_lowercase()) {
        if !header(header::HeaderName::from_static("x-stream-protocol-version"))
            .iter()
            .any(|v| v == SPDY_SUBPROTOCOL)
        {
            return Err(ApiError::bad_request(format!(
                "X-Stream-Protocol-Version: SPDY port forwarding speaks {SPDY_SUBPROTOCOL:?}"
            )));
        }
        Upgrade::Spdy
    } else if upgrade.iter().any(|u| u == PROTOCOL) {
        let port: u16 = query
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("ports="))
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| ApiError::bad_request("ports: a port number (1-65535) is required"))?;
        Upgrade::Skiff(port)
    } else {
        // kubectl tries WebSocket first and falls back to SPDY on this refusal.
        return Err(ApiError::bad_request(format!(
            "port forwarding needs an HTTP/1.1 upgrade to {SPDY:?} (kubectl) or {PROTOCOL:?} \
             (skiff port-forward); WebSocket is not served"
        )));
    };
    let client_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
    let node = NodeDialer::for_pod(server, rt, namespace, name).await?;
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = answer.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match upgrade {
        Upgrade::Skiff(port) => {
            // The node is dialled first, so a failure is this request's answer.
            let node_stream = node
                .open(port)
                .await
                .map_err(|(code, message)| ApiError::bad_request(message).with_code(code))?;
            tokio::spawn(async move {
                let (Ok(client), mut node) = (client_upgrade.await, node_stream) else {
                    return;
                };
                let mut client = TokioIo::new(client);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
            });
            headers.insert(header::UPGRADE, HeaderValue::from_static(PROTOCOL));
        }
        Upgrade::Spdy => {
            tokio::spawn(async move {
                let Ok(client) = client_upgrade.await else {
                    return;
                };
                let dial = move |port: u16| {
                    let node = node.clone();
                    async move { node.open(port).await.map_err(|(_, message)| message) }
                };
                if let Err(error) = super::spdy::serve(TokioIo::new(client), dial).await {
                    tracing::debug!(%error, "a SPDY port-forward session ended");
                }
            });
            headers.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
            headers.insert(
                header::HeaderName::from_static("x-stream-protocol-version"),
                HeaderValue::from_static(SPDY_SUBPROTOCOL),
            );
        }
    }
    Ok(answer)
}

/// How to reach one running pod's ports: through its node's API, with the token only the
/// API server can present.
#[derive(Clone)]
struct NodeDialer {
    http: reqwest::Client,
    node: String,
    /// The node API's port-forward URL for the pod, without the port.
    url: String,
    token: String,
}

impl NodeDialer {
    async fn for_pod(
        server: &ApiServer,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<NodeDialer> {
        let (_, pod) = server.get_object(rt, namespace, name).await?;
        if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
            return Err(ApiError::bad_request(format!(
                "unable to forward to pod {name}: it is not running"
            )));
        }
        let (address, node) = super::logs::node_api_address(server, &pod, name).await?;
        let Some(token) = server
            .config
            .node_key
            .as_ref()
            .map(|key| key.api_token(&node))
        else {
            return Err(ApiError::forbidden(
                "this API server has no credential for node APIs: port forwarding is unavailable",
            ));
        };
        let namespace = namespace.unwrap_or("default");
        Ok(NodeDialer {
            http: server.http.clone(),
            url: server.node_url(&address, &format!("/portForward/{namespace}/{name}")),
            node,
            token,
        })
    }

    /// A byte stream to `port` of the pod, or what went wrong (the node's answer, or 502
    /// when it gave none), worded for the caller.
    async fn open(&self, port: u16) -> Result<reqwest::Upgraded, (StatusCode, String)> {
        let node = &self.node;
        let unreachable =
            |e: &dyn std::fmt::Display| (StatusCode::BAD_GATEWAY, format!("node {node}: {e}"));
        let response = self
            .http
            .get(format!("{}?port={port}", self.url))
            .bearer_auth(&self.token)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, PROTOCOL)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = response.text().await.unwrap_or_default();
            let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err((code, format!("node {node}: {}", body.trim())));
        }
        response.upgrade().await.map_err(|e| unreachable(&e))
    }
}
