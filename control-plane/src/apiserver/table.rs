//! Server-side printing: the `Table` a client asks for with
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` (kubectl's `get`, `get -w`), and
//! the metadata-only `PartialObjectMetadata` forms, chosen from the `Accept` header as
//! Kubernetes negotiates them.
//!
//! A Table carries the columns kubectl prints for the kind and one row of cells per object,
//! computed as Kubernetes' printers compute them (`pkg/printers/internalversion`): kubectl
//! only lays them out. Every column is always sent; those of priority 1 are the ones
//! kubectl shows only with `-o wide`. Ages are relative to the moment of the answer.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use skiff_api::{apps, batch, coordination, core, rbac};

use super::error::{ApiError, ApiResult};
use super::registry::ResourceType;
use super::request::Params;

/// The API group of `Table` and `PartialObjectMetadata`.
const META_GROUP: &str = "meta.k8s.io";

/// Which read a representation is negotiated for: each allows its own forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// One object.
    Get,
    /// A collection.
    List,
    /// A watch: each event's object is converted on its own.
    Watch,
}

/// What a get, list or watch answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    /// The objects themselves: the default.
    Object,
    /// A `meta.k8s.io` Table of this version (`v1` or `v1beta1`).
    Table {
        version: &'static str,
        include: IncludeObject,
    },
    /// Only the objects' metadata: `PartialObjectMetadata`, or for a list
    /// `PartialObjectMetadataList`, of this `meta.k8s.io` version.
    Metadata { version: &'static str },
}

/// What each row of a Table carries besides its cells (`?includeObject=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing: `object` is null.
    None,
    /// The object's metadata as a `PartialObjectMetadata`: the default, and what kubectl
    /// reads its namespace and labels columns from.
    Metadata,
    /// The whole object.
    Object,
}

impl Representation {
    /// Picks the first form in the `Accept` header the server can give for `read`, in the
    /// client's order of preference; no header means the object. Forms the server cannot
    /// give (protobuf, YAML, unknown `as=` conversions) are passed over; when none is left
    /// the answer is 406, as Kubernetes answers.
    pub fn negotiate(headers: &HeaderMap, params: &Params, read: Read) -> ApiResult<Self> {
        let accept: Vec<&str> = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let accept = accept.join(",");
        if accept.trim().is_empty() {
            return Ok(Representation::Object);
        }
        for range in media_ranges(&accept) {
            if let Some(representation) = Self::from_range(&range, params, read)? {
                return Ok(representation);
            }
        }
        Err(ApiError::not_acceptable(&accept))
    }

    fn from_range(range: &MediaRange<'_>, params: &Params, read: Read) -> ApiResult<Option<Self>> {
        if !matches!(
            range.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        ) {
            return Ok(None);
        }
        let Some(target) = range.param("as") else {
            return Ok(Some(Representation::Object));
        };
        let version = match range.param("v") {
            Some("v1") => "v1",
            Some("v1beta1") => "v1beta1",
            _ => return Ok(None),
        };
        if range.param("g") != Some(META_GROUP) {
            return Ok(None);
        }
        Ok(match (target, read) {
            ("Table", _) => Some(Representation::Table {
                version,
                include: IncludeObject::parse(params.include_object.as_deref())?,
            }),
            ("PartialObjectMetadata", Read::Get | Read::Watch)
            | ("PartialObjectMetadataList", Read::List) => {
                Some(Representation::Metadata { version })
            }
            _ => None,
        })
    }

    /// One object (a get) in this representation.
    pub fn object(&self, rt: &ResourceType, object: Value, now: SystemTime) -> ApiResult<Value> {
        self.event_object(rt, object, true, now)
    }

    /// A watch event's object in this representation; a Table carries its column
    /// definitions only when `headers` is true (the first event), as in Kubernetes.
    pub fn event_object(
        &self,
        rt: &ResourceType,
        object: Value,
        headers: bool,
        now: SystemTime,
    ) -> ApiResult<Value> {
        match *self {
            Representation::Object => Ok(object),
            Representation::Metadata { version } => Ok(partial_metadata(&object, version)),
            Representation::Table { version, include } => {
                let metadata =
                    json!({ "resourceVersion": object.pointer("/metadata/resourceVersion") });
                let row = row(rt, object, include, version, now)?;
                table(rt, version, metadata, headers, vec![row])
            }
        }
    }

    /// A list (`kind: ...List`, `metadata`, `items`) in this representation.
    pub fn list(&self, rt: &ResourceType, list: Value, now: SystemTime) -> ApiResult<Value> {
        let Value::Object(mut list) = list else {
            return Err(ApiError::internal("printing a list", "not a map"));
        };
        let metadata = list.remove("metadata").unwrap_or_else(|| json!({}));
        let items = match list.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        match *self {
            Representation::Object => {
                list.insert("metadata".into(), metadata);
                list.insert("items".into(), Value::Array(items));
                Ok(Value::Object(list))
            }
            Representation::Metadata { version } => Ok(json!({
                "apiVersion": format!("{META_GROUP}/{version}"),
                "kind": "PartialObjectMetadataList",
                "metadata": metadata,
                "items": items.iter().map(|item| partial_metadata(item, version)).collect::<Vec<_>>(),
            })),
            Representation::Table { version, include } => {
                let rows = items
                    .into_iter()
                    .map(|item| row(rt, item, include, version, now))
                    .collect::<ApiResult<Vec<_>>>()?;
                table(rt, version, metadata, true, rows)
            }
        }
    }

    /// The object of a watch `BOOKMARK` at `resource_version`: a Table without rows, or a
    /// `PartialObjectMetadata` or object holding only the resourceVersion; annotated
    /// `k8s.io/initial-events-end` when it ends a watch-list's initial events.
    pub fn bookmark(
        &self,
        rt: &ResourceType,
        resource_version: u64,
        initial_events_end: bool,
    ) -> Value {
        let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        match *self {
            Representation::Object => {
                json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata })
            }
            Representation::Metadata { version } => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": format!("{META_GROUP}/{version}"),
                "metadata": metadata,
            }),
            Representation::Table { version, .. } => json!({
                "kind": "Table",
                "apiVersion": format!("{META_GROUP}/{version}"),
                "metadata": metadata,
                "columnDefinitions": null,
                "rows": [],
            }),
        }
    }
}

