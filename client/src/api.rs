//! [`Api`]: the verbs on one kind, typed.

use std::marker::PhantomData;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_api::Resource;
use skiff_api::meta::{DeleteOptions, List, Preconditions, Scale, Status};

use crate::client::{Body, Client, Method};
use crate::error::{Error, Result};
use crate::path::{Query, ResourcePath};

/// The verbs of the Kubernetes API on one kind `K`, in one namespace, all namespaces,
/// or (for cluster-scoped kinds) the cluster.
///
/// Cheap to clone. Every failed call is an [`Error`]; the server's refusals are
/// [`Error::Api`] with its `Status`.
pub struct Api<K> {
    client: Client,
    /// `None`: all namespaces, or a cluster-scoped kind.
    namespace: Option<String>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Api<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Options of a list call. All empty by default: every object, read at the latest
/// revision, in one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `app=web,tier!=db`: only objects whose labels match.
    pub label_selector: Option<String>,
    /// `metadata.name=x`, `spec.nodeName=n1`: only objects whose fields match.
    pub field_selector: Option<String>,
    /// At most this many objects; the answer's `metadata.continue` gets the next page.
    pub limit: Option<u32>,
    /// The `metadata.continue` of the previous page.
    pub continue_token: Option<String>,
    /// `None` or `""`: the latest revision. `"0"`: any revision the server has.
    pub resource_version: Option<String>,
}

impl ListParams {
    /// Only objects whose labels match `selector`.
    pub fn labels(selector: &str) -> Self {
        ListParams {
            label_selector: Some(selector.into()),
            ..Self::default()
        }
    }

    /// Only objects whose fields match `selector`.
    pub fn fields(selector: &str) -> Self {
        ListParams {
            field_selector: Some(selector.into()),
            ..Self::default()
        }
    }

    fn query(&self) -> Query {
        let mut query = Query::new();
        query
            .push_opt("labelSelector", self.label_selector.as_deref())
            .push_opt("fieldSelector", self.field_selector.as_deref())
            .push_opt("limit", self.limit.map(|l| l.to_string()))
            .push_opt("continue", self.continue_token.as_deref())
            .push_opt("resourceVersion", self.resource_version.as_deref());
        query
    }
}

/// Options of a watch call. By default: every object, the server's own timeout, no
/// bookmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchParams {
    /// Only objects whose labels match.
    pub label_selector: Option<String>,
    /// Only objects whose fields match.
    pub field_selector: Option<String>,
    /// The server ends the watch after this long (the client then resumes). The
    /// request itself is cut a little later, in case the server never ends it.
    pub timeout_seconds: Option<u32>,
    /// Ask for `BOOKMARK` events: the server tells the current resourceVersion now and
    /// then, so a quiet watch resumes from a recent one.
    pub allow_bookmarks: bool,
}

impl WatchParams {
    fn query(&self, resource_version: &str) -> Query {
        let mut query = Query::new();
        query
            .push("watch", "1")
            .push_opt("resourceVersion", Some(resource_version))
            .push_opt("labelSelector", self.label_selector.as_deref())
            .push_opt("fieldSelector", self.field_selector.as_deref())
            .push_opt(
                "timeoutSeconds",
                self.timeout_seconds.map(|t| t.to_string()),
            );
        if self.allow_bookmarks {
            query.push("allowWatchBookmarks", "true");
        }
        query
    }
}

/// Options of a delete call (sent as the `DeleteOptions` body).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteParams {
    /// `0` deletes at once; `None` takes the kind's default (a bound pod gets time to
    /// stop).
    pub grace_period_seconds: Option<i64>,
    /// How dependents go: `Background` (the server's default), `Foreground`, `Orphan`.
    pub propagation_policy: Option<PropagationPolicy>,
    /// Delete only if the object still has this uid / resourceVersion (else 409).
    pub preconditions: Option<Preconditions>,
}

