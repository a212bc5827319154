//! Who may do what: an in-memory index of the RBAC objects (and of the API tokens made
//! at runtime), with Kubernetes' rule matching and bootstrap policy.
//!
//! # Why an index rebuilt on change
//!
//! Every request is authorized, so reading Roles and bindings from the store per request
//! would multiply each request's store reads. Instead [`AccessIndex`] holds an immutable
//! [`Snapshot`] behind an `Arc`: a request clones the `Arc` (one uncontended read lock)
//! and looks its subjects up in hash maps. The snapshot is rebuilt from scratch, not
//! patched event by event, whenever anything under the RBAC prefix or a Secret in
//! `kube-system` changes: such objects number in the dozens to hundreds and change
//! rarely, so a full rebuild costs little, and it cannot get a role/binding join wrong
//! the way incremental updates could (a binding may arrive before the role it names).
//! A store watch triggers rebuilds (so writers through any API server are seen), and
//! a write of those objects through this server rebuilds before it answers, so a client
//! that creates a binding can use it at once (read-your-writes).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_api::rbac::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};

use super::auth::User;
use super::tokens::{self, Credential};
use crate::store::{ListOptions, Revision, Store, StoreError};

/// The store prefix of every RBAC kind.
pub const RBAC_PREFIX: &str = "/rbac.authorization.k8s.io/";
/// Everyone with a valid credential is in this group, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group allowed everything without any binding.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group of node agents.
pub const NODES_GROUP: &str = "system:nodes";
/// A node's user name is this prefix followed by the node's name.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// What a request asks to do, as the rules see it (Kubernetes' authorizer attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A verb on a kind, or on one of its subresources.
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: Option<String>,
        /// The namespace the request is in; `None` for cluster-scoped kinds and
        /// all-namespaces lists.
        namespace: Option<String>,
        name: Option<String>,
    },
    /// A verb (`get`, `post`, ...) on a path that is not a resource (`/metrics`, `/api`).
    NonResource { verb: String, path: String },
}

impl Action {
    /// The namespace a RoleBinding must be in to grant this action.
    fn namespace(&self) -> Option<&str> {
        match self {
            Action::Resource { namespace, .. } => namespace.as_deref(),
            Action::NonResource { .. } => None,
        }
    }
}

/// Whether `rule` grants `action`, with Kubernetes' matching: `*` for any verb, group,
/// resource or URL; `pods/log` for a subresource and `*/scale` for a subresource of any
/// resource (a plain `pods` does not cover `pods/status`); `resourceNames` only for
/// requests that name an object; a URL ending in `*` as a prefix.
pub fn rule_allows(rule: &PolicyRule, action: &Action) -> bool {
    let any = |list: &[String], wanted: &str| list.iter().any(|v| v == "*" || v == wanted);
    match action {
        Action::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            if !rule.non_resource_urls.is_empty()
                || !any(&rule.verbs, verb)
                || !any(&rule.api_groups, group)
            {
                return false;
            }
            let resource_ok = rule.resources.iter().any(|r| match subresource {
                None => r == "*" || r == resource,
                Some(sub) => {
                    r == "*"
                        || r.strip_prefix(resource.as_str())
                            .and_then(|rest| rest.strip_prefix('/'))
                            == Some(sub.as_str())
                        || r.strip_prefix("*/") == Some(sub.as_str())
                }
            });
            resource_ok
                && (rule.resource_names.is_empty()
                    || name
                        .as_deref()
                        .is_some_and(|n| rule.resource_names.iter().any(|r| r == n)))
        }
        Action::NonResource { verb, path } => {
            any(&rule.verbs, verb)
                && rule.non_resource_urls.iter().any(|url| {
                    url == "*"
                        || url == path
                        || url
                            .strip_suffix('*')
                            .is_some_and(|prefix| path.starts_with(prefix))
                })
        }
    }
}

/// The rules one role grants, shared by every binding of it.
type Rules = Arc<[PolicyRule]>;

/// The grants of one scope (the cluster, or one namespace), by subject.
#[derive(Default)]
struct Grants {
    users: HashMap<String, Vec<Rules>>,
    groups: HashMap<String, Vec<Rules>>,
}

