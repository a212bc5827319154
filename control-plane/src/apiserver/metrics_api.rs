//! The resource metrics API, `metrics.k8s.io/v1beta1`, as Kubernetes' metrics-server serves
//! it, which is what `kubectl top` reads:
//!
//! - `GET /apis/metrics.k8s.io/v1beta1/nodes[/NAME]`: NodeMetrics;
//! - `GET /apis/metrics.k8s.io/v1beta1/pods`, `.../namespaces/NS/pods[/NAME]`: PodMetrics.
//!
//! Nothing is stored: each request lists the Nodes or Pods asked for (lists take
//! `labelSelector` and `fieldSelector`, matched against those objects as metrics-server
//! does) and asks their nodes' own APIs for `/stats/summary` (the node crate's `stats`),
//! all at once, each within [`NODE_TIMEOUT`]. A node that does not answer in time is left
//! out, as metrics-server leaves out what it could not scrape; a pod or node asked for by
//! name that has no metrics is 404. Each node reports CPU as the average over its sampling
//! period (10 s by default; for a container younger than that, since it started), shown
//! here in nanocores in the canonical quantity form (`1234n`, `12m`), and memory as the
//! bytes of its guests' linear memories and tables (`1536Ki`). A node's usage is its pods'.
//!
//! Requests are authorized as the resources `nodes` and `pods` of the group
//! `metrics.k8s.io` with the verbs `get` and `list` (see [`super::authz`]), which the
//! built-in `view` and `edit` roles grant (see [`super::rbac`]).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_api::StatusDetails;
use skiff_api::quantity::Quantity;

use super::ApiServer;
use super::discovery;
use super::error::{ApiError, ApiResult};
use super::logs::node_api_endpoint;
use super::object;
use super::request::Params;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// Its one version.
pub const VERSION: &str = "v1beta1";
/// What discovery lists of it.
pub const GROUP_VERSIONS: [(&str, &str); 1] = [(GROUP, VERSION)];
/// Its resources: (plural, kind, namespaced).
pub const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

/// How long a node has to answer before it is left out.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// A path of the metrics API.
#[derive(Debug, PartialEq, Eq)]
pub enum MetricsPath {
    /// `/apis/metrics.k8s.io/v1beta1`: its discovery document.
    Resources,
    /// `nodes`, `nodes/NAME`.
    Nodes { name: Option<String> },
    /// `pods` (all namespaces), `namespaces/NS/pods`, `namespaces/NS/pods/NAME`.
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
}

impl MetricsPath {
    /// The resource it is about, for authorization; `None` for discovery.
    pub fn resource(&self) -> Option<&'static str> {
        match self {
            MetricsPath::Resources => None,
            MetricsPath::Nodes { .. } => Some("nodes"),
            MetricsPath::Pods { .. } => Some("pods"),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            MetricsPath::Pods { namespace, .. } => namespace.as_deref(),
            _ => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            MetricsPath::Nodes { name } | MetricsPath::Pods { name, .. } => name.as_deref(),
            MetricsPath::Resources => None,
        }
    }
}

/// The metrics API's path in `rest` (the path after `/apis`), if it is one.
pub fn parse(core: bool, rest: &str) -> Option<ApiResult<MetricsPath>> {
    if core {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let [group, version, tail @ ..] = segments.as_slice() else {
        return None;
    };
    if *group != GROUP || *version != VERSION {
        return None;
    }
    let owned = |s: &str| Some(s.to_string());
    let path = match *tail {
        [] => MetricsPath::Resources,
        ["nodes"] => MetricsPath::Nodes { name: None },
        ["nodes", name] => MetricsPath::Nodes { name: owned(name) },
        ["pods"] => MetricsPath::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", namespace, "pods"] => MetricsPath::Pods {
            namespace: owned(namespace),
            name: None,
        },
        ["namespaces", namespace, "pods", name] => MetricsPath::Pods {
            namespace: owned(namespace),
            name: owned(name),
        },
        _ => return Some(Err(ApiError::path_not_found(&format!("/apis{rest}")))),
    };
    for segment in [path.namespace(), path.name()].into_iter().flatten() {
        if segment.len() > 253 || segment == "." || segment == ".." || segment.contains('%') {
            return Some(Err(ApiError::bad_request(format!(
                "invalid name in path: {segment:?}"
            ))));
        }
    }
    Some(Ok(path))
}