/// What happens to the objects a deleted object owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// The owner goes now; the garbage collector deletes dependents afterwards.
    Background,
    /// The owner waits (with a `foregroundDeletion` finalizer) until dependents are gone.
    Foreground,
    /// Dependents stay, their owner references removed.
    Orphan,
}

impl PropagationPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
            PropagationPolicy::Orphan => "Orphan",
        }
    }
}

impl DeleteParams {
    /// Delete at once, whatever the kind's grace period.
    pub fn immediate() -> Self {
        DeleteParams {
            grace_period_seconds: Some(0),
            ..Self::default()
        }
    }

    fn options(&self) -> DeleteOptions {
        DeleteOptions {
            api_version: Some("v1".into()),
            kind: Some("DeleteOptions".into()),
            grace_period_seconds: self.grace_period_seconds,
            propagation_policy: self.propagation_policy.map(|p| p.as_str().to_string()),
            preconditions: self.preconditions.clone(),
        }
    }
}

/// A patch and its kind, which picks the request's content type.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// RFC 7386 JSON merge patch (`application/merge-patch+json`): objects merge, a
    /// `null` removes a field, arrays are replaced whole.
    Merge(Value),
    /// RFC 6902 JSON patch (`application/json-patch+json`): a list of operations.
    Json(Value),
}

impl Patch {
    /// The request's content type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    /// The patch document.
    pub fn value(&self) -> &Value {
        match self {
            Patch::Merge(v) | Patch::Json(v) => v,
        }
    }
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteOutcome<K> {
    /// The object is still there, marked with `metadata.deletionTimestamp`: finalizers
    /// or a grace period hold it; it goes when they are done.
    Deleting(K),
    /// The object is gone. Carries its last state when the server answered it, `None`
    /// when the server answered a `Status`.
    Deleted(Option<K>),
}

impl<K> DeleteOutcome<K> {
    /// Whether the object is already gone.
    pub fn is_deleted(&self) -> bool {
        matches!(self, DeleteOutcome::Deleted(_))
    }
}

/// One event of a watch, decoded. An `ERROR` event is not an event but the stream's
/// `Err(Error::Api(status))`; 410 (see [`Error::is_gone`]) means the resourceVersion
/// is too old and the caller must list again.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    /// An object was created, or began to match the selectors.
    Added(K),
    /// An object changed.
    Modified(K),
    /// An object was deleted (its last state), or stopped matching the selectors.
    Deleted(K),
    /// Nothing to report, but the watch has seen everything up to `resource_version`.
    Bookmark {
        /// Resume a watch from here to miss nothing.
        resource_version: String,
    },
}

impl<K: Resource> WatchEvent<K> {
    /// The resourceVersion this event brings the watch to.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                o.meta().resource_version.as_deref()
            }
            WatchEvent::Bookmark { resource_version } => Some(resource_version),
        }
    }
}

/// How much longer than its `timeoutSeconds` a watch request may stay open before the
/// client cuts it: the server should have ended it by then.
const WATCH_SLACK: Duration = Duration::from_secs(30);