impl IncludeObject {
    fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// One media range of an `Accept` header: `type/subtype;name=value;q=0.5`.
struct MediaRange<'a> {
    /// `type/subtype`, lowercase.
    essence: String,
    params: Vec<(&'a str, &'a str)>,
    /// The client's preference, 0 to 1 (`q`); ranges of `q=0` are refused by the client.
    quality: f32,
}

impl MediaRange<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }
}

/// The ranges of an `Accept` header, most preferred first: by `q`, then the more specific
/// before wildcards, then in the order given (RFC 9110 section 12.5.1).
fn media_ranges(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params: Vec<(&str, &str)> = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                .collect();
            let quality = params
                .iter()
                .find(|(k, _)| *k == "q")
                .and_then(|(_, q)| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(MediaRange {
                essence,
                params,
                quality,
            })
        })
        .filter(|range| range.quality > 0.0)
        .collect();
    let wildcards = |range: &MediaRange<'_>| range.essence.matches('*').count();
    ranges.sort_by(|a, b| {
        b.quality
            .total_cmp(&a.quality)
            .then(wildcards(a).cmp(&wildcards(b)))
    });
    ranges
}

/// An object reduced to its kind and metadata.
fn partial_metadata(object: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("{META_GROUP}/{version}"),
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of `rows` under the kind's columns (none when `headers` is false).
fn table(
    rt: &ResourceType,
    version: &str,
    metadata: Value,
    headers: bool,
    rows: Vec<Row>,
) -> ApiResult<Value> {
    let table = Table {
        api_version: format!("{META_GROUP}/{version}"),
        kind: "Table",
        metadata,
        column_definitions: headers.then(|| columns(rt.kind)),
        rows,
    };
    serde_json::to_value(table).map_err(|e| ApiError::internal("encoding a table", e))
}

/// `meta.k8s.io/v1` `Table`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Table {
    api_version: String,
    kind: &'static str,
    metadata: Value,
    /// `null` on a watch's later events, as Kubernetes sends them.
    column_definitions: Option<&'static [Column]>,
    rows: Vec<Row>,
}

/// A Table's column: `TableColumnDefinition`.
#[derive(Serialize)]
struct Column {
    name: &'static str,
    /// `string`, `integer` or `date`: how a client may sort the cells.
    #[serde(rename = "type")]
    type_: &'static str,
    /// `name` for the column holding the object's name.
    format: &'static str,
    description: &'static str,
    /// 0: always shown; 1: shown by kubectl with `-o wide` only.
    priority: i32,
}

/// A Table's row: `TableRow`.
#[derive(Serialize)]
struct Row {
    cells: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Value>,
    /// The object, its metadata or `null`, as `includeObject` asks.
    object: Value,
}

/// The row of `object`, carrying what `include` asks for.
fn row(
    rt: &ResourceType,
    object: Value,
    include: IncludeObject,
    version: &str,
    now: SystemTime,
) -> ApiResult<Row> {
    let (cells, conditions) = cells(rt, &object, now)?;
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_metadata(&object, version),
        IncludeObject::Object => object,
    };
    Ok(Row {
        cells,
        conditions,
        object,
    })
}

const fn column(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..column(name, type_, description)
    }
}

const NAME: Column = Column {
    format: "name",
    ..column(
        "Name",
        "string",
        "The object's name, unique within its namespace.",
    )
};
const AGE: Column = column("Age", "string", "How long ago the object was created.");
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "The names of the containers of the pod template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "The images of the containers of the pod template.",
);
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "The label selector of the pods this object manages.",
);

const POD_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Ready",
        "string",
        "Ready containers out of all containers of the pod.",
    ),
    column(
        "Status",
        "string",
        "The pod's state, from its phase and its containers' states.",
    ),
    column(
        "Restarts",
        "string",
        "How often the containers restarted, and when the last one did.",
    ),
    AGE,
    wide("IP", "string", "The pod's IP address."),
    wide("Node", "string", "The node the pod is bound to."),
    wide(
        "Nominated Node",
        "string",
        "The node the scheduler nominated for the pod after preemption.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "Readiness gates that hold, out of all the pod declares.",
    ),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Ready pods out of the desired replicas."),
    column("Up-to-date", "integer", "Pods of the current pod template."),
    column(
        "Available",
        "integer",
        "Pods ready for at least minReadySeconds.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "The number of pods wanted."),
    column("Current", "integer", "The number of pods that exist."),
    column("Ready", "integer", "The number of pods that are ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The job's state."),
    column(
        "Completions",
        "string",
        "Pods that succeeded out of the completions wanted.",
    ),
    column(
        "Duration",
        "string",
        "How long the job ran, or has been running.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "How the service is exposed."),
    column(
        "Cluster-IP",
        "string",
        "The service's virtual IP inside the cluster.",
    ),
    column(
        "External-IP",
        "string",
        "Addresses the service is reachable at from outside the cluster.",
    ),
    column(
        "Port(s)",
        "string",
        "The service's ports, with their node ports.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "The labels of the pods the service sends traffic to.",
    ),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Endpoints",
        "string",
        "The ready addresses and ports behind the service.",
    ),
    AGE,
];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Status",
        "string",
        "The node's readiness, and whether it takes new pods.",
    ),
    column("Roles", "string", "The roles the node's labels give it."),
    AGE,
    column("Version", "string", "The version of the node agent."),
    wide("Internal-IP", "string", "The node's internal address."),
    wide("External-IP", "string", "The node's external address."),
    wide(
        "OS-Image",
        "string",
        "The operating system the node reports.",
    ),
    wide(
        "Kernel-Version",
        "string",
        "The kernel version the node reports.",
    ),
    wide(
        "Container-Runtime",
        "string",
        "The runtime that runs the node's containers.",
    ),
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Status",
        "string",
        "The namespace's phase: Active or Terminating.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    column("Data", "integer", "The number of keys in the config map."),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "The type of the secret."),
    column("Data", "integer", "The number of keys in the secret."),
    AGE,
];

