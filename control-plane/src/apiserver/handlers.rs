//! The verbs on objects: create, get, list, update, patch, delete, and the `status`,
//! `binding`, `scale` and `finalize` subresources.
//!
//! Every write is a read-modify-write of one key with compare-and-swap on its
//! revision. A caller that named a `resourceVersion` gets 409 when it is stale; a
//! caller that did not (a patch, a binding, an unconditional update) is retried on a
//! fresh read, so concurrent writers never lose each other's changes.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use skiff_api::selector::{FieldSelector, Selector};

use super::apply::{self, Applier, Ownership, Scope};
use super::bounded;
use super::error::{ApiError, ApiResult};
use super::object::{
    self, check_type, decode, encode, meta_mut, meta_str, name_of, parse_revision,
};
use super::openapi::Catalog;
use super::registry::ResourceType;
use super::request::{BodyFormat, Params};
use super::strategic;
use super::table::{Read, Representation};
use super::{ApiServer, allocator};
use crate::store::{KeyValue, ListOptions, StoreError};

/// How long a write without a precondition keeps retrying on conflicts before it
/// gives up with 409: under heavy contention on one object every writer still gets
/// through, while a pathological loop cannot hold a request forever.
const CONFLICT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Attempts of a read-modify-write: yields between them so the writer that won the
/// race finishes, and stops at [`CONFLICT_DEADLINE`].
struct Attempts {
    started: std::time::Instant,
    first: bool,
}

impl Attempts {
    fn new() -> Self {
        Attempts {
            started: std::time::Instant::now(),
            first: true,
        }
    }

    async fn next(&mut self) -> bool {
        if std::mem::take(&mut self.first) {
            return true;
        }
        if self.started.elapsed() > CONFLICT_DEADLINE {
            return false;
        }
        tokio::task::yield_now().await;
        true
    }
}
/// Namespaces that exist from the start and may not be deleted.
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];
/// The namespaces created at first start.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object: everything but `status` (for kinds with a status subresource).
    Main,
    /// `status` only.
    Status,
    /// A namespace's `spec.finalizers` only.
    Finalize,
}

/// What a selector-filtered list or watch keeps.
pub struct Filter {
    labels: Option<Selector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn from_params(rt: &ResourceType, params: &Params) -> ApiResult<Filter> {
        let labels =
            match params
                .label_selector
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            {
                Some(s) => Some(s.parse::<Selector>().map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match params
            .field_selector
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(s) => {
                let selector = s
                    .parse::<FieldSelector>()
                    .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
                for field in selector.fields() {
                    if rt.field_value(&Value::Null, field).is_none() {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {field} (supported for {}: metadata.name, metadata.namespace{})",
                            rt.plural,
                            rt.field_selectors
                                .iter()
                                .map(|(f, _, _)| format!(", {f}"))
                                .collect::<String>()
                        )));
                    }
                }
                Some(selector)
            }
            None => None,
        };
        Ok(Filter { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, rt: &ResourceType, object: &Value) -> bool {
        if let Some(labels) = &self.labels {
            let map = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !labels.matches(&map) {
                return false;
            }
        }
        if let Some(fields) = &self.fields {
            return fields.matches(|field| rt.field_value(object, field));
        }
        true
    }
}

/// Why one attempt at an update did not write.
enum Attempt {
    /// The key changed under us; retry unless the caller named a revision.
    Raced,
    Failed(ApiError),
}

impl From<ApiError> for Attempt {
    fn from(error: ApiError) -> Self {
        Attempt::Failed(error)
    }
}

/// The object an update is for, whether it is only tried, and how it is recorded in
/// the managed fields.
struct UpdateTarget<'a> {
    namespace: Option<&'a str>,
    name: &'a str,
    part: Part,
    dry_run: bool,
    ownership: &'a Ownership,
}

/// A server-side apply: what is applied, to which object, by whom.
pub struct ApplyRequest<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub part: Part,
    /// The applied configuration, checked by [`apply::check_config`].
    pub config: &'a Value,
    pub applier: &'a Applier,
    pub dry_run: bool,
}

/// What a mutation wants written, and the revision the caller required, if any.
pub struct Desired {
    pub object: Value,
    pub precondition: Option<u64>,
}