impl Grants {
    fn add(&mut self, subject: &Subject, binding_namespace: &str, rules: &Rules) {
        let entry = match subject.kind.as_str() {
            "Group" => self.groups.entry(subject.name.clone()),
            _ => match subject.user_name(binding_namespace) {
                Some(user) => self.users.entry(user),
                None => return,
            },
        };
        entry.or_default().push(rules.clone());
    }

    /// The rule sets bound here to `user`: by name, by one of their groups, or through
    /// `system:authenticated`.
    fn rules_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Rules> + 'a {
        let groups = user
            .groups
            .iter()
            .map(String::as_str)
            .chain([AUTHENTICATED_GROUP]);
        self.users
            .get(&user.name)
            .into_iter()
            .chain(groups.filter_map(|group| self.groups.get(group)))
            .flatten()
    }

    fn allows(&self, user: &User, action: &Action) -> bool {
        self.rules_of(user)
            .any(|rules| rules.iter().any(|rule| rule_allows(rule, action)))
    }
}

/// One consistent view of the RBAC objects and runtime tokens.
#[derive(Default)]
pub struct Snapshot {
    cluster: Grants,
    namespaces: HashMap<String, Grants>,
    /// Credentials of tokens made at runtime, by the token's SHA-256.
    tokens: HashMap<[u8; 32], Credential>,
    /// Every ClusterRole's rules, by name.
    cluster_roles: HashMap<String, Rules>,
    /// Every Role's rules, by namespace and name.
    roles: HashMap<(String, String), Rules>,
    /// The store revision the snapshot was read at (at least).
    pub revision: Revision,
}

impl Snapshot {
    /// Whether `user` may do `action`: `system:masters` may do anything; anyone else
    /// needs a ClusterRoleBinding, or a RoleBinding in the action's namespace, that binds
    /// them (by name, by one of their groups, or through `system:authenticated`) to a
    /// role with a rule that allows it.
    pub fn allows(&self, user: &User, action: &Action) -> bool {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return true;
        }
        self.cluster.allows(user, action)
            || action
                .namespace()
                .and_then(|ns| self.namespaces.get(ns))
                .is_some_and(|grants| grants.allows(user, action))
    }

    /// Every rule that grants `user` something in `namespace`, cluster-wide ones included,
    /// each once: what [`Snapshot::allows`] decides by there, listed (a
    /// SelfSubjectRulesReview). `system:masters` hold everything, which two rules say.
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        let mut rules = Vec::new();
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            let all = || vec!["*".to_string()];
            rules.push(PolicyRule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                ..PolicyRule::default()
            });
            rules.push(PolicyRule {
                verbs: all(),
                non_resource_urls: all(),
                ..PolicyRule::default()
            });
        }
        let in_namespace = self.namespaces.get(namespace);
        let sets = self
            .cluster
            .rules_of(user)
            .chain(in_namespace.into_iter().flat_map(|g| g.rules_of(user)));
        for rule in sets.flat_map(|set| set.iter()) {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
        rules
    }

    /// The rules of ClusterRole `name`, if it exists.
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(|rules| &rules[..])
    }

    /// The rules of Role `namespace/name`, if it exists.
    pub fn role_rules(&self, namespace: &str, name: &str) -> Option<&[PolicyRule]> {
        self.roles
            .get(&(namespace.to_string(), name.to_string()))
            .map(|rules| &rules[..])
    }

    /// The credential of a token made at runtime, by the token's SHA-256.
    pub fn token_credential(&self, hash: &[u8; 32]) -> Option<&Credential> {
        self.tokens.get(hash)
    }

    /// Reads every RBAC object and token Secret from `store` and joins bindings to
    /// roles. Objects that do not decode are skipped with a warning: one bad object must
    /// not lock everyone out.
    pub async fn load(store: &dyn Store) -> Result<Snapshot, StoreError> {
        let (roles, revision) = list::<Role>(store, "roles").await?;
        let (cluster_roles, _) = list::<ClusterRole>(store, "clusterroles").await?;
        let (bindings, _) = list::<RoleBinding>(store, "rolebindings").await?;
        let (cluster_bindings, _) =
            list::<ClusterRoleBinding>(store, "clusterrolebindings").await?;

        let cluster_rules: HashMap<&str, Rules> = cluster_roles
            .iter()
            .map(|r| (r.metadata.name(), Rules::from(r.rules.as_slice())))
            .collect();
        let role_rules: HashMap<(&str, &str), Rules> = roles
            .iter()
            .map(|r| {
                (
                    (r.metadata.namespace(), r.metadata.name()),
                    Rules::from(r.rules.as_slice()),
                )
            })
            .collect();

        let mut snapshot = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for binding in &cluster_bindings {
            // A binding of a role that does not exist (yet) grants nothing.
            if let Some(rules) = cluster_rules.get(binding.role_ref.name.as_str()) {
                for subject in &binding.subjects {
                    snapshot.cluster.add(subject, "", rules);
                }
            }
        }
        for binding in &bindings {
            let namespace = binding.metadata.namespace();
            let rules = match binding.role_ref.kind.as_str() {
                "Role" => role_rules.get(&(namespace, binding.role_ref.name.as_str())),
                _ => cluster_rules.get(binding.role_ref.name.as_str()),
            };
            if let Some(rules) = rules {
                let grants = snapshot
                    .namespaces
                    .entry(namespace.to_string())
                    .or_default();
                for subject in &binding.subjects {
                    grants.add(subject, namespace, rules);
                }
            }
        }
        snapshot.tokens = tokens::load(store).await?;
        snapshot.cluster_roles = cluster_rules
            .into_iter()
            .map(|(name, rules)| (name.to_string(), rules))
            .collect();
        snapshot.roles = role_rules
            .into_iter()
            .map(|((namespace, name), rules)| ((namespace.to_string(), name.to_string()), rules))
            .collect();
        Ok(snapshot)
    }
}