const EVENT_COLUMNS: &[Column] = &[
    column("Last Seen", "string", "When the event last happened."),
    column("Type", "string", "Normal or Warning."),
    column("Reason", "string", "Why the event happened, in one word."),
    column("Object", "string", "The object the event is about."),
    wide(
        "Subobject",
        "string",
        "The part of the object the event is about.",
    ),
    wide("Source", "string", "The component that reported the event."),
    column("Message", "string", "What happened."),
    wide("First Seen", "string", "When the event first happened."),
    wide("Count", "string", "How often the event happened."),
    Column {
        format: "name",
        ..wide("Name", "string", "The event's name.")
    },
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    column("Holder", "string", "Who holds the lease."),
    AGE,
];

const ROLE_COLUMNS: &[Column] = &[
    NAME,
    column("Created At", "date", "When the role was created."),
];

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    column("Role", "string", "The role the binding grants."),
    AGE,
    wide("Users", "string", "The users the role is granted to."),
    wide("Groups", "string", "The groups the role is granted to."),
    wide(
        "ServiceAccounts",
        "string",
        "The service accounts the role is granted to.",
    ),
];

/// The columns of `kind`, as Kubernetes' printers define them.
fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => POD_COLUMNS,
        "Deployment" => DEPLOYMENT_COLUMNS,
        "ReplicaSet" => REPLICA_SET_COLUMNS,
        "Job" => JOB_COLUMNS,
        "Service" => SERVICE_COLUMNS,
        "Endpoints" => ENDPOINTS_COLUMNS,
        "Node" => NODE_COLUMNS,
        "Namespace" => NAMESPACE_COLUMNS,
        "ConfigMap" => CONFIG_MAP_COLUMNS,
        "Secret" => SECRET_COLUMNS,
        "Event" => EVENT_COLUMNS,
        "Lease" => LEASE_COLUMNS,
        "Role" | "ClusterRole" => ROLE_COLUMNS,
        "RoleBinding" | "ClusterRoleBinding" => ROLE_BINDING_COLUMNS,
        // Kinds without a printer of their own, as custom resources without printer columns.
        _ => &[NAME, AGE],
    }
}

/// The cells of `object`'s row, and the row's conditions, under [`columns`] of its kind.
fn cells(
    rt: &ResourceType,
    object: &Value,
    now: SystemTime,
) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    let row = match rt.kind {
        "Pod" => return Ok(pod(&typed(rt, object)?, now)),
        "Deployment" => deployment(&typed(rt, object)?, now),
        "ReplicaSet" => replica_set(&typed(rt, object)?, now),
        "Job" => job(&typed(rt, object)?, now),
        "Service" => service(&typed(rt, object)?, now),
        "Endpoints" => endpoints(&typed(rt, object)?, now),
        "Node" => node(&typed(rt, object)?, now),
        "Namespace" => {
            let namespace: core::Namespace = typed(rt, object)?;
            let phase = namespace.status.phase.clone().unwrap_or_default();
            vec![
                name(&namespace.metadata),
                phase.into(),
                age(&namespace.metadata, now),
            ]
        }
        "ConfigMap" => {
            let map: core::ConfigMap = typed(rt, object)?;
            let keys = map.data.len() + map.binary_data.len();
            vec![name(&map.metadata), keys.into(), age(&map.metadata, now)]
        }
        "Secret" => {
            let secret: core::Secret = typed(rt, object)?;
            vec![
                name(&secret.metadata),
                secret.type_.clone().unwrap_or_default().into(),
                secret.data.len().into(),
                age(&secret.metadata, now),
            ]
        }
        "Event" => event(&typed(rt, object)?, now),
        "Lease" => {
            let lease: coordination::Lease = typed(rt, object)?;
            let holder = lease.spec.holder_identity.clone().unwrap_or_default();
            vec![
                name(&lease.metadata),
                holder.into(),
                age(&lease.metadata, now),
            ]
        }
        "Role" => {
            let role: rbac::Role = typed(rt, object)?;
            created_at(&role.metadata)
        }
        "ClusterRole" => {
            let role: rbac::ClusterRole = typed(rt, object)?;
            created_at(&role.metadata)
        }
        "RoleBinding" => {
            let binding: rbac::RoleBinding = typed(rt, object)?;
            role_binding(&binding.metadata, &binding.role_ref, &binding.subjects, now)
        }
        "ClusterRoleBinding" => {
            let binding: rbac::ClusterRoleBinding = typed(rt, object)?;
            role_binding(&binding.metadata, &binding.role_ref, &binding.subjects, now)
        }
        _ => {
            let metadata = object
                .get("metadata")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| ApiError::internal("printing a table row", e))?
                .unwrap_or_default();
            vec![name(&metadata), age(&metadata, now)]
        }
    };
    Ok((row, Vec::new()))
}

/// The stored object as its Rust type; stored objects always decode, as they were
/// normalized through that type on write.
fn typed<T: DeserializeOwned>(rt: &ResourceType, object: &Value) -> ApiResult<T> {
    T::deserialize(object).map_err(|e| {
        ApiError::internal(
            &format!("printing a table row of {}", rt.qualified_plural()),
            e,
        )
    })
}

fn name(metadata: &skiff_api::ObjectMeta) -> Value {
    metadata.name().into()
}

fn age(metadata: &skiff_api::ObjectMeta, now: SystemTime) -> Value {
    since(metadata.creation_timestamp.as_deref(), now).into()
}