impl<K: Resource> Api<K> {
    /// The kind in namespace `namespace`. For a cluster-scoped kind the namespace is
    /// ignored.
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        let namespace = K::NAMESPACED.then(|| namespace.to_string());
        Api {
            client,
            namespace,
            _kind: PhantomData,
        }
    }

    /// The kind across all namespaces (lists and watches), or a cluster-scoped kind.
    /// A namespaced object is created in the namespace of its metadata; `get`,
    /// `replace`, `patch` and `delete` of a namespaced kind need [`Api::namespaced`].
    pub fn all(client: Client) -> Self {
        Api {
            client,
            namespace: None,
            _kind: PhantomData,
        }
    }

    /// The kind in the client's default namespace (the kubeconfig context's, or
    /// `default`).
    pub fn default_namespaced(client: Client) -> Self {
        let namespace = client.default_namespace().to_string();
        Self::namespaced(client, &namespace)
    }

    /// The client this `Api` sends through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace, or `None` for all namespaces and cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn path(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        subresource: Option<&str>,
    ) -> String {
        ResourcePath {
            group: K::GROUP,
            version: K::VERSION,
            plural: K::PLURAL,
            namespace,
            name,
            subresource,
        }
        .build()
    }

    /// The path of the collection: `/api/v1/namespaces/ns/pods`.
    pub fn collection_path(&self) -> String {
        self.path(self.namespace.as_deref(), None, None)
    }

    /// The path of one object: `/api/v1/namespaces/ns/pods/name`.
    pub fn object_path(&self, name: &str) -> String {
        self.path(self.namespace.as_deref(), Some(name), None)
    }

    /// The path of a subresource: `/api/v1/namespaces/ns/pods/name/status`.
    pub fn subresource_path(&self, name: &str, subresource: &str) -> String {
        self.path(self.namespace.as_deref(), Some(name), Some(subresource))
    }

    fn what(&self) -> String {
        K::KIND.to_string()
    }

    /// Reads one object.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.client
            .request(Method::GET, &self.object_path(name), None, &self.what())
            .await
    }

    /// Reads one object; `None` when there is none of that name.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match self.get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Lists objects (one page when `params.limit` is set).
    pub async fn list(&self, params: &ListParams) -> Result<List<K>> {
        let path = params.query().to_path(&self.collection_path());
        self.client
            .request(Method::GET, &path, None, &format!("{} list", K::KIND))
            .await
    }

    /// Creates an object; the answer is the object as stored (uid, resourceVersion,
    /// defaults). A name taken is [`Error::is_already_exists`].
    pub async fn create(&self, object: &K) -> Result<K> {
        let namespace = match (&self.namespace, K::NAMESPACED) {
            (Some(ns), _) => Some(ns.as_str()),
            (None, true) => object.meta().namespace.as_deref(),
            (None, false) => None,
        };
        let path = self.path(namespace, None, None);
        let body = Body::json(object, &self.what())?;
        self.client
            .request(Method::POST, &path, Some(body), &self.what())
            .await
    }

    /// Replaces an object (its spec and metadata; status through
    /// [`Api::replace_status`]). With `metadata.resourceVersion` set, fails with a
    /// conflict ([`Error::is_conflict`]) if the object changed since.
    pub async fn replace(&self, name: &str, object: &K) -> Result<K> {
        let body = Body::json(object, &self.what())?;
        self.client
            .request(
                Method::PUT,
                &self.object_path(name),
                Some(body),
                &self.what(),
            )
            .await
    }

    /// Replaces the `status` of an object (the `status` subresource).
    pub async fn replace_status(&self, name: &str, object: &K) -> Result<K> {
        let body = Body::json(object, &self.what())?;
        let path = self.subresource_path(name, "status");
        self.client
            .request(Method::PUT, &path, Some(body), &self.what())
            .await
    }

    /// Patches an object.
    pub async fn patch(&self, name: &str, patch: &Patch) -> Result<K> {
        let path = self.object_path(name);
        self.client
            .request(
                Method::PATCH,
                &path,
                Some(Body::patch(patch)?),
                &self.what(),
            )
            .await
    }

    /// Patches the `status` of an object.
    pub async fn patch_status(&self, name: &str, patch: &Patch) -> Result<K> {
        let path = self.subresource_path(name, "status");
        self.client
            .request(
                Method::PATCH,
                &path,
                Some(Body::patch(patch)?),
                &self.what(),
            )
            .await
    }

    /// Deletes an object: at once, or by marking it when finalizers or a grace period
    /// hold it. A missing object is [`Error::is_not_found`].
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<DeleteOutcome<K>> {
        let body = Body::json(&params.options(), "DeleteOptions")?;
        let answer: Value = self
            .client
            .request(
                Method::DELETE,
                &self.object_path(name),
                Some(body),
                &self.what(),
            )
            .await?;
        if answer.get("kind").and_then(Value::as_str) == Some("Status") {
            return Ok(DeleteOutcome::Deleted(None));
        }
        let object: K =
            serde_json::from_value(answer).map_err(|e| Error::decode(self.what(), e))?;
        Ok(if object.meta().deletion_timestamp.is_some() {
            DeleteOutcome::Deleting(object)
        } else {
            DeleteOutcome::Deleted(Some(object))
        })
    }

    /// Reads the `scale` subresource (Deployments, ReplicaSets).
    pub async fn get_scale(&self, name: &str) -> Result<Scale> {
        let path = self.subresource_path(name, "scale");
        self.client.request(Method::GET, &path, None, "Scale").await
    }

    /// Replaces the `scale` subresource: sets the wanted replicas.
    pub async fn replace_scale(&self, name: &str, scale: &Scale) -> Result<Scale> {
        let path = self.subresource_path(name, "scale");
        self.client
            .request(
                Method::PUT,
                &path,
                Some(Body::json(scale, "Scale")?),
                "Scale",
            )
            .await
    }

    /// POSTs `body` to a subresource (`pods/binding`) and returns the answer (often a
    /// `Status`).
    pub async fn create_subresource<B: Serialize>(
        &self,
        name: &str,
        subresource: &str,
        body: &B,
    ) -> Result<Value> {
        let path = self.subresource_path(name, subresource);
        self.client
            .request(
                Method::POST,
                &path,
                Some(Body::json(body, subresource)?),
                subresource,
            )
            .await
    }

    /// GETs a JSON subresource and decodes it as `T`.
    pub async fn get_subresource<T: DeserializeOwned>(
        &self,
        name: &str,
        subresource: &str,
    ) -> Result<T> {
        let path = self.subresource_path(name, subresource);
        self.client
            .request(Method::GET, &path, None, subresource)
            .await
    }

    /// Watches for changes after `resource_version` (`""` or `"0"`: the server first
    /// sends every current object as `Added`).
    ///
    /// The stream ends when the server ends the watch (its timeout) or the connection
    /// drops (then with an `Err`); resume from the last event's resourceVersion. A
    /// resourceVersion the server no longer keeps is an `Err` with
    /// [`Error::is_gone`], at once or as the stream's item. For a watch that resumes
    /// and relists by itself, use [`watcher`](crate::watcher::watcher).
    pub async fn watch(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>>>> {
        let path = params
            .query(resource_version)
            .to_path(&self.collection_path());
        let timeout = params
            .timeout_seconds
            .map(|t| Duration::from_secs(t.into()) + WATCH_SLACK);
        let lines = self.client.line_stream(&path, Method::GET, timeout).await?;
        Ok(lines
            .map(|line| line.and_then(|line| decode_event::<K>(&line)))
            .boxed())
    }
}