/// Answers a request on the metrics API.
pub async fn serve(server: &ApiServer, path: MetricsPath, parts: &Parts) -> ApiResult<Response> {
    if parts.method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on the metrics API: its objects are read-only",
            parts.method
        )));
    }
    let params = Params::parse(parts.uri.query())?;
    if params.is_watch() {
        return Err(ApiError::method_not_allowed(
            "watch is not supported on the metrics API",
        ));
    }
    // Only the selectors apply to the objects behind the metrics.
    let selectors = Params {
        label_selector: params.label_selector.clone(),
        field_selector: params.field_selector.clone(),
        ..Params::default()
    };
    let answer = match path {
        MetricsPath::Resources => discovery::resources(&server.registry, GROUP, VERSION),
        MetricsPath::Nodes { name: Some(name) } => node_metrics(server, &name).await?,
        MetricsPath::Nodes { name: None } => node_metrics_list(server, &selectors).await?,
        MetricsPath::Pods {
            namespace: Some(namespace),
            name: Some(name),
        } => pod_metrics(server, &namespace, &name).await?,
        MetricsPath::Pods { namespace, name: _ } => {
            pod_metrics_list(server, namespace.as_deref(), &selectors).await?
        }
    };
    Ok(axum::Json(answer).into_response())
}

async fn node_metrics(server: &ApiServer, name: &str) -> ApiResult<Value> {
    let node = match server.get_object(nodes_type(server), None, name).await {
        Ok((_, node)) => node,
        Err(error) if error.code == StatusCode::NOT_FOUND => {
            return Err(not_found("nodemetrics", name));
        }
        Err(error) => return Err(error),
    };
    let summary = node_summaries(server, std::slice::from_ref(&node))
        .await?
        .remove(name)
        .ok_or_else(|| not_found("nodemetrics", name))?;
    Ok(node_item(&node, &summary, now()))
}

async fn node_metrics_list(server: &ApiServer, selectors: &Params) -> ApiResult<Value> {
    let nodes = server
        .list_objects(nodes_type(server), None, selectors)
        .await?;
    let nodes = items(&nodes);
    let summaries = node_summaries(server, &nodes).await?;
    let created = now();
    let items: Vec<Value> = nodes
        .iter()
        .filter_map(|node| {
            let summary = summaries.get(object::name_of(node))?;
            Some(node_item(node, summary, created.clone()))
        })
        .collect();
    Ok(list("NodeMetricsList", items))
}

async fn pod_metrics(server: &ApiServer, namespace: &str, name: &str) -> ApiResult<Value> {
    let missing = || not_found("podmetrics", &format!("{namespace}/{name}"));
    let pod = match server
        .get_object(pods_type(server), Some(namespace), name)
        .await
    {
        Ok((_, pod)) => pod,
        Err(error) if error.code == StatusCode::NOT_FOUND => return Err(missing()),
        Err(error) => return Err(error),
    };
    let metrics = pods_metrics(server, std::slice::from_ref(&pod)).await?;
    metrics.into_iter().next().ok_or_else(missing)
}

async fn pod_metrics_list(
    server: &ApiServer,
    namespace: Option<&str>,
    selectors: &Params,
) -> ApiResult<Value> {
    let pods = server
        .list_objects(pods_type(server), namespace, selectors)
        .await?;
    let items = pods_metrics(server, &items(&pods)).await?;
    Ok(list("PodMetricsList", items))
}

/// The PodMetrics of those of `pods` that run on a node that answered, in their order.
async fn pods_metrics(server: &ApiServer, pods: &[Value]) -> ApiResult<Vec<Value>> {
    let node_names: BTreeSet<&str> = pods.iter().filter_map(node_of).collect();
    let nodes_type = nodes_type(server);
    let nodes = futures::future::join_all(
        node_names
            .iter()
            .map(|name| server.get_object(nodes_type, None, name)),
    )
    .await;
    // A node gone from the API runs nothing any more.
    let nodes: Vec<Value> = nodes
        .into_iter()
        .filter_map(Result::ok)
        .map(|(_, node)| node)
        .collect();
    let summaries = node_summaries(server, &nodes).await?;
    let created = now();
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let summary = summaries.get(node_of(pod)?)?;
            let uid = object::meta_str(pod, "uid")?;
            let stats = summary.pods.iter().find(|p| p.pod_ref.uid == uid)?;
            (!stats.containers.is_empty()).then(|| pod_item(pod, stats, created.clone()))
        })
        .collect())
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn nodes_type(server: &ApiServer) -> &super::registry::ResourceType {
    server
        .registry
        .find("", "v1", "nodes")
        .expect("nodes are built in")
}