/// A Role's row: its name and creation time, as Kubernetes prints roles.
fn created_at(metadata: &skiff_api::ObjectMeta) -> Vec<Value> {
    vec![
        name(metadata),
        metadata
            .creation_timestamp
            .clone()
            .unwrap_or_default()
            .into(),
    ]
}

/// `printPod`: readiness, the status a person would call it, restarts and, wide, where it runs.
fn pod(pod: &core::Pod, now: SystemTime) -> (Vec<Value>, Vec<Value>) {
    let status = &pod.status;
    let phase = status.phase.as_deref().unwrap_or("");
    let mut reason = match status.reason.as_deref() {
        Some(reason) if !reason.is_empty() => reason.to_string(),
        _ => phase.to_string(),
    };
    if status
        .conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".into();
    }

    let mut restarts = Restarts::default();
    let mut initializing = false;
    for (i, container) in status.init_container_statuses.iter().enumerate() {
        restarts.count(container);
        let state = &container.state;
        match (&state.terminated, &state.waiting) {
            (Some(terminated), _) if terminated.exit_code == 0 => continue,
            (Some(terminated), _) => {
                reason = match terminated.reason.as_deref() {
                    Some(why) if !why.is_empty() => format!("Init:{why}"),
                    _ => match terminated.signal.filter(|s| *s != 0) {
                        Some(signal) => format!("Init:Signal:{signal}"),
                        None => format!("Init:ExitCode:{}", terminated.exit_code),
                    },
                };
            }
            (None, Some(waiting))
                if waiting
                    .reason
                    .as_deref()
                    .is_some_and(|why| !why.is_empty() && why != "PodInitializing") =>
            {
                reason = format!("Init:{}", waiting.reason.as_deref().unwrap_or(""));
            }
            _ => reason = format!("Init:{i}/{}", pod.spec.init_containers.len()),
        }
        initializing = true;
        break;
    }

    let mut ready = 0;
    let holds = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    if !initializing || holds("Initialized") {
        // Restarts of init containers that finished count no more once the pod is initialized.
        restarts = Restarts::default();
        let mut running = false;
        for container in status.container_statuses.iter().rev() {
            restarts.count(container);
            let state = &container.state;
            let waiting = state.waiting.as_ref().and_then(|w| w.reason.as_deref());
            let terminated = state.terminated.as_ref();
            if let Some(why) = waiting.filter(|why| !why.is_empty()) {
                reason = why.to_string();
            } else if let Some(terminated) = terminated {
                reason = match terminated.reason.as_deref() {
                    Some(why) if !why.is_empty() => why.to_string(),
                    _ => match terminated.signal.filter(|s| *s != 0) {
                        Some(signal) => format!("Signal:{signal}"),
                        None => format!("ExitCode:{}", terminated.exit_code),
                    },
                };
            } else if container.ready && state.running.is_some() {
                running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not Completed yet.
        if reason == "Completed" && running {
            reason = if holds("Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match restarts.last {
        Some(last) if restarts.total != 0 => {
            format!("{} ({} ago)", restarts.total, since_time(last, now))
        }
        _ => restarts.total.to_string(),
    };
    let ip = status
        .pod_ips
        .first()
        .map(|ip| ip.ip.clone())
        .or_else(|| status.pod_ip.clone());
    let conditions = match phase {
        "Succeeded" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        })],
        "Failed" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed.",
        })],
        _ => Vec::new(),
    };
    let cells = vec![
        name(&pod.metadata),
        format!("{ready}/{}", pod.spec.containers.len()).into(),
        reason.into(),
        restarts.into(),
        age(&pod.metadata, now),
        or_none(ip).into(),
        or_none(pod.spec.node_name.clone()).into(),
        or_none(status.nominated_node_name.clone()).into(),
        // skiff's pods declare no readiness gates.
        "<none>".into(),
    ];
    (cells, conditions)
}

/// A pod's restarts, and when the last container that restarted ended.
#[derive(Default)]
struct Restarts {
    total: i32,
    last: Option<SystemTime>,
}

impl Restarts {
    fn count(&mut self, container: &core::ContainerStatus) {
        self.total += container.restart_count;
        let ended = container
            .last_state
            .terminated
            .as_ref()
            .and_then(|t| timestamp(t.finished_at.as_deref()));
        self.last = self.last.max(ended);
    }
}

fn deployment(deployment: &apps::Deployment, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&deployment.spec, &deployment.status);
    let mut cells = vec![
        name(&deployment.metadata),
        format!("{}/{}", status.ready_replicas, spec.replicas.unwrap_or(1)).into(),
        status.updated_replicas.into(),
        status.available_replicas.into(),
        age(&deployment.metadata, now),
    ];
    cells.extend(template_cells(&spec.template, spec.selector.as_ref()));
    cells
}

fn replica_set(set: &apps::ReplicaSet, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&set.spec, &set.status);
    let mut cells = vec![
        name(&set.metadata),
        spec.replicas.unwrap_or(1).into(),
        status.replicas.into(),
        status.ready_replicas.into(),
        age(&set.metadata, now),
    ];
    cells.extend(template_cells(&spec.template, spec.selector.as_ref()));
    cells
}

fn job(job: &batch::Job, now: SystemTime) -> Vec<Value> {
    let (spec, status) = (&job.spec, &job.status);
    let holds = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    let state = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if holds("Suspended") {
        "Suspended"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = status.succeeded;
    let completions = match (spec.completions, spec.parallelism) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, Some(parallelism)) if parallelism > 1 => {
            format!("{succeeded}/1 of {parallelism}")
        }
        (None, _) => format!("{succeeded}/1"),
    };
    let started = timestamp(status.start_time.as_deref());
    let duration = match (started, timestamp(status.completion_time.as_deref())) {
        (None, _) => String::new(),
        (Some(start), None) => since_time(start, now),
        (Some(start), Some(end)) => human_duration(end.duration_since(start).unwrap_or_default()),
    };
    let mut cells = vec![
        name(&job.metadata),
        state.into(),
        completions.into(),
        duration.into(),
        age(&job.metadata, now),
    ];
    cells.extend(template_cells(&spec.template, spec.selector.as_ref()));
    cells
}