impl ApiServer {
    pub(crate) async fn get_object(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<(KeyValue, Value)> {
        let key = rt.key(namespace, Some(name));
        let kv = self
            .store
            .get(&key)
            .await
            .map_err(|e| ApiError::from_store(rt, name, e))?;
        let kv = kv.ok_or_else(|| ApiError::not_found(rt, name))?;
        let object = decode(&kv)?;
        Ok((kv, object))
    }

    /// `GET` of one object, in the representation the client accepts: the object, or
    /// the Table or metadata it asks for (see [`super::table`]).
    pub(crate) async fn serve_get(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        params: &Params,
        headers: &HeaderMap,
    ) -> ApiResult<Response> {
        let representation = Representation::negotiate(headers, params, Read::Get)?;
        let (_, object) = self.get_object(rt, namespace, name).await?;
        let answer = representation.object(rt, object, std::time::SystemTime::now())?;
        Ok(axum::Json(answer).into_response())
    }

    /// `GET` of a collection, in the representation the client accepts.
    pub(crate) async fn serve_list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        params: &Params,
        headers: &HeaderMap,
    ) -> ApiResult<Response> {
        let representation = Representation::negotiate(headers, params, Read::List)?;
        let list = self.list_objects(rt, namespace, params).await?;
        let answer = representation.list(rt, list, std::time::SystemTime::now())?;
        Ok(axum::Json(answer).into_response())
    }