/// Every object of an RBAC kind, and the revision of the listing.
async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    plural: &str,
) -> Result<(Vec<T>, Revision), StoreError> {
    let page = store
        .list(&format!("{RBAC_PREFIX}{plural}/"), ListOptions::default())
        .await?;
    let objects = page
        .items
        .iter()
        .filter_map(|kv| match serde_json::from_slice(&kv.value) {
            Ok(object) => Some(object),
            Err(error) => {
                tracing::warn!(key = %kv.key, %error, "skipping an RBAC object that does not decode");
                None
            }
        })
        .collect();
    Ok((objects, page.revision))
}

/// The current [`Snapshot`], swapped whole on every rebuild.
#[derive(Default)]
pub struct AccessIndex {
    current: RwLock<Arc<Snapshot>>,
    /// Serializes rebuilds, so an older listing never replaces a newer one.
    rebuilding: tokio::sync::Mutex<()>,
}

impl AccessIndex {
    /// The snapshot to decide with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the RBAC objects and tokens again and makes them current.
    pub async fn rebuild(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let _one_at_a_time = self.rebuilding.lock().await;
        let snapshot = Snapshot::load(store).await?;
        let revision = snapshot.revision;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(revision)
    }

    /// Keeps the index current from the store's watch, forever: a rebuild on every
    /// burst of changes under the RBAC and token prefixes; on a watch error (compacted,
    /// lagged, store down) a fresh rebuild and watch after a second.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            if let Err(error) = self.follow_once(store.as_ref()).await {
                tracing::warn!(%error, "watching RBAC objects failed; rebuilding");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn follow_once(&self, store: &dyn Store) -> Result<(), StoreError> {
        let revision = self.rebuild(store).await?;
        let rbac = store.watch(RBAC_PREFIX, revision).await?;
        let tokens = store.watch(tokens::TOKEN_SECRETS_PREFIX, revision).await?;
        let mut changes = futures::stream::select(rbac, tokens);
        while let Some(change) = changes.next().await {
            let mut newest = change?.revision();
            // Take the rest of a burst (a `skiff apply` of many bindings) in one rebuild.
            while let Some(Some(more)) = futures::FutureExt::now_or_never(changes.next()) {
                newest = newest.max(more?.revision());
            }
            // A write through this server has rebuilt the index already.
            if self.snapshot().revision < newest {
                self.rebuild(store).await?;
            }
        }
        Ok(())
    }
}