fn pods_type(server: &ApiServer) -> &super::registry::ResourceType {
    server
        .registry
        .find("", "v1", "pods")
        .expect("pods are built in")
}

/// Each of `nodes`' summaries by node name, asked of them all at once; a node that cannot
/// be reached, fails or does not answer within [`NODE_TIMEOUT`] is left out.
async fn node_summaries(
    server: &ApiServer,
    nodes: &[Value],
) -> ApiResult<HashMap<String, Summary>> {
    let Some(key) = server.config.node_key.as_ref() else {
        return Err(ApiError {
            code: StatusCode::SERVICE_UNAVAILABLE,
            reason: "ServiceUnavailable",
            message: "this API server has no credential for node APIs: metrics are unavailable"
                .into(),
            details: None,
        });
    };
    let asked = nodes.iter().map(|node| async move {
        let name = object::name_of(node);
        let Some(address) = node_api_endpoint(node) else {
            tracing::debug!(node = name, "the node publishes no API address: no metrics");
            return None;
        };
        let url = server.node_url(&address, "/stats/summary");
        let request = async {
            server
                .http
                .get(&url)
                .bearer_auth(key.api_token(name))
                .send()
                .await?
                .error_for_status()?
                .json::<Summary>()
                .await
        };
        match tokio::time::timeout(NODE_TIMEOUT, request).await {
            Ok(Ok(summary)) => Some((name.to_string(), summary)),
            Ok(Err(error)) => {
                tracing::warn!(node = name, %error, "reading the node's usage failed: it is left out of the metrics");
                None
            }
            Err(_) => {
                tracing::warn!(node = name, timeout = ?NODE_TIMEOUT, "the node did not give its usage in time: it is left out of the metrics");
                None
            }
        }
    });
    Ok(futures::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect())
}

fn node_item(node: &Value, summary: &Summary, created: String) -> Value {
    let stats = &summary.node;
    json!({
        "kind": "NodeMetrics",
        "apiVersion": api_version(),
        "metadata": {
            "name": object::name_of(node),
            "labels": node.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "creationTimestamp": created,
        },
        "timestamp": stats.cpu.time,
        "window": go_duration(Duration::from_nanos(stats.cpu.window_nano_seconds)),
        "usage": usage(&stats.cpu, &stats.memory),
    })
}

fn pod_item(pod: &Value, stats: &PodStats, created: String) -> Value {
    let containers: Vec<Value> = stats
        .containers
        .iter()
        .map(|c| json!({ "name": c.name, "usage": usage(&c.cpu, &c.memory) }))
        .collect();
    json!({
        "kind": "PodMetrics",
        "apiVersion": api_version(),
        "metadata": {
            "name": object::name_of(pod),
            "namespace": object::meta_str(pod, "namespace"),
            "labels": pod.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "creationTimestamp": created,
        },
        "timestamp": stats.cpu.time,
        "window": go_duration(Duration::from_nanos(stats.cpu.window_nano_seconds)),
        "containers": containers,
    })
}

