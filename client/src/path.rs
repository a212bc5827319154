//! Building the API paths and query strings of Kubernetes kinds.

/// The path of a kind's collection, one of its objects, or a subresource, as the
/// Kubernetes API lays them out:
///
/// - core group: `/api/v1/...`; others: `/apis/{group}/{version}/...`;
/// - namespaced: `.../namespaces/{ns}/{plural}[/{name}[/{subresource}]]`;
/// - cluster-scoped, or all namespaces: `.../{plural}[/{name}[/{subresource}]]`.
///
/// Used by [`Api`](crate::Api) for typed kinds, and by the CLI for kinds it knows only
/// from discovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath<'a> {
    /// `""` for the core group.
    pub group: &'a str,
    pub version: &'a str,
    pub plural: &'a str,
    /// `None` for cluster-scoped kinds and for lists across all namespaces.
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// `status`, `scale`, `binding`, `log`; only with a name.
    pub subresource: Option<&'a str>,
}

impl ResourcePath<'_> {
    /// The path, each segment percent-encoded.
    pub fn build(&self) -> String {
        let mut path = if self.group.is_empty() {
            format!("/api/{}", encode_segment(self.version))
        } else {
            format!(
                "/apis/{}/{}",
                encode_segment(self.group),
                encode_segment(self.version)
            )
        };
        if let Some(ns) = self.namespace {
            path.push_str("/namespaces/");
            path.push_str(&encode_segment(ns));
        }
        path.push('/');
        path.push_str(&encode_segment(self.plural));
        if let Some(name) = self.name {
            path.push('/');
            path.push_str(&encode_segment(name));
            if let Some(sub) = self.subresource {
                path.push('/');
                path.push_str(&encode_segment(sub));
            }
        }
        path
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query string built pair by pair, `application/x-www-form-urlencoded` as the
/// Kubernetes server decodes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// An empty query.
    pub fn new() -> Query {
        Query::default()
    }

    /// Adds `key=value`.
    pub fn push(&mut self, key: &str, value: impl AsRef<str>) -> &mut Query {
        self.pairs
            .push((key.to_string(), value.as_ref().to_string()));
        self
    }

    /// Adds `key=value` when `value` is given and not empty.
    pub fn push_opt(&mut self, key: &str, value: Option<impl AsRef<str>>) -> &mut Query {
        if let Some(value) = value.filter(|v| !v.as_ref().is_empty()) {
            self.push(key, value);
        }
        self
    }

    /// `path` with this query appended (`path?a=b`), or `path` alone when empty.
    pub fn to_path(&self, path: &str) -> String {
        if self.pairs.is_empty() {
            return path.to_string();
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.pairs)
            .finish();
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path<'a>(
        group: &'a str,
        plural: &'a str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        subresource: Option<&'a str>,
    ) -> String {
        ResourcePath {
            group,
            version: "v1",
            plural,
            namespace,
            name,
            subresource,
        }
        .build()
    }

    #[test]
    fn core_group_paths_start_with_api_v1() {
        assert_eq!(
            path("", "pods", Some("default"), None, None),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(
            path("", "pods", Some("default"), Some("web-1"), None),
            "/api/v1/namespaces/default/pods/web-1"
        );
        assert_eq!(path("", "pods", None, None, None), "/api/v1/pods");
    }

    #[test]
    fn grouped_kinds_live_under_apis() {
        assert_eq!(
            path("apps", "deployments", Some("prod"), Some("web"), None),
            "/apis/apps/v1/namespaces/prod/deployments/web"
        );
        assert_eq!(
            path(
                "coordination.k8s.io",
                "leases",
                Some("kube-node-lease"),
                Some("n1"),
                None
            ),
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"
        );
    }

    #[test]
    fn cluster_scoped_kinds_have_no_namespace_segment() {
        assert_eq!(
            path("", "nodes", None, Some("node-a"), None),
            "/api/v1/nodes/node-a"
        );
        assert_eq!(
            path("", "namespaces", None, Some("prod"), Some("status")),
            "/api/v1/namespaces/prod/status"
        );
    }

    #[test]
    fn subresources_follow_the_name() {
        assert_eq!(
            path("", "pods", Some("default"), Some("web-1"), Some("binding")),
            "/api/v1/namespaces/default/pods/web-1/binding"
        );
        assert_eq!(
            path(
                "apps",
                "replicasets",
                Some("default"),
                Some("rs"),
                Some("scale")
            ),
            "/apis/apps/v1/namespaces/default/replicasets/rs/scale"
        );
        // A subresource without a name means nothing and is left out.
        assert_eq!(
            path("", "pods", Some("default"), None, Some("status")),
            "/api/v1/namespaces/default/pods"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(
            path("", "pods", Some("a b"), Some("x/y?z"), None),
            "/api/v1/namespaces/a%20b/pods/x%2Fy%3Fz"
        );
        assert_eq!(encode_segment("web-1.example_x~"), "web-1.example_x~");
    }

    #[test]
    fn query_values_are_form_encoded() {
        let mut query = Query::new();
        query
            .push("labelSelector", "app in (web,api),tier!=db")
            .push_opt("fieldSelector", Some("spec.nodeName=n 1"))
            .push_opt("continue", None::<&str>)
            .push_opt("resourceVersion", Some(""))
            .push("limit", "50");
        assert_eq!(
            query.to_path("/api/v1/pods"),
            "/api/v1/pods?labelSelector=app+in+%28web%2Capi%29%2Ctier%21%3Ddb&fieldSelector=spec.nodeName%3Dn+1&limit=50"
        );
        assert_eq!(Query::new().to_path("/api/v1/pods"), "/api/v1/pods");
    }

    #[test]
    fn encoded_query_decodes_to_the_original_values() {
        let selector = "env=prod,app in (a, b),!legacy,x+y=%z&w";
        let built = Query::new().push("labelSelector", selector).to_path("/p");
        let query = built.split_once('?').expect("has a query").1;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            vec![("labelSelector".to_string(), selector.to_string())]
        );
    }
}