/// A task keeping an index (the [`AccessIndex`], the node graph) current from the
/// store; stops when dropped (with its server).
pub struct Follower(tokio::task::JoinHandle<()>);

impl Follower {
    /// Runs `follow` (an index's endless `follow` loop) on a task of its own.
    pub fn new(follow: impl std::future::Future<Output = ()> + Send + 'static) -> Follower {
        Follower(tokio::spawn(follow))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl super::ApiServer {
    /// Creates the [`bootstrap_policy`] objects that are missing, then builds the
    /// access index, so the first request is decided on the whole policy.
    pub(crate) async fn bootstrap_access(&self) -> super::error::ApiResult<()> {
        for object in bootstrap_policy() {
            let plural = match object["kind"].as_str() {
                Some("ClusterRole") => "clusterroles",
                _ => "clusterrolebindings",
            };
            let rt = self
                .registry
                .find(skiff_api::rbac::GROUP, "v1", plural)
                .expect("the RBAC kinds are built in");
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let existing = self
                .store
                .get(&rt.key(None, Some(name)))
                .await
                .map_err(|e| super::error::ApiError::from_store(rt, name, e))?;
            if existing.is_some() {
                continue;
            }
            match self.create_object(rt, None, object.clone()).await {
                Ok(_) => tracing::info!(kind = rt.kind, name, "created bootstrap RBAC object"),
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        self.access
            .rebuild(self.store.as_ref())
            .await
            .map_err(|e| super::error::ApiError::internal("reading the RBAC objects", e))?;
        Ok(())
    }
}

/// A ClusterRole of the bootstrap policy.
fn cluster_role(name: &str, rules: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": name, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
        "rules": rules,
    })
}

/// A ClusterRoleBinding of the bootstrap policy, of `role` to `group`.
fn cluster_binding(name: &str, role: &str, group: &str) -> serde_json::Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name, "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group }],
    })
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The roles and bindings every cluster starts with, as Kubernetes' bootstrap policy:
/// ClusterRoles (`cluster-admin`, `view`, `edit`, `system:discovery`, `system:basic-user`,
/// `system:node`, `system:node-bootstrapper`) first, then ClusterRoleBindings. Created at
/// start when absent; never overwritten, so an administrator's changes to them stay.
///
/// - `cluster-admin`: everything, bound to `system:masters` (who are allowed everything
///   anyway; the binding documents it).
/// - `view`: reads of the namespaced workload kinds, not Secrets (reading them would
///   let a viewer read credentials and act as their owner), not RBAC objects; and the
///   metrics of pods and nodes (`kubectl top`), as Kubernetes aggregates into it.
/// - `edit`: `view` plus writes of those kinds and Secrets, and port-forward; no RBAC.
/// - `system:discovery`: discovery, `/version`, health and OpenAPI paths, bound to
///   every authenticated user as in Kubernetes.
/// - `system:basic-user`: asking what one may do and who one is (SelfSubjectAccessReviews,
///   SelfSubjectRulesReviews, SelfSubjectReviews: `kubectl auth can-i`, `kubectl auth
///   whoami`), bound to every authenticated user as in Kubernetes.
/// - `system:node`: exactly what the node agent (`node/src`) calls, bound to
///   `system:nodes`. Which Node, Lease and pods a node `system:node:NAME` may write
///   is narrowed further by [`super::authz`]'s node restriction.
/// - `system:node-bootstrapper`: exchanging a join token for a node's own credential
///   (`nodes/NAME/credential`), bound to `system:bootstrappers`.
pub fn bootstrap_policy() -> Vec<serde_json::Value> {
    let workloads_core = [
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "services/status",
        "endpoints",
        "configmaps",
        "events",
        "namespaces",
        "namespaces/status",
    ];
    let workloads_apps = [
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
    ];
    let workloads_batch = ["jobs", "jobs/status"];
    let view = json!([
        { "apiGroups": [""], "resources": workloads_core, "verbs": READ },
        { "apiGroups": ["apps"], "resources": workloads_apps, "verbs": READ },
        { "apiGroups": ["batch"], "resources": workloads_batch, "verbs": READ },
        // `kubectl top`: what Kubernetes' `system:aggregated-metrics-reader` adds to them.
        { "apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list"] },
    ]);
    let mut edit = view.as_array().cloned().unwrap_or_default();
    edit.extend([
        json!({ "apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps", "secrets"], "verbs": WRITE }),
        json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": READ }),
        json!({ "apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"] }),
        json!({ "apiGroups": ["apps"], "resources": ["deployments", "replicasets", "deployments/scale", "replicasets/scale"], "verbs": WRITE }),
        json!({ "apiGroups": ["batch"], "resources": ["jobs"], "verbs": WRITE }),
    ]);
    let node = json!([
        // Its pods (an informer over all pods, filtered by spec.nodeName), and the
        // Services, Endpoints and Nodes its network needs. The ConfigMaps and Secrets of
        // its pods, and no others, the node authorizer allows (`super::node_graph`).
        { "apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes", "namespaces"], "verbs": READ },
        // Register itself, post its status; restricted to its own Node.
        { "apiGroups": [""], "resources": ["nodes"], "verbs": ["create", "update", "patch"] },
        { "apiGroups": [""], "resources": ["nodes/status"], "verbs": ["update", "patch"] },
        // Its serving and client certificate (`nodes/NAME/certificate`).
        { "apiGroups": [""], "resources": ["nodes/certificate"], "verbs": ["create"] },
        // Its pods' status, and their removal once stopped; restricted to pods bound to it.
        { "apiGroups": [""], "resources": ["pods/status"], "verbs": ["update", "patch"] },
        { "apiGroups": [""], "resources": ["pods"], "verbs": ["delete"] },
        { "apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"] },
        // Its heartbeat; restricted to its own Lease in kube-node-lease.
        { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch"] },
        // Pulling wasm modules pushed with `skiff push`.
        { "nonResourceURLs": ["/skiff/v1/modules/*"], "verbs": ["get"] },
    ]);
    vec![
        cluster_role(
            "cluster-admin",
            json!([
                { "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] },
                { "nonResourceURLs": ["*"], "verbs": ["*"] },
            ]),
        ),
        cluster_role("view", view),
        cluster_role("edit", json!(edit)),
        cluster_role(
            "system:discovery",
            json!([{
                "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version", "/version/",
                                    "/openapi", "/openapi/*", "/healthz", "/livez", "/readyz"],
                "verbs": ["get"],
            }]),
        ),
        cluster_role(
            "system:basic-user",
            json!([
                { "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"] },
                { "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"] },
            ]),
        ),
        cluster_role("system:node", node),
        cluster_role(
            "system:node-bootstrapper",
            json!([{ "apiGroups": [""], "resources": ["nodes/credential"], "verbs": ["create"] }]),
        ),
        cluster_binding("cluster-admin", "cluster-admin", MASTERS_GROUP),
        cluster_binding("system:discovery", "system:discovery", AUTHENTICATED_GROUP),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            AUTHENTICATED_GROUP,
        ),
        cluster_binding("system:node", "system:node", NODES_GROUP),
        cluster_binding(
            "system:node-bootstrapper",
            "system:node-bootstrapper",
            tokens::BOOTSTRAPPERS_GROUP,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(value: serde_json::Value) -> PolicyRule {
        serde_json::from_value(value).unwrap()
    }

    fn resource(verb: &str, group: &str, resource: &str, name: Option<&str>) -> Action {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        Action::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource,
            namespace: Some("default".into()),
            name: name.map(String::from),
        }
    }

    fn path(verb: &str, path: &str) -> Action {
        Action::NonResource {
            verb: verb.into(),
            path: path.into(),
        }
    }

    #[test]
    fn rule_matching_follows_kubernetes() {
        let pods =
            rule(json!({ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] }));
        assert!(rule_allows(&pods, &resource("get", "", "pods", Some("a"))));
        assert!(rule_allows(&pods, &resource("list", "", "pods", None)));
        assert!(
            !rule_allows(&pods, &resource("delete", "", "pods", Some("a"))),
            "verb"
        );
        assert!(
            !rule_allows(&pods, &resource("get", "apps", "pods", Some("a"))),
            "group"
        );
        assert!(
            !rule_allows(&pods, &resource("get", "", "pods/log", Some("a"))),
            "a resource does not cover its subresources"
        );
        assert!(
            !rule_allows(&pods, &path("get", "/api")),
            "resource rules never match URLs"
        );

        let log = rule(json!({ "apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"] }));
        assert!(rule_allows(
            &log,
            &resource("get", "", "pods/log", Some("a"))
        ));
        assert!(!rule_allows(&log, &resource("get", "", "pods", Some("a"))));
        assert!(!rule_allows(
            &log,
            &resource("get", "", "pods/status", Some("a"))
        ));

        let scale = rule(json!({ "apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["*"] }));
        assert!(rule_allows(
            &scale,
            &resource("update", "apps", "deployments/scale", Some("d"))
        ));
        assert!(!rule_allows(
            &scale,
            &resource("update", "apps", "deployments", Some("d"))
        ));

        let named = rule(
            json!({ "apiGroups": [""], "resources": ["nodes"], "resourceNames": ["n1"], "verbs": ["get", "list", "create"] }),
        );
        assert!(rule_allows(
            &named,
            &resource("get", "", "nodes", Some("n1"))
        ));
        assert!(!rule_allows(
            &named,
            &resource("get", "", "nodes", Some("n2"))
        ));
        assert!(
            !rule_allows(&named, &resource("list", "", "nodes", None)),
            "a list names no object"
        );
        assert!(!rule_allows(&named, &resource("create", "", "nodes", None)));

        let all = rule(json!({ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] }));
        assert!(rule_allows(
            &all,
            &resource("deletecollection", "batch", "jobs", None)
        ));
        assert!(rule_allows(
            &all,
            &resource("get", "", "pods/log", Some("a"))
        ));
        assert!(!rule_allows(&all, &path("get", "/metrics")));

        let urls = rule(json!({ "nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"] }));
        assert!(rule_allows(&urls, &path("get", "/apis/apps/v1")));
        assert!(rule_allows(&urls, &path("get", "/version")));
        assert!(
            !rule_allows(&urls, &path("get", "/version/x")),
            "no star: exact"
        );
        assert!(!rule_allows(&urls, &path("get", "/metrics")));
        assert!(!rule_allows(&urls, &path("post", "/apis/apps/v1")));
        assert!(!rule_allows(&urls, &resource("get", "", "pods", None)));
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn bindings_grant_in_their_scope_only() {
        let rules: Rules = Arc::from(vec![rule(
            json!({ "apiGroups": [""], "resources": ["pods"], "verbs": ["get"] }),
        )]);
        let mut snapshot = Snapshot::default();
        let subject = |kind: &str, name: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            ..Subject::default()
        };
        snapshot.namespaces.entry("apps".into()).or_default().add(
            &subject("User", "alice"),
            "apps",
            &rules,
        );
        snapshot.namespaces.entry("apps".into()).or_default().add(
            &subject("ServiceAccount", "robot"),
            "apps",
            &rules,
        );
        snapshot
            .cluster
            .add(&subject("Group", "readers"), "", &rules);
        let in_ns = |ns: Option<&str>| Action::Resource {
            verb: "get".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: None,
            namespace: ns.map(String::from),
            name: Some("p".into()),
        };
        let alice = user("alice", &[]);
        assert!(snapshot.allows(&alice, &in_ns(Some("apps"))));
        assert!(!snapshot.allows(&alice, &in_ns(Some("default"))));
        assert!(
            !snapshot.allows(&alice, &in_ns(None)),
            "a RoleBinding grants nothing cluster-wide"
        );
        let robot = user("system:serviceaccount:apps:robot", &[]);
        assert!(snapshot.allows(&robot, &in_ns(Some("apps"))));
        let reader = user("bob", &["readers"]);
        assert!(snapshot.allows(&reader, &in_ns(Some("default"))));
        assert!(snapshot.allows(&reader, &in_ns(None)));
        assert!(!snapshot.allows(&user("bob", &[]), &in_ns(Some("default"))));
        assert!(snapshot.allows(
            &user("root", &[MASTERS_GROUP]),
            &path("delete", "/anything")
        ));
    }

    #[test]
    fn the_rules_listed_are_those_that_grant() {
        let rules = |verb: &str| -> Rules {
            Arc::from(vec![rule(
                json!({ "apiGroups": [""], "resources": ["pods"], "verbs": [verb] }),
            )])
        };
        let (get, list, delete) = (rules("get"), rules("list"), rules("delete"));
        let subject = |kind: &str, name: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            ..Subject::default()
        };
        let mut snapshot = Snapshot::default();
        snapshot.namespaces.entry("apps".into()).or_default().add(
            &subject("User", "alice"),
            "apps",
            &get,
        );
        // Bound twice, listed once.
        snapshot
            .cluster
            .add(&subject("Group", "readers"), "", &list);
        snapshot
            .cluster
            .add(&subject("Group", AUTHENTICATED_GROUP), "", &list);
        snapshot.namespaces.entry("other".into()).or_default().add(
            &subject("User", "alice"),
            "other",
            &delete,
        );
        let alice = user("alice", &["readers"]);
        assert_eq!(
            snapshot.rules_for(&alice, "apps"),
            [list[0].clone(), get[0].clone()]
        );
        assert_eq!(snapshot.rules_for(&alice, "default"), [list[0].clone()]);
        let root = snapshot.rules_for(&user("root", &[MASTERS_GROUP]), "default");
        assert!(
            root.iter().any(|r| rule_allows(r, &path("delete", "/x")))
                && root
                    .iter()
                    .any(|r| rule_allows(r, &resource("delete", "apps", "x", None))),
            "{root:?}"
        );
    }

    /// Objects written to the store by anyone (another API server) reach the index
    /// through the watch, without a request to this server.
    #[tokio::test]
    async fn the_index_follows_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sled::SledStore::open(dir.path()).unwrap());
        let index = Arc::new(AccessIndex::default());
        let _follower = Follower::new(index.clone().follow(store.clone()));
        let alice = user("alice", &[]);
        let metrics = path("get", "/metrics");
        assert!(!index.snapshot().allows(&alice, &metrics));
        let role = json!({ "metadata": { "name": "metrics" }, "rules": [{ "nonResourceURLs": ["/metrics"], "verbs": ["get"] }] });
        let binding = json!({
            "metadata": { "name": "metrics" },
            "roleRef": { "apiGroup": skiff_api::rbac::GROUP, "kind": "ClusterRole", "name": "metrics" },
            "subjects": [{ "kind": "User", "name": "alice" }],
        });
        // The binding first: it grants nothing until its role exists.
        for (key, value) in [
            ("clusterrolebindings/metrics", binding),
            ("clusterroles/metrics", role),
        ] {
            let bytes = serde_json::to_vec(&value).unwrap().into();
            store
                .create(&format!("{RBAC_PREFIX}{key}"), bytes)
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while !index.snapshot().allows(&alice, &metrics) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the index did not follow the store within 10 s: likely not watching");
        store
            .delete(&format!("{RBAC_PREFIX}clusterroles/metrics"), None)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while index.snapshot().allows(&alice, &metrics) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a deleted role still granted after 10 s: likely not watching");
    }

    #[test]
    fn the_bootstrap_policy_is_valid() {
        use skiff_api::Object;
        for object in bootstrap_policy() {
            let errors = match object["kind"].as_str() {
                Some("ClusterRole") => serde_json::from_value::<ClusterRole>(object.clone())
                    .unwrap()
                    .validate(),
                Some("ClusterRoleBinding") => {
                    serde_json::from_value::<ClusterRoleBinding>(object.clone())
                        .unwrap()
                        .validate()
                }
                other => panic!("unexpected kind {other:?}"),
            };
            assert!(
                errors.is_empty(),
                "{}: {errors:?}",
                object["metadata"]["name"]
            );
        }
    }
}