fn usage(cpu: &CpuStats, memory: &MemoryStats) -> Value {
    let bytes = i64::try_from(memory.working_set_bytes).unwrap_or(i64::MAX);
    json!({
        "cpu": cpu_quantity(cpu.usage_nano_cores),
        "memory": Quantity::from_bytes(bytes).as_str(),
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({ "kind": kind, "apiVersion": api_version(), "metadata": {}, "items": items })
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// metrics-server's 404: `podmetrics.metrics.k8s.io "NS/NAME" not found`,
/// `nodemetrics.metrics.k8s.io "NAME" not found`.
fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        reason: "NotFound",
        message: format!("{kind}.{GROUP} {name:?} not found"),
        details: Some(Box::new(StatusDetails {
            name: Some(name.to_string()),
            group: Some(GROUP.to_string()),
            kind: Some(kind.to_string()),
            ..StatusDetails::default()
        })),
    }
}

/// CPU in the canonical form of a quantity of nanocores: the largest of the suffixes
/// `n`, `u`, `m` and none that keeps it whole (`1234n`, `5u`, `12m`, `2`).
pub fn cpu_quantity(nano_cores: u64) -> String {
    const SUFFIXES: [&str; 4] = ["n", "u", "m", ""];
    if nano_cores == 0 {
        return "0".into();
    }
    let (mut value, mut power) = (nano_cores, 0);
    while power + 1 < SUFFIXES.len() && value.is_multiple_of(1000) {
        value /= 1000;
        power += 1;
    }
    format!("{value}{}", SUFFIXES[power])
}

/// A duration as Go's `time.Duration` prints it (what `metav1.Duration` holds), to the
/// millisecond: `500ms`, `10.25s`, `1m0.5s`, `1h2m3s`.
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return if millis == 0 {
            "0s".into()
        } else {
            format!("{millis}ms")
        };
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, fraction) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let fraction = format!("{fraction:03}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// What a node's `/stats/summary` says, as far as the metrics need it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    node: NodeStats,
    #[serde(default)]
    pods: Vec<PodStats>,
}

#[derive(Debug, Deserialize)]
struct NodeStats {
    cpu: CpuStats,
    memory: MemoryStats,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStats {
    pod_ref: PodReference,
    cpu: CpuStats,
    #[serde(default)]
    containers: Vec<ContainerStats>,
}

#[derive(Debug, Deserialize)]
struct PodReference {
    uid: String,
}

#[derive(Debug, Deserialize)]
struct ContainerStats {
    name: String,
    cpu: CpuStats,
    memory: MemoryStats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuStats {
    time: String,
    #[serde(default)]
    window_nano_seconds: u64,
    #[serde(default)]
    usage_nano_cores: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemoryStats {
    #[serde(default)]
    working_set_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_written_in_nanocores_in_canonical_form() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(1234), "1234n");
        assert_eq!(cpu_quantity(5_000), "5u");
        assert_eq!(cpu_quantity(12_000_000), "12m");
        assert_eq!(cpu_quantity(1_500_000_000), "1500m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(987_654_321), "987654321n");
        // What kubectl reads back is the same amount.
        for nanos in [1234u64, 12_000_000, 1_500_000_000] {
            assert_eq!(
                Quantity::new(cpu_quantity(nanos)).parse(),
                Ok(i128::from(nanos))
            );
        }
    }

    #[test]
    fn memory_is_written_in_bytes_in_canonical_form() {
        let memory = |bytes| {
            usage(
                &CpuStats::default(),
                &MemoryStats {
                    working_set_bytes: bytes,
                },
            )["memory"]
                .clone()
        };
        assert_eq!(memory(0), "0");
        assert_eq!(memory(1_114_112), "1088Ki");
        assert_eq!(memory(64 << 20), "64Mi");
        assert_eq!(memory(1_114_120), "1114120");
    }

    #[test]
    fn windows_are_written_as_go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(10_250)), "10.25s");
        assert_eq!(go_duration(Duration::from_nanos(10_012_345_678)), "10.012s");
        assert_eq!(go_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn only_the_metrics_paths_are_its() {
        let parse_ok = |rest: &str| parse(false, rest).map(|p| p.map_err(|e| e.code));
        assert_eq!(
            parse_ok("/metrics.k8s.io/v1beta1"),
            Some(Ok(MetricsPath::Resources))
        );
        assert_eq!(
            parse_ok("/metrics.k8s.io/v1beta1/nodes/node-0"),
            Some(Ok(MetricsPath::Nodes {
                name: Some("node-0".into())
            }))
        );
        assert_eq!(
            parse_ok("/metrics.k8s.io/v1beta1/namespaces/default/pods"),
            Some(Ok(MetricsPath::Pods {
                namespace: Some("default".into()),
                name: None
            }))
        );
        assert_eq!(
            parse_ok("/metrics.k8s.io/v1beta1/pods/web"),
            Some(Err(StatusCode::NOT_FOUND)),
            "a pod is named within its namespace"
        );
        assert_eq!(parse_ok("/metrics.k8s.io"), None, "the group: discovery's");
        assert_eq!(parse_ok("/metrics.k8s.io/v1"), None);
        assert_eq!(parse_ok("/apps/v1/deployments"), None);
        assert_eq!(parse(true, "/v1/pods").map(|_| ()), None);
    }
}
