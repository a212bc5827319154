//! Which kind a user means: `po`, `pods`, `Pod`, `deploy`, `deployments.apps` — resolved
//! through the server's discovery documents, as kubectl does.

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::api::Api;

/// One kind the server serves.
#[derive(Clone, Debug)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL path of the collection (`name` None) or of one object.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = if self.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(namespace) = namespace.filter(|_| self.namespaced) {
            path.push_str(&format!("/namespaces/{namespace}"));
        }
        path.push('/');
        path.push_str(&self.plural);
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// `pod`, `deployment.apps`: how kubectl names objects in its messages.
    pub fn display(&self) -> String {
        if self.group.is_empty() {
            self.singular.clone()
        } else {
            format!("{}.{}", self.singular, self.group)
        }
    }
}

/// Every kind the server serves.
pub struct Kinds(pub Vec<Kind>);

impl Kinds {
    /// Reads discovery from the server.
    pub async fn discover(api: &Api) -> Result<Kinds> {
        let mut group_versions = vec![String::from("v1")];
        let groups = api.get("/apis").await.context("reading API discovery")?;
        for group in groups["groups"].as_array().into_iter().flatten() {
            if let Some(gv) = group
                .pointer("/preferredVersion/groupVersion")
                .and_then(Value::as_str)
            {
                group_versions.push(gv.to_string());
            }
        }
        let mut kinds = Vec::new();
        for gv in group_versions {
            let path = if gv == "v1" {
                "/api/v1".to_string()
            } else {
                format!("/apis/{gv}")
            };
            let list = api
                .get(&path)
                .await
                .with_context(|| format!("reading discovery of {gv}"))?;
            let (group, version) = gv
                .split_once('/')
                .map(|(g, v)| (g.to_string(), v.to_string()))
                .unwrap_or((String::new(), gv.clone()));
            for r in list["resources"].as_array().into_iter().flatten() {
                let plural = r["name"].as_str().unwrap_or_default();
                if plural.contains('/') {
                    continue;
                }
                let kind = r["kind"].as_str().unwrap_or_default().to_string();
                kinds.push(Kind {
                    group: group.clone(),
                    version: version.clone(),
                    singular: r["singularName"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| kind.to_lowercase()),
                    kind,
                    plural: plural.to_string(),
                    short_names: r["shortNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                });
            }
        }
        Ok(Kinds(kinds))
    }

    /// The kind a user typed: a plural, singular, short name or kind, optionally `.group`.
    pub fn resolve(&self, name: &str) -> Result<&Kind> {
        let lower = name.to_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((base, group)) => (base.to_string(), Some(group.to_string())),
            None => (lower.clone(), None),
        };
        let found = self.0.iter().find(|k| {
            group.as_ref().is_none_or(|g| *g == k.group)
                && (k.plural == base
                    || k.singular == base
                    || k.kind.to_lowercase() == base
                    || k.short_names.contains(&base))
        });
        match found {
            Some(kind) => Ok(kind),
            None => bail!(
                "the server doesn't have a resource type {name:?} (known: {})",
                self.names()
            ),
        }
    }

    /// The kind of a manifest's `apiVersion` and `kind`.
    pub fn for_manifest(&self, api_version: &str, kind: &str) -> Result<&Kind> {
        self.0
            .iter()
            .find(|k| k.api_version() == api_version && k.kind == kind)
            .with_context(|| {
                format!("no kind {kind:?} in version {api_version:?} is served by this server")
            })
    }

    fn names(&self) -> String {
        self.0
            .iter()
            .map(|k| k.plural.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