/// The wide cells of a kind with a pod template: containers, images, selector.
fn template_cells(
    template: &core::PodTemplateSpec,
    selector: Option<&skiff_api::LabelSelector>,
) -> [Value; 3] {
    let containers = &template.spec.containers;
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    let selector = selector.map(ToString::to_string).unwrap_or_default();
    [
        names.join(",").into(),
        images.join(",").into(),
        selector.into(),
    ]
}

fn service(service: &core::Service, now: SystemTime) -> Vec<Value> {
    let spec = &service.spec;
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let cluster_ip = spec
        .cluster_ips
        .first()
        .cloned()
        .or_else(|| spec.cluster_ip.clone());
    let ingress: Vec<String> = service
        .status
        .load_balancer
        .ingress
        .iter()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let external = match type_ {
        "ClusterIP" | "NodePort" if spec.external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => spec.external_ips.join(","),
        "LoadBalancer" => {
            let all: Vec<String> = ingress
                .into_iter()
                .chain(spec.external_ips.iter().cloned())
                .collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = spec
        .ports
        .iter()
        .map(|port| {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            match port.node_port.filter(|p| *p > 0) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", port.port),
                None => format!("{}/{protocol}", port.port),
            }
        })
        .collect();
    vec![
        name(&service.metadata),
        type_.into(),
        or_none(cluster_ip).into(),
        external.into(),
        or_none(Some(ports.join(","))).into(),
        age(&service.metadata, now),
        labels(&spec.selector).into(),
    ]
}

/// `formatEndpoints`: the first three ready `ip:port`s, then how many more there are.
fn endpoints(endpoints: &core::Endpoints, now: SystemTime) -> Vec<Value> {
    const SHOWN: usize = 3;
    let mut all = Vec::new();
    for subset in &endpoints.subsets {
        if subset.ports.is_empty() {
            // A headless service without ports: addresses only.
            all.extend(subset.addresses.iter().map(|a| a.ip.clone()));
        }
        for port in &subset.ports {
            all.extend(subset.addresses.iter().map(|a| match a.ip.contains(':') {
                true => format!("[{}]:{}", a.ip, port.port),
                false => format!("{}:{}", a.ip, port.port),
            }));
        }
    }
    let text = if endpoints.subsets.is_empty() {
        "<none>".to_string()
    } else if all.len() > SHOWN {
        format!("{} + {} more...", all[..SHOWN].join(","), all.len() - SHOWN)
    } else {
        all.join(",")
    };
    vec![
        name(&endpoints.metadata),
        text.into(),
        age(&endpoints.metadata, now),
    ]
}

fn node(node: &core::Node, now: SystemTime) -> Vec<Value> {
    let mut status: Vec<&str> = node
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            if c.status == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .into_iter()
        .collect();
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.spec.unschedulable {
        status.push("SchedulingDisabled");
    }
    // `node-role.kubernetes.io/ROLE` labels, and the older `kubernetes.io/role: ROLE`.
    let mut roles: Vec<&str> = node
        .metadata
        .labels
        .iter()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => Some(role),
                Some(_) => None,
                None if key == "kubernetes.io/role" && !value.is_empty() => Some(value.as_str()),
                None => None,
            },
        )
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |type_: &str| {
        node.status
            .addresses
            .iter()
            .find(|a| a.type_ == type_)
            .map(|a| a.address.clone())
    };
    let info = &node.status.node_info;
    let unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        name(&node.metadata),
        status.join(",").into(),
        or_none(Some(roles.join(","))).into(),
        age(&node.metadata, now),
        info.kubelet_version.clone().into(),
        or_none(address("InternalIP")).into(),
        or_none(address("ExternalIP")).into(),
        unknown(&info.os_image).into(),
        unknown(&info.kernel_version).into(),
        unknown(&info.container_runtime_version).into(),
    ]
}

fn event(event: &core::Event, now: SystemTime) -> Vec<Value> {
    let first_seen = match event.first_timestamp.as_deref() {
        Some(first) => since(Some(first), now),
        None => since(event.event_time.as_deref(), now),
    };
    let mut last_seen = match event.last_timestamp.as_deref() {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = event.count.unwrap_or(0);
    if let Some(series) = &event.series {
        last_seen = since(series.last_observed_time.as_deref(), now);
        count = series.count.unwrap_or(0);
    } else if count == 0 {
        // Events of the events.k8s.io form carry no count when they happened once.
        count = 1;
    }
    let involved = &event.involved_object;
    let kind = involved.kind.as_deref().unwrap_or("").to_lowercase();
    let object = match involved.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let first_non_empty = |a: &Option<String>, b: &Option<String>| {
        a.iter()
            .chain(b.iter())
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_default()
    };
    let component = first_non_empty(&event.source.component, &event.reporting_component);
    let instance = first_non_empty(&event.source.host, &event.reporting_instance);
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen.into(),
        event.type_.clone().unwrap_or_default().into(),
        event.reason.clone().unwrap_or_default().into(),
        object.into(),
        involved.field_path.clone().unwrap_or_default().into(),
        source.into(),
        event.message.as_deref().unwrap_or("").trim().into(),
        first_seen.into(),
        i64::from(count).into(),
        name(&event.metadata),
    ]
}

fn role_binding(
    metadata: &skiff_api::ObjectMeta,
    role: &rbac::RoleRef,
    subjects: &[rbac::Subject],
    now: SystemTime,
) -> Vec<Value> {
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", s.namespace, s.name),
                _ => s.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        name(metadata),
        format!("{}/{}", role.kind, role.name).into(),
        age(metadata, now),
        of_kind("User").into(),
        of_kind("Group").into(),
        of_kind("ServiceAccount").into(),
    ]
}