/// Decodes one line of a watch.
fn decode_event<K: Resource>(line: &[u8]) -> Result<WatchEvent<K>> {
    let event: skiff_api::meta::WatchEvent<Value> =
        serde_json::from_slice(line).map_err(|e| Error::decode("a watch event", e))?;
    let object = |value: Value| -> Result<K> {
        serde_json::from_value(value)
            .map_err(|e| Error::decode(format!("the {} of a watch event", K::KIND), e))
    };
    Ok(match event.type_.as_str() {
        "ADDED" => WatchEvent::Added(object(event.object)?),
        "MODIFIED" => WatchEvent::Modified(object(event.object)?),
        "DELETED" => WatchEvent::Deleted(object(event.object)?),
        "BOOKMARK" => WatchEvent::Bookmark {
            resource_version: event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        "ERROR" => {
            let status: Status = serde_json::from_value(event.object)
                .map_err(|e| Error::decode("the Status of a watch ERROR event", e))?;
            return Err(Error::Api(Box::new(status)));
        }
        other => {
            use serde::de::Error as _;
            return Err(Error::decode(
                "a watch event",
                serde_json::Error::custom(format!("unknown event type {other:?}")),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::ObjectMeta;

    #[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Thing {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        #[serde(default)]
        metadata: ObjectMeta,
        spec: u32,
    }
    skiff_api::impl_resource!(
        Thing,
        kind = "Thing",
        group = "example.dev",
        version = "v1",
        plural = "things",
        namespaced = true
    );

    #[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
    struct Node {
        #[serde(default)]
        metadata: ObjectMeta,
    }
    skiff_api::impl_resource!(
        Node,
        kind = "Node",
        group = "",
        version = "v1",
        plural = "nodes",
        namespaced = false
    );

    fn client() -> Client {
        Client::new(crate::Config::new("http://127.0.0.1:1/prefix/").expect("url")).expect("client")
    }

    #[test]
    fn api_paths_follow_scope_and_group() {
        let things: Api<Thing> = Api::namespaced(client(), "prod");
        assert_eq!(
            things.collection_path(),
            "/apis/example.dev/v1/namespaces/prod/things"
        );
        assert_eq!(
            things.subresource_path("t", "status"),
            "/apis/example.dev/v1/namespaces/prod/things/t/status"
        );
        let all: Api<Thing> = Api::all(client());
        assert_eq!(all.collection_path(), "/apis/example.dev/v1/things");
        // The namespace of a cluster-scoped kind is ignored.
        let nodes: Api<Node> = Api::namespaced(client(), "prod");
        assert_eq!(nodes.object_path("n1"), "/api/v1/nodes/n1");
        let default: Api<Thing> = Api::default_namespaced(client());
        assert_eq!(default.namespace(), Some("default"));
    }

    #[test]
    fn list_and_watch_queries() {
        let list = ListParams {
            label_selector: Some("app=web".into()),
            limit: Some(10),
            continue_token: Some("abc=".into()),
            ..ListParams::default()
        };
        assert_eq!(
            list.query().to_path("/x"),
            "/x?labelSelector=app%3Dweb&limit=10&continue=abc%3D"
        );
        let watch = WatchParams {
            timeout_seconds: Some(60),
            allow_bookmarks: true,
            ..WatchParams::default()
        };
        assert_eq!(
            watch.query("42").to_path("/x"),
            "/x?watch=1&resourceVersion=42&timeoutSeconds=60&allowWatchBookmarks=true"
        );
        assert_eq!(WatchParams::default().query("").to_path("/x"), "/x?watch=1");
    }

    #[test]
    fn watch_events_decode_by_type() {
        let added = decode_event::<Thing>(br#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"},"spec":1}}"#)
            .expect("added");
        assert_eq!(added.resource_version(), Some("5"));
        assert!(matches!(added, WatchEvent::Added(Thing { spec: 1, .. })));
        // A bookmark carries only metadata: it must not need the kind's required fields.
        let bookmark = decode_event::<Thing>(
            br#"{"type":"BOOKMARK","object":{"kind":"Thing","metadata":{"resourceVersion":"9"}}}"#,
        )
        .expect("bookmark");
        assert_eq!(
            bookmark,
            WatchEvent::Bookmark {
                resource_version: "9".into()
            }
        );
        let gone = decode_event::<Thing>(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}"#,
        )
        .expect_err("an error");
        assert!(gone.is_gone(), "{gone}");
        assert!(matches!(
            decode_event::<Thing>(br#"{"type":"ADDED","object":{}}"#),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn delete_options_carry_the_params() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: Some("u".into()),
                resource_version: None,
            }),
        };
        let json = serde_json::to_value(params.options()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "propagationPolicy": "Foreground", "preconditions": { "uid": "u" }
            })
        );
    }
}