    pub(crate) async fn list_objects(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        params: &Params,
    ) -> ApiResult<Value> {
        let filter = Filter::from_params(rt, params)?;
        let limit = Params::number("limit", &params.limit)?
            .filter(|n| *n > 0)
            .map(|n| n as usize);
        let prefix = rt.key(namespace, None);
        let mut start_after = match params.continue_.as_deref().filter(|c| !c.is_empty()) {
            Some(token) => Some(decode_continue(token, &prefix)?),
            None => None,
        };
        let mut items = Vec::new();
        let mut revision = 0;
        let mut next_token = None;
        loop {
            let page_size = limit.map(|l| (l - items.len()).max(64));
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        start_after: start_after.clone(),
                        limit: page_size,
                    },
                )
                .await
                .map_err(|e| ApiError::from_store(rt, "", e))?;
            revision = revision.max(page.revision);
            let mut last_key = None;
            for kv in &page.items {
                last_key = Some(kv.key.clone());
                let object = decode(kv)?;
                if filter.matches(rt, &object) {
                    items.push(object);
                    if limit.is_some_and(|l| items.len() == l) {
                        break;
                    }
                }
            }
            let full = limit.is_some_and(|l| items.len() == l);
            let scanned_all_of_page = last_key.as_ref() == page.items.last().map(|kv| &kv.key);
            if full {
                if page.more || !scanned_all_of_page {
                    next_token = last_key.map(|k| encode_continue(&k));
                }
                break;
            }
            if !page.more {
                break;
            }
            start_after = last_key;
        }
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if let Some(token) = next_token {
            metadata["continue"] = Value::String(token);
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    pub(crate) async fn create_object(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        object: Value,
    ) -> ApiResult<Value> {
        self.create_object_as(rt, namespace, object, false, &Ownership::server())
            .await
    }

    /// Creates an object; with `dry_run`, goes through every step of a create — type,
    /// namespace, generated name, defaults, validation, a free name, addresses — and
    /// answers with what would have been stored, storing nothing.
    ///
    /// A dry run's addresses (a Service's ClusterIP and node ports, a Node's pod range)
    /// are taken from the allocator exactly as a real create takes them, so the answer
    /// holds an address that was free and a requested one is checked, and given back
    /// before the answer goes out: nothing stays allocated.
    ///
    /// The creator is recorded in the managed fields as `ownership` says.
    pub(crate) async fn create_object_as(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
        ownership: &Ownership,
    ) -> ApiResult<Value> {
        check_type(rt, &mut object)?;
        let meta = meta_mut(&mut object)?;
        if rt.namespaced {
            let namespace = namespace.ok_or_else(|| {
                ApiError::bad_request(format!("{} must be created in a namespace", rt.plural))
            })?;
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(namespace.into()));
                }
            }
        } else {
            meta.remove("namespace");
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert("creationTimestamp".into(), Value::String(object::now()));
        if rt.has_spec {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        let generate = meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && meta
                .get("generateName")
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty());
        prepare_for_create(rt, &mut object);

        if let Some(namespace) = namespace.filter(|_| rt.namespaced) {
            self.check_namespace_open(namespace).await?;
        }

        // Addresses are taken before the write and given back if it fails.
        let taken = self.allocate(rt, &mut object).await?;
        let created = self
            .create_with_name(rt, namespace, object, generate, dry_run, ownership)
            .await;
        if created.is_err() || dry_run {
            self.release(rt, &taken).await;
        }
        created
    }

    /// Writes a new object, making up its name from `generateName` when asked; with
    /// `dry_run`, only checks that the name is free.
    async fn create_with_name(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        object: Value,
        generate: bool,
        dry_run: bool,
        ownership: &Ownership,
    ) -> ApiResult<Value> {
        for _ in 0..8 {
            let mut candidate = object.clone();
            if generate {
                let prefix = meta_str(&candidate, "generateName")
                    .unwrap_or_default()
                    .to_string();
                meta_mut(&mut candidate)?.insert(
                    "name".into(),
                    Value::String(format!("{prefix}{}", object::random_suffix())),
                );
            }
            let mut candidate = rt.normalize(candidate, None)?;
            if let Ownership::Update(writer) = ownership {
                let given = candidate.pointer("/metadata/managedFields").cloned();
                let scope = Scope::of(rt, Part::Main);
                let managed =
                    apply::record_update(rt, scope, None, &candidate, given.as_ref(), writer);
                apply::set_managed_fields(&mut candidate, managed);
            }
            let name = name_of(&candidate).to_string();
            let key = rt.key(namespace, Some(&name));
            if dry_run {
                match self.store.get(&key).await {
                    Ok(None) => return Ok(candidate),
                    Ok(Some(_)) if generate => continue,
                    Ok(Some(_)) => return Err(ApiError::already_exists(rt, &name)),
                    Err(error) => return Err(ApiError::from_store(rt, &name, error)),
                }
            }
            match self.store.create(&key, encode(&candidate)?).await {
                Ok(kv) => return decode(&kv),
                Err(StoreError::AlreadyExists { .. }) if generate => continue,
                Err(error) => return Err(ApiError::from_store(rt, &name, error)),
            }
        }
        Err(ApiError::internal(
            "generating a unique name",
            "eight generated names were all taken",
        ))
    }

    /// Takes what a new object is given by the server (a Service's ClusterIP, a Node's pod
    /// range), writing it into the object; returns it as the object would be released.
    async fn allocate(&self, rt: &ResourceType, object: &mut Value) -> ApiResult<Value> {
        let ranges = &self.config.ranges;
        match rt.kind {
            "Service" => {
                let ips =
                    allocator::allocate_cluster_ip(self.store.as_ref(), ranges, rt, object).await?;
                if let Err(error) =
                    allocator::allocate_node_ports(self.store.as_ref(), rt, object).await
                {
                    allocator::release_cluster_ips(
                        self.store.as_ref(),
                        ips.iter().map(ToString::to_string),
                    )
                    .await;
                    return Err(error);
                }
            }
            "Node" => {
                allocator::allocate_pod_cidr(self.store.as_ref(), ranges, rt, object).await?;
            }
            _ => return Ok(Value::Null),
        }
        Ok(object.clone())
    }

    /// Gives back what `object` (gone from the store, or never written) was allocated.
    async fn release(&self, rt: &ResourceType, object: &Value) {
        match rt.kind {
            "Service" => {
                allocator::release_cluster_ips(
                    self.store.as_ref(),
                    allocator::cluster_ips_of(object),
                )
                .await;
                allocator::release_node_ports(
                    self.store.as_ref(),
                    allocator::node_ports_of(object),
                )
                .await;
            }
            "Node" => allocator::release_pod_cidr(self.store.as_ref(), object).await,
            _ => {}
        }
    }

    async fn check_namespace_open(&self, namespace: &str) -> ApiResult<()> {
        let rt = self
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces are built in");
        let kv = self
            .store
            .get(&rt.key(None, Some(namespace)))
            .await
            .map_err(|e| ApiError::from_store(rt, namespace, e))?;
        let kv = kv.ok_or_else(|| ApiError::namespace_not_found(namespace))?;
        let ns = decode(&kv)?;
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Reads the object, lets `mutate` say what it should become, and writes that with
    /// compare-and-swap; retried on a race unless the caller named a revision.
    pub(crate) async fn update_object(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        mutate: impl Fn(&Value) -> ApiResult<Desired>,
    ) -> ApiResult<Value> {
        let ownership = Ownership::server();
        self.update_object_as(rt, namespace, name, part, false, &ownership, mutate)
            .await
    }

    /// [`Self::update_object`]; with `dry_run`, everything but the write: the answer is
    /// the object as it would be stored, at the revision it has now. The writer is
    /// recorded in the managed fields as `ownership` says.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_object_as(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        part: Part,
        dry_run: bool,
        ownership: &Ownership,
        mutate: impl Fn(&Value) -> ApiResult<Desired>,
    ) -> ApiResult<Value> {
        let mut attempts = Attempts::new();
        while attempts.next().await {
            let (kv, current) = self.get_object(rt, namespace, name).await?;
            let desired = mutate(&current)?;
            let conditional = desired.precondition.is_some();
            let target = UpdateTarget {
                namespace,
                name,
                part,
                dry_run,
                ownership,
            };
            match self.try_update(rt, target, &kv, current, desired).await {
                Ok(object) => return Ok(object),
                Err(Attempt::Raced) if !conditional => continue,
                Err(Attempt::Raced) => return Err(ApiError::modified(rt, name)),
                Err(Attempt::Failed(error)) => return Err(error),
            }
        }
        Err(ApiError::modified(rt, name))
    }

    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`): merges the
    /// configuration into the object and records the applier's fields (see [`apply`]);
    /// creates the object when there is none, as Kubernetes does. `admit` checks the
    /// object that would be written. Answers the object and whether it was created.
    pub(crate) async fn apply_object(
        &self,
        rt: &ResourceType,
        request: ApplyRequest<'_>,
        admit: impl Fn(&Value) -> ApiResult<()>,
    ) -> ApiResult<(Value, bool)> {
        let ApplyRequest {
            namespace,
            name,
            part,
            config,
            applier,
            dry_run,
        } = request;
        let scope = Scope::of(rt, part);
        let mut attempts = Attempts::new();
        while attempts.next().await {
            let updated = self
                .update_object_as(
                    rt,
                    namespace,
                    name,
                    part,
                    dry_run,
                    &Ownership::Applied,
                    |current| {
                        let merged = apply::apply(rt, scope, Some(current), config, applier)?;
                        admit(&merged)?;
                        let precondition = patch_precondition(current, &merged)?;
                        Ok(Desired {
                            object: merged,
                            precondition,
                        })
                    },
                )
                .await;
            match updated {
                Err(error) if error.reason == "NotFound" && part == Part::Main => {}
                other => return other.map(|object| (object, false)),
            }
            let object = apply::apply(rt, scope, None, config, applier)?;
            admit(&object)?;
            match self
                .create_object_as(rt, namespace, object, dry_run, &Ownership::Applied)
                .await
            {
                // Created meanwhile: apply to what is there.
                Err(error) if error.reason == "AlreadyExists" => continue,
                other => return other.map(|object| (object, true)),
            }
        }
        Err(ApiError::modified(rt, name))
    }

    /// Assigns the pod `name` to `node` with `PodScheduled=True`, once: the write behind
    /// `pods/NAME/binding`.
    ///
    /// As Kubernetes' binding does, it changes the stored pod directly rather than going
    /// through a pod update's typed decode and validation: the change is the server's
    /// own, and there is one binding per pod on the scheduler's hot path. Retries on a
    /// fresh read when the pod changed meanwhile, as any write without a precondition.
    /// With `dry_run`, checks that the binding would be made and makes none.
    pub(crate) async fn bind_pod(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        uid: Option<&str>,
        node: &str,
        dry_run: bool,
    ) -> ApiResult<()> {
        let key = rt.key(namespace, Some(name));
        let mut attempts = Attempts::new();
        while attempts.next().await {
            let (kv, mut pod) = self.get_object(rt, namespace, name).await?;
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::conflict(rt, name, "the pod is being deleted"));
            }
            // A binding names the pod it was decided for: not a namesake created since.
            if let Some(uid) = uid
                && meta_str(&pod, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    "Precondition failed: UID in precondition does not match the UID in the object",
                ));
            }
            if let Some(bound) = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    rt,
                    name,
                    &format!("pod {name} is already assigned to node {bound:?}"),
                ));
            }
            if dry_run {
                return Ok(());
            }
            let object = pod
                .as_object_mut()
                .ok_or_else(|| ApiError::internal("decoding a stored object", "not a map"))?;
            let spec = object.entry("spec").or_insert_with(|| json!({}));
            spec["nodeName"] = Value::String(node.to_string());
            let status = object.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                let conditions = status.entry("conditions").or_insert_with(|| json!([]));
                if let Value::Array(conditions) = conditions {
                    conditions
                        .retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                    conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastTransitionTime": object::now() }));
                }
            }
            // A spec change, so the generation moves as on any other spec update.
            let meta = meta_mut(&mut pod)?;
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta.insert("generation".into(), json!(generation));
            // Stored without it: the revision is the resourceVersion.
            meta.remove("resourceVersion");
            let bytes = serde_json::to_vec(&pod)
                .map_err(|e| ApiError::internal("encoding an object", e))?;
            match self.store.update(&key, bytes.into(), kv.mod_revision).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(ApiError::from_store(rt, name, error)),
            }
        }
        Err(ApiError::modified(rt, name))
    }

    async fn try_update(
        &self,
        rt: &ResourceType,
        target: UpdateTarget<'_>,
        kv: &KeyValue,
        old: Value,
        desired: Desired,
    ) -> Result<Value, Attempt> {
        let UpdateTarget {
            namespace,
            name,
            part,
            dry_run,
            ownership,
        } = target;
        if desired.precondition.is_some_and(|rv| rv != kv.mod_revision) {
            return Err(Attempt::Raced);
        }
        let mut new = desired.object;
        check_type(rt, &mut new)?;
        // The managed fields the request carries: an apply's, or a client's own edit.
        let given_managed = new.pointer("/metadata/managedFields").cloned();
        if name_of(&new) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&new)
            ))
            .into());
        }
        if let Some(ns) = namespace.filter(|_| rt.namespaced)
            && meta_str(&new, "namespace").is_some_and(|given| !given.is_empty() && given != ns)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )
            .into());
        }
        new = match part {
            Part::Main => {
                let mut new = new;
                if rt.has_status {
                    set_field(&mut new, "status", old.get("status").cloned());
                }
                new
            }
            Part::Status => {
                let status = new.get("status").cloned();
                let mut merged = old.clone();
                set_field(&mut merged, "status", status);
                merged
            }
            Part::Finalize => {
                let finalizers = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(Value::Array(Vec::new()));
                let mut merged = old.clone();
                merged
                    .as_object_mut()
                    .expect("objects are maps")
                    .entry("spec")
                    .or_insert_with(|| json!({}))["finalizers"] = finalizers;
                merged
            }
        };
        // Server-owned metadata stays as the server set it.
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        {
            let meta = meta_mut(&mut new)?;
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.get(field) {
                    Some(value) => meta.insert(field.into(), value.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert(
                "resourceVersion".into(),
                Value::String(kv.mod_revision.to_string()),
            );
            if old_meta.contains_key("deletionTimestamp") {
                let old_finalizers = string_list(old_meta.get("finalizers"));
                for finalizer in string_list(meta.get("finalizers")) {
                    if !old_finalizers.contains(&finalizer) {
                        return Err(ApiError::invalid(
                            rt,
                            name,
                            &[skiff_api::FieldError::forbidden(
                                "metadata.finalizers",
                                format!("no new finalizers can be added if the object is being deleted, found new finalizers [{finalizer:?}]"),
                            )],
                        )
                        .into());
                    }
                }
            }
        }
        if rt.kind == "Service" {
            keep_cluster_ip(&old, &mut new);
        }
        let mut new = rt.normalize(new, Some(&old))?;
        if rt.has_spec && new.get("spec") != old.get("spec") {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta_mut(&mut new)?.insert("generation".into(), json!(generation));
        }
        let managed = match ownership {
            Ownership::Applied => given_managed,
            Ownership::Update(writer) => {
                // Through a subresource, the request's managed fields are not its to set.
                let given = given_managed.as_ref().filter(|_| part == Part::Main);
                apply::record_update(rt, Scope::of(rt, part), Some(&old), &new, given, writer)
            }
        };
        apply::set_managed_fields(&mut new, managed);
        let key = rt.key(namespace, Some(name));
        if dry_run {
            // What a real update would answer; deletion due or not, nothing changes.
            return Ok(if encode(&new)? == kv.value { old } else { new });
        }
        if deletion_is_due(rt, &new) {
            return match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(gone) => {
                    self.release(rt, &old).await;
                    Ok(object::decode_at(&encode(&new)?, gone.mod_revision)?)
                }
                Err(StoreError::Conflict { .. }) => Err(Attempt::Raced),
                Err(error) => Err(ApiError::from_store(rt, name, error).into()),
            };
        }
        let bytes = encode(&new)?;
        if bytes == kv.value {
            // Nothing changed: no write, no new resourceVersion, no watch event.
            return Ok(old);
        }
        match self.store.update(&key, bytes, kv.mod_revision).await {
            Ok(kv) => Ok(decode(&kv)?),
            Err(StoreError::Conflict { .. }) => Err(Attempt::Raced),
            Err(error) => Err(ApiError::from_store(rt, name, error).into()),
        }
    }

    /// Deletes an object as Kubernetes does: at once, or — when finalizers or a grace
    /// period hold it — by marking it with `deletionTimestamp` for its owners to finish.
    ///
    /// With `dry_run`, every check and the answer a real delete would give (the object
    /// gone, or marked for deletion), and no change.
    pub(crate) async fn delete_object(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &skiff_api::meta::DeleteOptions,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if rt.kind == "Namespace" && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespace {name:?} is protected: this namespace may not be deleted"
            )));
        }
        let policy = options
            .propagation_policy
            .as_deref()
            .unwrap_or("Background");
        if !["Background", "Foreground", "Orphan"].contains(&policy) {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {policy:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            )));
        }
        let key = rt.key(namespace, Some(name));
        let mut attempts = Attempts::new();
        while attempts.next().await {
            let (kv, current) = self.get_object(rt, namespace, name).await?;
            if let Some(pre) = &options.preconditions {
                if pre
                    .uid
                    .as_deref()
                    .is_some_and(|uid| Some(uid) != meta_str(&current, "uid"))
                {
                    return Err(ApiError::conflict(
                        rt,
                        name,
                        "Precondition failed: UID in precondition does not match the UID in the object",
                    ));
                }
                if let Some(rv) = pre.resource_version.as_deref()
                    && parse_revision(rv)? != kv.mod_revision
                {
                    return Err(ApiError::conflict(
                        rt,
                        name,
                        "Precondition failed: resourceVersion in precondition does not match the object",
                    ));
                }
            }
            let mut marked = current.clone();
            let grace = grace_period(rt, &current, options.grace_period_seconds);
            {
                let meta = meta_mut(&mut marked)?;
                let mut finalizers = string_list(meta.get("finalizers"));
                let wanted = match policy {
                    "Foreground" => Some("foregroundDeletion"),
                    "Orphan" => Some("orphan"),
                    _ => None,
                };
                if let Some(f) = wanted
                    && meta.get("deletionTimestamp").is_none()
                    && !finalizers.iter().any(|x| x == f)
                {
                    finalizers.push(f.to_string());
                    meta.insert("finalizers".into(), json!(finalizers));
                }
                let namespace_finalizers = rt.kind == "Namespace"
                    && current
                        .pointer("/spec/finalizers")
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty());
                let held = !finalizers.is_empty() || namespace_finalizers;
                if !held && grace == 0 {
                    if dry_run {
                        return Ok(current);
                    }
                    return match self.store.delete(&key, Some(kv.mod_revision)).await {
                        Ok(gone) => {
                            self.release(rt, &current).await;
                            object::decode_at(&gone.value, gone.mod_revision)
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(error) => Err(ApiError::from_store(rt, name, error)),
                    };
                }
                let remaining = meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_u64);
                match (meta.get("deletionTimestamp").is_some(), remaining) {
                    // Already being deleted: only a shorter grace period changes anything.
                    (true, Some(r)) if grace < r => {}
                    (true, _) => return Ok(current),
                    (false, _) => {}
                }
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(object::now_plus(grace)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if rt.kind == "Namespace" {
                marked["status"] = json!({ "phase": "Terminating" });
            }
            if dry_run {
                return Ok(marked);
            }
            // The marked object goes to the store as is: deletion marks are the server's own.
            match self
                .store
                .update(&key, encode(&marked)?, kv.mod_revision)
                .await
            {
                Ok(kv) => return decode(&kv),
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(ApiError::from_store(rt, name, error)),
            }
        }
        Err(ApiError::modified(rt, name))
    }

    /// Creates the namespaces every cluster has, if they are missing.
    pub(crate) async fn bootstrap(&self) -> ApiResult<()> {
        let rt = self
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces are built in");
        for name in INITIAL_NAMESPACES {
            if self
                .store
                .get(&rt.key(None, Some(name)))
                .await
                .map_err(|e| ApiError::from_store(rt, name, e))?
                .is_none()
            {
                match self
                    .create_object(rt, None, json!({ "metadata": { "name": name } }))
                    .await
                {
                    Ok(_) => tracing::info!(namespace = name, "created namespace"),
                    Err(e) if e.reason == "AlreadyExists" => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The grace period of a delete: only pods bound to a node and still running get one
/// (their node stops them first); everything else goes at once.
fn grace_period(rt: &ResourceType, object: &Value, requested: Option<i64>) -> u64 {
    if rt.kind != "Pod" {
        return 0;
    }
    let bound = object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = object
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let default = object
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    requested.unwrap_or(default).max(0) as u64
}

/// A marked object whose finalizers are all gone and that has no grace period left.
fn deletion_is_due(rt: &ResourceType, object: &Value) -> bool {
    let meta = match object.get("metadata") {
        Some(meta) => meta,
        None => return false,
    };
    if meta.get("deletionTimestamp").is_none() || !string_list(meta.get("finalizers")).is_empty() {
        return false;
    }
    if rt.kind == "Namespace" {
        return object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    }
    meta.get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0
}

/// Resets what a client may not set at creation: a new object's status is the server's.
fn prepare_for_create(rt: &ResourceType, object: &mut Value) {
    let map = object.as_object_mut().expect("checked to be an object");
    match rt.kind {
        "Pod" => {
            map.insert("status".into(), json!({ "phase": "Pending" }));
        }
        // What Kubernetes answers for a new object: an empty status, with the fields
        // it always writes.
        "Deployment" | "Job" => {
            map.insert("status".into(), json!({}));
        }
        "ReplicaSet" => {
            map.insert("status".into(), json!({ "replicas": 0 }));
        }
        "Service" => {
            map.insert("status".into(), json!({ "loadBalancer": {} }));
        }
        _ => {}
    }
}

/// An update that leaves a Service's ClusterIP or a port's node port out keeps the
/// allocated one, as in Kubernetes (a PUT of the manifest as written must not read as a
/// change of address).
fn keep_cluster_ip(old: &Value, new: &mut Value) {
    keep_node_ports(old, new);
    let given = |v: &Value| {
        v.pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty())
            || v.pointer("/spec/clusterIPs")
                .and_then(Value::as_array)
                .is_some_and(|ips| !ips.is_empty())
    };
    let external =
        |v: &Value| v.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
    if given(new) || external(new) || external(old) {
        return;
    }
    if let (Some(spec), Some(old_spec)) = (
        new.get_mut("spec").and_then(Value::as_object_mut),
        old.get("spec").and_then(Value::as_object),
    ) {
        for field in ["clusterIP", "clusterIPs"] {
            if let Some(value) = old_spec.get(field) {
                spec.insert(field.into(), value.clone());
            }
        }
    }
}

fn keep_node_ports(old: &Value, new: &mut Value) {
    let Some(old_ports) = old.pointer("/spec/ports").and_then(Value::as_array) else {
        return;
    };
    let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return;
    };
    let protocol = |p: &Value| {
        p.get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string()
    };
    for port in ports
        .iter_mut()
        .filter(|p| p.get("nodePort").is_none_or(Value::is_null))
    {
        let previous = old_ports.iter().find(|o| {
            o.get("port") == port.get("port")
                && protocol(o) == protocol(port)
                && o.get("nodePort").is_some()
        });
        if let (Some(previous), Some(map)) = (previous, port.as_object_mut()) {
            map.insert("nodePort".into(), previous["nodePort"].clone());
        }
    }
}

fn set_field(object: &mut Value, field: &str, value: Option<Value>) {
    let map = object.as_object_mut().expect("objects are maps");
    match value {
        Some(value) if !value.is_null() => {
            map.insert(field.into(), value);
        }
        _ => {
            map.remove(field);
        }
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn encode_continue(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<String> {
    let invalid = || {
        ApiError::bad_request(format!(
            "continue: invalid value {token:?}: not a continue token from this list"
        ))
    };
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect();
    let key = String::from_utf8(bytes.map_err(|_| invalid())?).map_err(|_| invalid())?;
    if !key.starts_with(prefix) {
        return Err(invalid());
    }
    Ok(key)
}

/// Most operations one JSON patch may hold: Kubernetes' limit.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies a patch body to `current`, as its content type says.
///
/// `limit` (the body limit) bounds what a JSON patch's `copy` operations copy in all
/// (each copy can double the object: a few kilobytes of them would otherwise build an
/// object of gigabytes; Kubernetes' `AccumulatedCopySizeLimit` is the same guard) and
/// the patched object, which is refused if it is larger or deeper than the largest body
/// could decode to: a series of patches cannot grow an object past what the store and
/// every reader take back.
pub fn apply_patch(
    rt: &ResourceType,
    current: &Value,
    body: &[u8],
    format: BodyFormat,
    limit: usize,
) -> ApiResult<Value> {
    let mut patched = current.clone();
    match format {
        BodyFormat::MergePatch => {
            let patch = super::request::decode_body(body, format)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut patched, &patch);
        }
        BodyFormat::StrategicMergePatch => {
            let Value::Object(patch) = super::request::decode_body(body, format)? else {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            };
            let catalog = Catalog::get();
            // The kind's schema guides the merge; a subresource's object (a Scale) has
            // none of its own here, and merges its lists whole.
            let schema = catalog
                .kind(rt)
                .filter(|_| current.get("kind").and_then(Value::as_str) == Some(rt.kind));
            patched = strategic::apply(catalog, schema, patched, patch)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        BodyFormat::JsonPatch => {
            let patch = super::request::decode_body(body, format)?;
            let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
                ApiError::bad_request(format!("the request body is not a valid JSON patch: {e}"))
            })?;
            if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(ApiError::bad_request(format!(
                    "the JSON patch has {} operations, more than the limit of {MAX_JSON_PATCH_OPERATIONS}",
                    patch.0.len()
                )));
            }
            let mut copied = 0usize;
            for (index, operation) in patch.0.iter().enumerate() {
                if let json_patch::PatchOperation::Copy(copy) = operation
                    && let Some(source) = patched.pointer(copy.from.as_str())
                {
                    copied += bounded::measure(source, limit - copied).map_err(|_| {
                        ApiError::bad_request(format!(
                            "the JSON patch copies more than the limit of {limit} bytes in all (operation {index})"
                        ))
                    })?;
                }
                // One at a time, to count copies as they happen; `patched` is a copy, so
                // an operation that fails leaves nothing half-done behind.
                json_patch::patch_unsafe(&mut patched, std::slice::from_ref(operation)).map_err(
                    |e| {
                        ApiError::invalid(
                            rt,
                            name_of(current),
                            &[skiff_api::FieldError::invalid(
                                "patch",
                                format!(
                                    "operation '/{index}' failed at path '{}': {}",
                                    e.path, e.kind
                                ),
                                "the JSON patch could not be applied",
                            )],
                        )
                    },
                )?;
            }
        }
        BodyFormat::Json | BodyFormat::Yaml => {
            return Err(ApiError::unsupported_media_type(
                "a patch needs application/merge-patch+json, application/json-patch+json or application/strategic-merge-patch+json",
            ));
        }
        // An apply is not a patch of the object (see `ApiServer::apply_object`); on a
        // subresource that has no object of its own (a Scale) there is none.
        BodyFormat::ApplyPatch => {
            return Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml",
            ));
        }
    }
    if !patched.is_object() {
        return Err(ApiError::bad_request(
            "the patched object is not a JSON object",
        ));
    }
    bounded::measure(&patched, bounded::budget_for(limit))
        .map_err(|e| ApiError::bad_request(format!("the patched object is {e}")))?;
    Ok(patched)
}

/// The precondition a patched object carries: a resourceVersion the patch itself set.
pub fn patch_precondition(current: &Value, patched: &Value) -> ApiResult<Option<u64>> {
    let before = meta_str(current, "resourceVersion");
    match meta_str(patched, "resourceVersion") {
        Some(rv) if Some(rv) != before => Ok(Some(parse_revision(rv)?)),
        _ => Ok(None),
    }
}

/// The object a PUT body asks for, and the revision it names.
pub fn put_desired(body: &Value) -> ApiResult<Desired> {
    let precondition = match meta_str(body, "resourceVersion").filter(|s| !s.is_empty()) {
        Some(rv) => Some(parse_revision(rv)?),
        None => None,
    };
    Ok(Desired {
        object: body.clone(),
        precondition,
    })
}

/// Kubernetes' `Status` of success, as some verbs answer.
pub fn success_status(details: Option<Map<String, Value>>) -> Value {
    let mut status = json!({ "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": 200 });
    if let Some(details) = details {
        status["details"] = Value::Object(details);
    }
    status
}
