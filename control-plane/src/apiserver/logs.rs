//! `GET pods/NAME/log`: read from the node the pod runs on, through that node's own
//! API, and streamed back. The API server is the only caller the node API answers (it
//! holds the node API token); users reach logs only through here, authenticated.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::Value;

use super::ApiServer;
use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;
use super::request::Params;

/// Query parameters of `pods/NAME/log`, as kubectl sends them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    pub container: Option<String>,
    pub follow: Option<String>,
    pub previous: Option<String>,
    pub tail_lines: Option<String>,
    pub timestamps: Option<String>,
    pub since_seconds: Option<String>,
}

impl LogParams {
    pub fn parse(raw: Option<&str>) -> ApiResult<LogParams> {
        serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

fn flag(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

pub async fn pod_log(
    server: &ApiServer,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    params: LogParams,
) -> ApiResult<Response> {
    let (_, pod) = server.get_object(rt, namespace, name).await?;
    let containers: Vec<&str> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c["name"].as_str())
        .collect();
    let app_containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let container = match params.container.as_deref().filter(|c| !c.is_empty()) {
        Some(container) if containers.contains(&container) => container.to_string(),
        Some(container) => {
            return Err(ApiError::bad_request(format!(
                "container {container} is not valid for pod {name}"
            )));
        }
        None if app_containers == 1 => containers[0].to_string(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let (address, node_name) = node_api_address(server, &pod, name).await?;
    let Some(token) = server
        .config
        .node_key
        .as_ref()
        .map(|key| key.api_token(&node_name))
    else {
        return Err(ApiError::forbidden(
            "this API server has no credential for node APIs: logs are unavailable",
        ));
    };
    let mut query = vec![
        ("follow", flag(&params.follow).to_string()),
        ("previous", flag(&params.previous).to_string()),
        ("timestamps", flag(&params.timestamps).to_string()),
    ];
    if let Some(n) = Params::number("tailLines", &params.tail_lines)? {
        query.push(("tailLines", n.to_string()));
    }
    if let Some(n) = Params::number("sinceSeconds", &params.since_seconds)? {
        query.push(("sinceSeconds", n.to_string()));
    }
    let namespace = namespace.unwrap_or("default");
    let url = server.node_url(
        &address,
        &format!("/containerLogs/{namespace}/{name}/{container}"),
    );
    let response = server
        .http
        .get(&url)
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| ApiError::internal(&format!("reaching node {node_name} for logs"), e))?;
    let status = response.status();
    if !status.is_success() {
        let message = response.text().await.unwrap_or_default();
        return Err(
            ApiError::bad_request(format!("node {node_name}: {}", message.trim())).with_code(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST),
            ),
        );
    }
    let body = Body::from_stream(response.bytes_stream().map_err(std::io::Error::other));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

impl ApiServer {
    /// The URL of `path` on the node API at `address`: https when nodes have certificates.
    pub(crate) fn node_url(&self, address: &str, path: &str) -> String {
        let scheme = if self.config.node_client_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{address}{path}")
    }
}

/// `ADDRESS:PORT` of the API of the node `pod` runs on, and the node's name.
pub(crate) async fn node_api_address(
    server: &ApiServer,
    pod: &Value,
    name: &str,
) -> ApiResult<(String, String)> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} is not scheduled to a node yet"))
        })?;
    let nodes = server
        .registry
        .find("", "v1", "nodes")
        .expect("nodes are built in");
    let (_, node) = server.get_object(nodes, None, node_name).await?;
    let Some(address) = node_api_endpoint(&node) else {
        return Err(ApiError::bad_request(format!(
            "node {node_name} publishes no address for its API"
        )));
    };
    Ok((address, node_name.to_string()))
}

/// `ADDRESS:PORT` of the API of the Node `node`: its InternalIP and the port in its
/// `status.daemonEndpoints`; `None` if it publishes either not.
pub(crate) fn node_api_endpoint(node: &Value) -> Option<String> {
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)?;
    Some(format!("{address}:{port}"))
}