/// `key=value` pairs, or `<none>`, as Kubernetes' `FormatLabels`.
fn labels(map: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    or_none(Some(pairs.join(",")))
}

fn or_none(value: Option<String>) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

fn timestamp(value: Option<&str>) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(value?).ok()
}

/// How long before `now` a timestamp was, as kubectl shows ages; `<unknown>` without one.
fn since(value: Option<&str>, now: SystemTime) -> String {
    match timestamp(value) {
        Some(time) => since_time(time, now),
        None => "<unknown>".into(),
    }
}

fn since_time(time: SystemTime, now: SystemTime) -> String {
    match now.duration_since(time) {
        Ok(elapsed) => human_duration(elapsed),
        // Up to a second ahead is clock skew between machines, read as now.
        Err(ahead) if ahead.duration() < Duration::from_secs(2) => "0s".into(),
        Err(_) => "<invalid>".into(),
    }
}

/// Kubernetes' `HumanDuration` of `elapsed`.
fn human_duration(elapsed: Duration) -> String {
    skiff_api::meta::human_duration(elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::apiserver::registry::Registry;

    /// 2030-01-01T00:00:00Z, the moment every test prints at.
    fn now() -> SystemTime {
        timestamp(Some("2030-01-01T00:00:00Z")).unwrap()
    }

    fn rt<'r>(registry: &'r Registry, kind: &str) -> &'r ResourceType {
        registry.types.iter().find(|t| t.kind == kind).unwrap()
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn negotiate(value: &str, read: Read) -> ApiResult<Representation> {
        Representation::negotiate(&accept(value), &Params::default(), read)
    }

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectl_get_gets_a_v1_table_and_typed_clients_get_json() {
        let table = Representation::Table {
            version: "v1",
            include: IncludeObject::Metadata,
        };
        assert_eq!(negotiate(KUBECTL_GET, Read::List).unwrap(), table);
        assert_eq!(negotiate(KUBECTL_GET, Read::Watch).unwrap(), table);
        let typed = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(negotiate(typed, Read::Get).unwrap(), Representation::Object);
        assert_eq!(
            Representation::negotiate(&HeaderMap::new(), &Params::default(), Read::Get).unwrap(),
            Representation::Object
        );
        for any in ["*/*", "application/*", "application/json; charset=utf-8"] {
            assert_eq!(
                negotiate(any, Read::List).unwrap(),
                Representation::Object,
                "{any}"
            );
        }
    }

    #[test]
    fn preference_follows_q_then_order() {
        let header = "application/json;q=0.5,application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(
            negotiate(header, Read::List).unwrap(),
            Representation::Table {
                version: "v1beta1",
                include: IncludeObject::Metadata
            }
        );
        assert_eq!(
            negotiate(
                "*/*,application/json;as=Table;v=v1;g=meta.k8s.io",
                Read::Get
            )
            .unwrap(),
            Representation::Table {
                version: "v1",
                include: IncludeObject::Metadata
            },
            "the specific range before the wildcard"
        );
    }

    #[test]
    fn unknown_conversions_are_passed_over_and_nothing_acceptable_is_406() {
        let error = negotiate("application/vnd.kubernetes.protobuf", Read::Get).unwrap_err();
        assert_eq!(error.code.as_u16(), 406);
        assert_eq!(error.reason, "NotAcceptable");
        let error =
            negotiate("application/json;as=Table;v=v2;g=meta.k8s.io", Read::Get).unwrap_err();
        assert_eq!(error.code.as_u16(), 406);
        let error = negotiate("application/json;as=Table;v=v1;g=apps", Read::Get).unwrap_err();
        assert_eq!(error.code.as_u16(), 406);
        let error =
            negotiate("application/json;as=Other;v=v1;g=meta.k8s.io", Read::Get).unwrap_err();
        assert_eq!(error.code.as_u16(), 406);
        let error = negotiate("text/html", Read::Get).unwrap_err();
        assert_eq!(error.code.as_u16(), 406);
        // A metadata list for a list, a single metadata object for a get or watch.
        let list = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
        let one = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
        let metadata = Representation::Metadata { version: "v1" };
        assert_eq!(negotiate(list, Read::List).unwrap(), metadata);
        assert_eq!(negotiate(one, Read::Get).unwrap(), metadata);
        assert_eq!(negotiate(one, Read::Watch).unwrap(), metadata);
        assert_eq!(negotiate(one, Read::List).unwrap_err().code.as_u16(), 406);
        assert_eq!(negotiate(list, Read::Get).unwrap_err().code.as_u16(), 406);
    }

    #[test]
    fn include_object_is_validated_and_shapes_the_rows() {
        let params = |value: &str| Params {
            include_object: Some(value.into()),
            ..Params::default()
        };
        let headers = accept(KUBECTL_GET);
        let error = Representation::negotiate(&headers, &params("All"), Read::List).unwrap_err();
        assert_eq!(error.code.as_u16(), 400);
        assert!(error.message.contains("includeObject"), "{}", error.message);

        let registry = Registry::builtin();
        let rt = rt(&registry, "ConfigMap");
        let map = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings", "namespace": "default", "resourceVersion": "7",
                          "labels": { "app": "web" }, "creationTimestamp": "2029-12-31T23:59:00Z" },
            "data": { "a": "1", "b": "2" }, "binaryData": { "c": "AA==" } });
        for (include, expected) in [
            ("None", Value::Null),
            ("Object", map.clone()),
            (
                "Metadata",
                json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": map["metadata"].clone() }),
            ),
        ] {
            let representation =
                Representation::negotiate(&headers, &params(include), Read::Get).unwrap();
            let table = representation.object(rt, map.clone(), now()).unwrap();
            assert_eq!(table["kind"], "Table");
            assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
            assert_eq!(table["metadata"]["resourceVersion"], "7");
            assert_eq!(table["rows"][0]["cells"], json!(["settings", 3, "60s"]));
            assert_eq!(table["rows"][0]["object"], expected, "{include}");
        }
    }

    fn cells_of(kind: &str, object: Value) -> Vec<Value> {
        let registry = Registry::builtin();
        let rt = rt(&registry, kind);
        let (cells, _) = cells(rt, &object, now()).unwrap();
        assert_eq!(
            cells.len(),
            columns(kind).len(),
            "{kind}: one cell per column"
        );
        cells
    }

    #[test]
    fn every_kind_has_one_cell_per_column_even_when_empty() {
        for rt in &Registry::builtin().types {
            let object = json!({ "metadata": { "name": "x" } });
            let (cells, _) = cells(rt, &object, now()).unwrap();
            assert_eq!(cells.len(), columns(rt.kind).len(), "{}", rt.kind);
            let name_columns = columns(rt.kind).iter().filter(|c| c.format == "name");
            assert_eq!(name_columns.count(), 1, "{}: one name column", rt.kind);
        }
    }

    #[test]
    fn pods_read_as_kubectl_prints_them() {
        let running = json!({
            "metadata": { "name": "web", "creationTimestamp": "2029-12-31T23:55:00Z" },
            "spec": { "containers": [{ "name": "a" }, { "name": "b" }], "nodeName": "node-0" },
            "status": { "phase": "Running", "podIP": "10.244.0.5", "podIPs": [{ "ip": "10.244.0.5" }],
                "conditions": [{ "type": "Ready", "status": "False" }],
                "containerStatuses": [
                    { "name": "a", "ready": true, "restartCount": 1, "state": { "running": {} },
                      "lastState": { "terminated": { "exitCode": 1, "finishedAt": "2029-12-31T23:58:00Z" } } },
                    { "name": "b", "ready": false, "restartCount": 3,
                      "state": { "waiting": { "reason": "CrashLoopBackOff" } } },
                ] },
        });
        assert_eq!(
            cells_of("Pod", running),
            json!([
                "web",
                "1/2",
                "CrashLoopBackOff",
                "4 (2m ago)",
                "5m",
                "10.244.0.5",
                "node-0",
                "<none>",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );

        let pending = json!({
            "metadata": { "name": "p", "creationTimestamp": "2029-12-31T23:59:30Z" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Pending" },
        });
        assert_eq!(
            cells_of("Pod", pending)[..5],
            json!(["p", "0/1", "Pending", "0", "30s"])
                .as_array()
                .unwrap()[..]
        );

        let exited = json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Failed", "containerStatuses": [
                { "name": "a", "state": { "terminated": { "exitCode": 3 } } }] },
        });
        let registry = Registry::builtin();
        let (cells, conditions) = cells(rt(&registry, "Pod"), &exited, now()).unwrap();
        assert_eq!(cells[2], "ExitCode:3");
        assert_eq!(cells[4], "<unknown>", "no creationTimestamp");
        assert_eq!(conditions[0]["reason"], "Failed");

        let initializing = json!({
            "metadata": { "name": "p" },
            "spec": { "initContainers": [{ "name": "i" }, { "name": "j" }], "containers": [{ "name": "a" }] },
            "status": { "phase": "Pending", "initContainerStatuses": [
                { "name": "i", "state": { "terminated": { "exitCode": 0, "reason": "Completed" } } },
                { "name": "j", "state": { "running": {} } }] },
        });
        assert_eq!(cells_of("Pod", initializing)[2], "Init:1/2");

        let deleting = json!({
            "metadata": { "name": "p", "deletionTimestamp": "2030-01-01T00:00:30Z" },
            "spec": { "containers": [{ "name": "a" }] },
            "status": { "phase": "Running", "containerStatuses": [
                { "name": "a", "ready": true, "state": { "running": {} } }] },
        });
        assert_eq!(
            cells_of("Pod", deleting)[1..3],
            [json!("1/1"), json!("Terminating")]
        );
    }

    #[test]
    fn workloads_show_replicas_and_their_template() {
        let template = json!({ "spec": { "containers": [
            { "name": "main", "image": "ticker:v1" }, { "name": "side", "image": "log.wasm" }] } });
        let deployment = json!({
            "metadata": { "name": "web", "creationTimestamp": "2029-12-31T20:00:00Z" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } }, "template": template },
            "status": { "replicas": 3, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1 },
        });
        assert_eq!(
            cells_of("Deployment", deployment),
            [
                json!("web"),
                json!("1/3"),
                json!(2),
                json!(1),
                json!("4h"),
                json!("main,side"),
                json!("ticker:v1,log.wasm"),
                json!("app=web")
            ]
        );
        let set = json!({
            "metadata": { "name": "web-1" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } }, "template": template },
            "status": { "replicas": 2, "readyReplicas": 1 },
        });
        assert_eq!(
            cells_of("ReplicaSet", set)[1..4],
            [json!(3), json!(2), json!(1)]
        );
        let job = json!({
            "metadata": { "name": "pi" },
            "spec": { "parallelism": 3, "template": template },
            "status": { "succeeded": 1, "startTime": "2029-12-31T23:50:00Z",
                        "completionTime": "2029-12-31T23:55:30Z",
                        "conditions": [{ "type": "Complete", "status": "True" }] },
        });
        assert_eq!(
            cells_of("Job", job)[1..4],
            [json!("Complete"), json!("1/1 of 3"), json!("5m30s")]
        );
    }

    #[test]
    fn services_endpoints_and_nodes() {
        let service = json!({
            "metadata": { "name": "web" },
            "spec": { "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                      "selector": { "app": "web", "tier": "front" },
                      "ports": [{ "port": 80, "protocol": "TCP", "nodePort": 30080 }, { "port": 53, "protocol": "UDP" }] },
        });
        assert_eq!(
            cells_of("Service", service)[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        let headless = json!({ "metadata": { "name": "db" },
            "spec": { "type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"] } });
        let cells = cells_of("Service", headless);
        assert_eq!(
            cells[2..5],
            [json!("None"), json!("<none>"), json!("<none>")]
        );
        assert_eq!(cells[6], "<none>", "no selector");

        let addresses: Vec<Value> = (1..=5)
            .map(|i| json!({ "ip": format!("10.244.0.{i}") }))
            .collect();
        let endpoints = json!({ "metadata": { "name": "web" },
            "subsets": [{ "addresses": addresses, "ports": [{ "port": 8080 }] }] });
        assert_eq!(
            cells_of("Endpoints", endpoints)[1],
            "10.244.0.1:8080,10.244.0.2:8080,10.244.0.3:8080 + 2 more..."
        );
        let empty = json!({ "metadata": { "name": "web" } });
        assert_eq!(cells_of("Endpoints", empty)[1], "<none>");

        let node = json!({
            "metadata": { "name": "node-0", "labels": { "node-role.kubernetes.io/control-plane": "" } },
            "spec": { "unschedulable": true },
            "status": { "conditions": [{ "type": "Ready", "status": "Unknown" }],
                        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
                        "nodeInfo": { "kubeletVersion": "v1.31.0+skiff", "osImage": "skiff" } },
        });
        let cells = cells_of("Node", node);
        assert_eq!(
            cells[1..3],
            [json!("NotReady,SchedulingDisabled"), json!("control-plane")]
        );
        assert_eq!(
            cells[4..],
            [
                json!("v1.31.0+skiff"),
                json!("127.0.0.1"),
                json!("<none>"),
                json!("skiff"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn events_and_the_rest() {
        let event = json!({
            "metadata": { "name": "web.1" },
            "involvedObject": { "kind": "Deployment", "name": "web", "fieldPath": "spec" },
            "reason": "ScalingReplicaSet", "message": " Scaled up to 3 \n", "type": "Normal",
            "source": { "component": "deployment-controller" },
            "firstTimestamp": "2029-12-31T23:00:00Z", "lastTimestamp": "2029-12-31T23:59:00Z", "count": 4,
        });
        assert_eq!(
            cells_of("Event", event),
            [
                json!("60s"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!("spec"),
                json!("deployment-controller"),
                json!("Scaled up to 3"),
                json!("60m"),
                json!(4),
                json!("web.1")
            ]
        );
        let secret =
            json!({ "metadata": { "name": "s" }, "type": "Opaque", "data": { "k": "dg==" } });
        assert_eq!(
            cells_of("Secret", secret)[1..3],
            [json!("Opaque"), json!(1)]
        );
        let lease =
            json!({ "metadata": { "name": "node-0" }, "spec": { "holderIdentity": "node-0" } });
        assert_eq!(cells_of("Lease", lease)[1], "node-0");
        let binding = json!({ "metadata": { "name": "b" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
            "subjects": [{ "kind": "User", "name": "ann" }, { "kind": "Group", "name": "devs" },
                         { "kind": "User", "name": "bob" }] });
        assert_eq!(
            cells_of("ClusterRoleBinding", binding)[1..],
            [
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("ann, bob"),
                json!("devs"),
                json!("")
            ]
        );
        let role =
            json!({ "metadata": { "name": "r", "creationTimestamp": "2029-01-01T00:00:00Z" } });
        assert_eq!(cells_of("Role", role)[1], "2029-01-01T00:00:00Z");
    }

    #[test]
    fn lists_keep_their_metadata_and_watches_send_headers_once() {
        let registry = Registry::builtin();
        let rt = rt(&registry, "Namespace");
        let list = json!({ "apiVersion": "v1", "kind": "NamespaceList",
            "metadata": { "resourceVersion": "42", "continue": "abc" },
            "items": [{ "metadata": { "name": "default" }, "status": { "phase": "Active" } },
                      { "metadata": { "name": "gone" }, "status": { "phase": "Terminating" } }] });
        let table = Representation::Table {
            version: "v1beta1",
            include: IncludeObject::None,
        };
        let printed = table.list(rt, list.clone(), now()).unwrap();
        assert_eq!(printed["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(
            printed["metadata"],
            json!({ "resourceVersion": "42", "continue": "abc" })
        );
        let names: Vec<&str> = printed["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Status", "Age"]);
        assert_eq!(printed["rows"][1]["cells"][1], "Terminating");
        assert_eq!(printed["rows"][1]["object"], Value::Null);

        let metadata = Representation::Metadata { version: "v1" }
            .list(rt, list.clone(), now())
            .unwrap();
        assert_eq!(metadata["kind"], "PartialObjectMetadataList");
        assert_eq!(metadata["items"][0]["kind"], "PartialObjectMetadata");
        assert_eq!(metadata["items"][0]["metadata"]["name"], "default");
        assert!(metadata["items"][0].get("status").is_none());

        let item = list["items"][0].clone();
        let first = table.event_object(rt, item.clone(), true, now()).unwrap();
        let later = table.event_object(rt, item, false, now()).unwrap();
        assert!(first["columnDefinitions"].is_array());
        assert!(later["columnDefinitions"].is_null());
        assert_eq!(later["rows"][0]["cells"][0], "default");
        assert_eq!(
            table.bookmark(rt, 9, false)["metadata"]["resourceVersion"],
            "9"
        );
        let end = Representation::Object.bookmark(rt, 9, true);
        assert_eq!(end["kind"], "Namespace");
        assert_eq!(
            end["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        assert_eq!(
            Representation::Object
                .list(rt, list.clone(), now())
                .unwrap(),
            list
        );
    }

    #[test]
    fn durations_read_as_kubectl_writes_them() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (42 * 60, "42m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (20 * 3600, "20h"),
            (76 * 3600, "3d4h"),
            (30 * 86400, "30d"),
            (800 * 86400, "2y70d"),
            (3000 * 86400, "8y"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(Duration::from_secs(seconds)), text);
        }
        let later = |s| now() + Duration::from_secs(s);
        assert_eq!(since_time(later(1), now()), "0s", "skew is now");
        assert_eq!(since_time(later(5), now()), "<invalid>");
    }
}
