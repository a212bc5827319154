//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`) and `/version`,
//! in the shapes kubectl and the client libraries read.

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::metrics_api;
use super::registry::{Registry, ResourceType};
use super::reviews::{self, Review};

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let group_version = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{ "groupVersion": group_version, "version": version }],
        "preferredVersion": { "groupVersion": group_version, "version": version },
    })
}

/// Every named group and its version: the registry's kinds', then the access reviews',
/// then the metrics API's.
fn named_group_versions(registry: &Registry) -> Vec<(&'static str, &'static str)> {
    registry
        .group_versions()
        .into_iter()
        .chain(reviews::GROUP_VERSIONS)
        .chain(metrics_api::GROUP_VERSIONS)
        .filter(|(group, _)| !group.is_empty())
        .collect()
}

/// `/apis`: the named groups.
pub fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = named_group_versions(registry)
        .into_iter()
        .map(|(group, version)| group_entry(group, version))
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/apis/GROUP`: one group.
pub fn group(registry: &Registry, group: &str) -> ApiResult<Value> {
    let (group, version) = named_group_versions(registry)
        .into_iter()
        .find(|(g, _)| *g == group)
        .ok_or_else(|| ApiError::path_not_found(&format!("/apis/{group}")))?;
    let mut entry = group_entry(group, version);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(entry)
}

/// The categories a kind is in: `all` (what `kubectl get all` lists) for the workload
/// kinds Kubernetes puts there, of those skiff serves.
fn categories(rt: &ResourceType) -> &'static [&'static str] {
    match (rt.group, rt.plural) {
        ("", "pods" | "services") | ("apps", "deployments" | "replicasets") | ("batch", "jobs") => {
            &["all"]
        }
        _ => &[],
    }
}

/// `/api/v1`, `/apis/GROUP/VERSION`: the resources and subresources served there.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for rt in registry
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        verbs.sort_unstable();
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs,
            "shortNames": rt.short_names,
            "categories": categories(rt),
        }));
        let mut sub = |name: &str,
                       kind: &str,
                       group: Option<&str>,
                       version: Option<&str>,
                       verbs: &[&str]| {
            let mut entry = json!({ "name": format!("{}/{name}", rt.plural), "singularName": "", "namespaced": rt.namespaced, "kind": kind, "verbs": verbs });
            if let (Some(group), Some(version)) = (group, version) {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            resources.push(entry);
        };
        if rt.has_status {
            sub("status", rt.kind, None, None, &["get", "patch", "update"]);
        }
        if rt.scalable {
            sub(
                "scale",
                "Scale",
                Some("autoscaling"),
                Some("v1"),
                &["get", "patch", "update"],
            );
        }
        if rt.kind == "Pod" {
            sub("binding", "Binding", None, None, &["create"]);
            sub("log", "Pod", None, None, &["get"]);
        }
        if rt.kind == "Namespace" {
            sub("finalize", "Namespace", None, None, &["update"]);
        }
    }
    // The access reviews: created (asked), never stored, so no other verb.
    for review in Review::ALL
        .into_iter()
        .filter(|r| r.group() == group && reviews::VERSION == version)
    {
        resources.push(json!({
            "name": review.plural(),
            "singularName": review.kind().to_lowercase(),
            "namespaced": false,
            "kind": review.kind(),
            "verbs": ["create"],
        }));
    }
    // The metrics: read, never written, and not watched (metrics-server's verbs).
    if (group, version) == (metrics_api::GROUP, metrics_api::VERSION) {
        for (plural, kind, namespaced) in metrics_api::RESOURCES {
            resources.push(json!({
                "name": plural,
                "singularName": "",
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["get", "list"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}

/// `/version`: the Kubernetes API level skiff speaks, and skiff's own version.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "31",
        "gitVersion": concat!("v1.31.0+skiff-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}
