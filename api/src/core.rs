//! The core group (`v1`): Namespace, Node, Pod, Service, Endpoints, ConfigMap, Secret,
//! Event, with their defaults and validation.
//!
//! Field names and shapes are Kubernetes' own. Optional fields are `Option`s, lists and
//! maps are empty when absent, and neither is written when unset, so that a manifest
//! round-trips unchanged. Times are RFC 3339 strings, as on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::meta::{ObjectMeta, ObjectReference};
use crate::quantity::Quantity;
use crate::resource::Object;
use crate::validation::{
    FieldError, FieldErrorKind, IMMUTABLE_ERROR, NEGATIVE_ERROR, NameRule, inclusive_range_error,
    invalid_each, is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_http_header_name, is_iana_svc_name, is_qualified_name, is_valid_ip, is_valid_label_value,
    is_valid_port_num, validate_annotations, validate_finalizers, validate_immutable,
    validate_label_name, validate_labels, validate_nonnegative, validate_positive,
};
use crate::{fill_type_meta, impl_resource, is_default, is_false};

// =======================================================================================
// IntOrString

/// A value that is either a number or a string, as Kubernetes' `intstr.IntOrString`: a
/// port given by number or by name (`8080` / `"http"`), or an amount given absolutely or
/// as a percentage (`1` / `"25%"`). On the wire it is a bare JSON number or string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl IntOrString {
    /// The number, if this is one.
    pub fn as_int(&self) -> Option<i32> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(_) => None,
        }
    }

    /// The value against `total`, as Kubernetes' `GetScaledValueFromIntOrPercent`: a
    /// number is itself; `"25%"` is 25% of `total`, rounded up or down. A string that is
    /// not a percentage is an error.
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match self {
            IntOrString::Int(n) => Ok(*n),
            IntOrString::String(s) => {
                let percent = s.strip_suffix('%').ok_or_else(|| {
                    format!("invalid value {s:?}: not an integer or a percentage")
                })?;
                let percent: i64 = percent
                    .parse()
                    .map_err(|_| format!("invalid value {s:?}: not a valid percentage"))?;
                let product = percent * i64::from(total);
                let mut value = product.div_euclid(100);
                if round_up && product.rem_euclid(100) != 0 {
                    value += 1;
                }
                i32::try_from(value).map_err(|_| format!("invalid value {s:?}: out of range"))
            }
        }
    }

    /// The value as a field error shows it: `8080` or `"http"`.
    fn rendered(&self) -> String {
        match self {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => format!("{s:?}"),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl From<i32> for IntOrString {
    fn from(n: i32) -> Self {
        IntOrString::Int(n)
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> Self {
        IntOrString::String(s.to_string())
    }
}

impl From<String> for IntOrString {
    fn from(s: String) -> Self {
        IntOrString::String(s)
    }
}

/// Kubernetes' schema of an `IntOrString`: a string or an integer.
#[cfg(feature = "schema")]
impl schemars::JsonSchema for IntOrString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntOrString".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "int-or-string",
            "x-kubernetes-int-or-string": true,
        })
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => serializer.serialize_i32(*n),
            IntOrString::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntOrStringVisitor;

        impl Visitor<'_> for IntOrStringVisitor {
            type Value = IntOrString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-bit integer or a string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v))
            }
        }

        deserializer.deserialize_any(IntOrStringVisitor)
    }
}

// =======================================================================================
// Namespace

/// A namespace: the scope of names and of most objects. Cluster-scoped; its name is a
/// DNS-1123 label. Defaults: `spec.finalizers: ["kubernetes"]`, `status.phase: Active`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: NamespaceSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: NamespaceStatus,
}

/// What a namespace needs before it can go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// What must be cleaned up before a deleted namespace goes: `kubernetes` stands for
    /// the namespace controller deleting every object in it.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub finalizers: Vec<String>,
}

/// The namespace's lifecycle phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// `Active` or `Terminating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<NamespaceCondition>,
}

/// A condition of a namespace being deleted (`NamespaceDeletionContentFailure`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NamespaceCondition {
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl_resource!(
    Namespace,
    kind = "Namespace",
    group = "",
    version = "v1",
    plural = "namespaces",
    namespaced = false
);

impl Object for Namespace {
    const HAS_STATUS_SUBRESOURCE: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1123Label;

    /// Adds the `kubernetes` finalizer to a namespace that has none, unless it is being
    /// deleted (then the namespace controller has removed it on purpose), and sets the
    /// phase `Active` when there is none.
    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        if self.spec.finalizers.is_empty() && self.metadata.deletion_timestamp.is_none() {
            self.spec.finalizers.push("kubernetes".to_string());
        }
        if self.status.phase.is_none() {
            self.status.phase = Some("Active".to_string());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_finalizers(&self.spec.finalizers, "spec.finalizers")
    }
}

// =======================================================================================
// Node

/// A machine that runs pods: one `skiff node` agent. Cluster-scoped. The agent writes
/// its status (capacity, conditions, addresses); the control plane assigns its pod
/// range. Default: `status.allocatable` is `status.capacity` when not given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: NodeSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: NodeStatus,
}

/// The control plane's wishes for a node: its pod range, cordon, taints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// The node's pod range (`10.244.1.0/24`); the first of `podCIDRs`.
    #[serde(rename = "podCIDR", default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The node's pod ranges, at most one per IP family.
    #[serde(
        rename = "podCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub pod_cidrs: Vec<String>,
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
    /// Cordoned: the scheduler places no new pods here.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "crate::null_as_default"
    )]
    pub unschedulable: bool,
    /// Pods must tolerate these to be scheduled (or keep running) here.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub taints: Vec<Taint>,
}

/// A mark on a node that repels pods which do not tolerate it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub effect: String,
    /// When a `NoExecute` taint was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

/// What the node agent reports of its node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Everything the node has: `cpu`, `memory`, `pods`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods may use: capacity minus what the node keeps for itself.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub allocatable: BTreeMap<String, Quantity>,
    /// `Ready`, `MemoryPressure`, ...
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<NodeCondition>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub addresses: Vec<NodeAddress>,
    /// Where the node agent's own API listens.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub daemon_endpoints: NodeDaemonEndpoints,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub node_info: NodeSystemInfo,
}

/// A condition of a node: `Ready`, `MemoryPressure`, `DiskPressure`, ...
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeCondition {
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    /// When the agent last reported this condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One address of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub address: String,
}

/// The ports of the node agent's own services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeDaemonEndpoints {
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub kubelet_endpoint: DaemonEndpoint,
}

/// A port of the node agent's own API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DaemonEndpoint {
    /// Capitalised on the wire, as in Kubernetes.
    #[serde(rename = "Port", default, deserialize_with = "crate::null_as_default")]
    pub port: i32,
}

/// What a node runs, as the agent reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSystemInfo {
    #[serde(
        rename = "machineID",
        default,
        deserialize_with = "crate::null_as_default"
    )]
    pub machine_id: String,
    #[serde(
        rename = "systemUUID",
        default,
        deserialize_with = "crate::null_as_default"
    )]
    pub system_uuid: String,
    #[serde(
        rename = "bootID",
        default,
        deserialize_with = "crate::null_as_default"
    )]
    pub boot_id: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub kernel_version: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub os_image: String,
    /// `skiff://<version>` (wasmtime underneath).
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub container_runtime_version: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub kubelet_version: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub kube_proxy_version: String,
    /// `linux`, `darwin`, `windows`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub operating_system: String,
    /// `amd64`, `arm64`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub architecture: String,
}

impl Node {
    /// The condition of `type_` (`Ready`), if reported.
    pub fn condition(&self, type_: &str) -> Option<&NodeCondition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the node reports `Ready` `True`.
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status == "True")
    }
}

impl_resource!(
    Node,
    kind = "Node",
    group = "",
    version = "v1",
    plural = "nodes",
    namespaced = false
);

impl Object for Node {
    const HAS_STATUS_SUBRESOURCE: bool = true;

    /// Keeps `podCIDR` and `podCIDRs` in step, and makes `allocatable` the capacity when
    /// the node gives none.
    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        match (&self.spec.pod_cidr, self.spec.pod_cidrs.first()) {
            (Some(cidr), None) if !cidr.is_empty() => self.spec.pod_cidrs = vec![cidr.clone()],
            (None, Some(first)) => self.spec.pod_cidr = Some(first.clone()),
            _ => {}
        }
        if self.status.allocatable.is_empty() && !self.status.capacity.is_empty() {
            self.status.allocatable = self.status.capacity.clone();
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, cidr) in self.spec.pod_cidrs.iter().enumerate() {
            if !is_valid_cidr(cidr) {
                errors.push(FieldError::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    cidr,
                    "must be a valid CIDR",
                ));
            }
        }
        if let (Some(cidr), Some(first)) = (&self.spec.pod_cidr, self.spec.pod_cidrs.first())
            && cidr != first
        {
            errors.push(FieldError::invalid(
                "spec.podCIDR",
                cidr,
                "must match `podCIDRs[0]`",
            ));
        }
        errors.extend(validate_taints(&self.spec.taints, "spec.taints"));
        errors
    }

    /// The pod range and provider ID may be set once, never changed.
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        if !old.spec.pod_cidrs.is_empty() && self.spec.pod_cidrs != old.spec.pod_cidrs {
            errors.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        if old
            .spec
            .provider_id
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && self.spec.provider_id != old.spec.provider_id
        {
            errors.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errors
    }
}

fn is_valid_cidr(cidr: &str) -> bool {
    let Some((ip, bits)) = cidr.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

const TAINT_EFFECTS: [&str; 3] = ["NoExecute", "NoSchedule", "PreferNoSchedule"];

fn validate_taints(taints: &[Taint], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, taint) in taints.iter().enumerate() {
        let path = format!("{path}[{i}]");
        errors.extend(validate_label_name(&taint.key, &format!("{path}.key")));
        if let Some(value) = &taint.value {
            errors.extend(invalid_each(
                &format!("{path}.value"),
                value,
                is_valid_label_value(value),
            ));
        }
        if taint.effect.is_empty() {
            errors.push(FieldError::required(format!("{path}.effect"), ""));
        } else if !TAINT_EFFECTS.contains(&taint.effect.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.effect"),
                &taint.effect,
                &TAINT_EFFECTS,
            ));
        }
        if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
            errors.push(FieldError::duplicate(
                format!("{path}.key"),
                format!("{}:{}", taint.key, taint.effect),
            ));
        }
    }
    errors
}

// =======================================================================================
// Pod

/// A group of containers (wasm modules) that run together on one node, sharing volumes
/// and a network identity. Defaults: see [`set_pod_spec_defaults`]; the pod's
/// `status.qosClass` is derived from its resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: PodSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: PodStatus,
}

/// The pod's metadata and spec as a controller stamps them out (Deployment,
/// ReplicaSet, Job `spec.template`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: PodSpec,
}

/// What a pod runs and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Storage the containers may mount.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub volumes: Vec<Volume>,
    /// Run to completion, one after the other, before `containers` start.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub init_containers: Vec<Container>,
    /// At least one.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub containers: Vec<Container>,
    /// `Always` (default), `OnFailure` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// How long a container has to stop after the stop signal. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// How long the pod may run before it is failed, counted from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// `ClusterFirst` (default), `ClusterFirstWithHostNet`, `Default` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    /// Labels a node must have for the pod to be scheduled there.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, kept so that manifests round-trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// The node the pod is bound to; set once, by the scheduler's binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Use the node's network instead of the pod network.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "crate::null_as_default"
    )]
    pub host_network: bool,
    /// Kept as given; skiff's sandbox does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The pod's host name; the pod's name when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// With `hostname`, gives the pod the DNS name `hostname.subdomain.ns.svc...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// `default-scheduler` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Higher goes first in the scheduling queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
}

/// A reference by name to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
}

/// One container: a wasm module and how to run it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// A DNS-1123 label, unique within the pod.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    /// The wasm module: a pushed name, a `sha256:` digest, an `https://` URL pinned by
    /// digest, or a `file:` path. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Replaces the module's own `argv[0..]` entry point.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub command: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub ports: Vec<ContainerPort>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub env_from: Vec<EnvFromSource>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub env: Vec<EnvVar>,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub resources: ResourceRequirements,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub volume_mounts: Vec<VolumeMount>,
    /// Restarts the container when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Takes the pod out of Service endpoints when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds the other probes off until it succeeds once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Default `/dev/termination-log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// `File` (default) or `FallbackToLogsOnError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<String>,
    /// `Always`, `IfNotPresent` (default) or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Kept as given; skiff's sandbox does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
}

/// A port a container listens on (documentation, and the target of named ports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// An IANA service name, unique in the container; Services refer to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub container_port: i32,
    /// A port opened on the node that forwards into the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// An environment variable: a literal `value` or one read `valueFrom` elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from: exactly one source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
    /// A field of the pod: `metadata.name`, `status.podIP`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    /// A resource of a container: `limits.memory`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
}

/// One key of a ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeySelector {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    /// When true, a missing ConfigMap or key leaves the variable unset instead of
    /// failing the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// One key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A field of the pod (downward API). `apiVersion` defaults to `v1`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub field_path: String,
}

/// A resource amount of a container (downward API), divided by `divisor`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceFieldSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `limits.cpu`, `requests.memory`, ...
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

/// Every key of a ConfigMap or Secret as environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    /// Put before every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapEnvSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretEnvSource>,
}

/// A ConfigMap whose keys become environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapEnvSource {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A Secret whose keys become environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SecretEnvSource {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// How much a container may use (`limits`, enforced) and is guaranteed (`requests`,
/// used for scheduling). Keys are `cpu`, `memory`, `ephemeral-storage`, or extended
/// resources (`example.com/foo`). Requests default to the limits given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub requests: BTreeMap<String, Quantity>,
}

/// A volume made visible in a container at `mountPath`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The name of one of the pod's volumes.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    /// Absolute; unique within the container.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub mount_path: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "crate::null_as_default"
    )]
    pub read_only: bool,
    /// A directory inside the volume to mount instead of its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// Storage of a pod: a name and exactly one source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// A DNS-1123 label, unique within the pod.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
}

/// A scratch directory that lives as long as the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    /// `""` (node storage) or `Memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// The keys of a ConfigMap as files. `defaultMode` defaults to 0644 (420).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub name: String,
    /// Only these keys, at these paths; every key under its own name when empty.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// The keys of a Secret as files. `defaultMode` defaults to 0644 (420).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub items: Vec<KeyToPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// One key of a ConfigMap or Secret, as a file at a relative `path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyToPath {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub path: String,
    /// The file's mode; the volume's `defaultMode` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// A directory of the node; only where the node allows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HostPathVolumeSource {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub path: String,
    /// `""`, `DirectoryOrCreate`, `Directory`, `FileOrCreate`, `File`, `Socket`,
    /// `CharDevice` or `BlockDevice`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// A health check of a container: exactly one handler, and its timing. Defaults:
/// `periodSeconds` 10, `timeoutSeconds` 1, `successThreshold` 1, `failureThreshold` 3.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// Successes in a row that count as passing; must be 1 for liveness and startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Failures in a row that count as failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// Overrides the pod's grace period when this probe kills the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Runs a command in the container; exit code 0 passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExecAction {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub command: Vec<String>,
}

/// An HTTP GET to the pod; 200–399 passes. Defaults: `path` `/`, `scheme` `HTTP`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A number or the name of a container port.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub port: IntOrString,
    /// The pod IP when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub http_headers: Vec<HttpHeader>,
}

/// A header sent with an HTTP probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub value: String,
}

/// A TCP connection to the pod; connecting passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TcpSocketAction {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A gRPC health check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GrpcAction {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Lets a pod be scheduled on (or stay on) nodes with a matching taint.
/// `operator` defaults to `Equal`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Empty tolerates every effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// For `NoExecute`: how long the pod stays once the taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Whether this toleration tolerates `taint`, as Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        if given(&self.effect).is_some_and(|e| e != taint.effect) {
            return false;
        }
        if given(&self.key).is_some_and(|k| k != taint.key) {
            return false;
        }
        match self.operator.as_deref().unwrap_or("Equal") {
            "" | "Equal" => {
                self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
            "Exists" => true,
            _ => false,
        }
    }
}

/// Scheduling constraints. Only node affinity is interpreted by skiff; pod
/// (anti-)affinity is kept as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<Value>,
}

/// Which nodes a pod must, or would rather, run on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinity {
    /// The node must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    /// Matching nodes score higher by the term's weight.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms of which at least one must match a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Requirements that must all match a node; a term without any matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// On the node's labels.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// On the node's fields; only `metadata.name`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// `key` `operator` (`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`) `values`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub key: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub operator: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub values: Vec<String>,
}

/// A node preference and how much it counts in scoring.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PreferredSchedulingTerm {
    /// 1–100.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub weight: i32,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub preference: NodeSelectorTerm,
}

impl NodeSelector {
    /// Whether a node with these labels and this name matches one of the terms.
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        self.node_selector_terms
            .iter()
            .any(|t| t.matches(labels, node_name))
    }
}

impl NodeSelectorTerm {
    /// Whether a node with these labels and this name meets every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        let fields = BTreeMap::from([("metadata.name".to_string(), node_name.to_string())]);
        self.match_expressions.iter().all(|r| r.matches(labels))
            && self.match_fields.iter().all(|r| r.matches(&fields))
    }
}

impl NodeSelectorRequirement {
    /// Whether `labels` meet the requirement; an unknown operator never does.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let compare = |wanted: std::cmp::Ordering| {
            let (Some(label), [value]) = (label, self.values.as_slice()) else {
                return false;
            };
            match (label.parse::<i64>(), value.parse::<i64>()) {
                (Ok(label), Ok(value)) => label.cmp(&value) == wanted,
                _ => false,
            }
        };
        match self.operator.as_str() {
            "In" => label.is_some_and(|l| self.values.contains(l)),
            "NotIn" => !label.is_some_and(|l| self.values.contains(l)),
            "Exists" => label.is_some(),
            "DoesNotExist" => label.is_none(),
            "Gt" => compare(std::cmp::Ordering::Greater),
            "Lt" => compare(std::cmp::Ordering::Less),
            _ => false,
        }
    }
}

/// What is known of a running pod, written by its node agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `PodScheduled`, `Initialized`, `ContainersReady`, `Ready`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub conditions: Vec<PodCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A short CamelCase word on why the pod is in its state (`Evicted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominated_node_name: Option<String>,
    /// The node's address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(
        rename = "hostIPs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub host_ips: Vec<HostIp>,
    /// The pod's address in the pod network.
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(
        rename = "podIPs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub pod_ips: Vec<PodIp>,
    /// When the node agent accepted the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub container_statuses: Vec<ContainerStatus>,
    /// `Guaranteed`, `Burstable` or `BestEffort`, from the containers' resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
}

/// One IP address of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PodIp {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub ip: String,
}

/// One IP address of the node a pod runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostIp {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub ip: String,
}

/// A condition of a pod: `PodScheduled`, `Initialized`, `ContainersReady`, `Ready`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What is known of one container of a running pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub state: ContainerState,
    /// The state the container was in before its last restart.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub last_state: ContainerState,
    /// Passing its readiness probe (or running, without one).
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub ready: bool,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub restart_count: i32,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub image: String,
    /// The digest of the module that runs.
    #[serde(
        rename = "imageID",
        default,
        deserialize_with = "crate::null_as_default"
    )]
    pub image_id: String,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    /// Passed its startup probe (or running, without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// At most one of the three is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

/// The container is not running yet (or again): being pulled, backing off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateWaiting {
    /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The container runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateRunning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// The container ran and stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
}

impl Pod {
    /// The condition of `type_` (`Ready`), if reported.
    pub fn condition(&self, type_: &str) -> Option<&PodCondition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the pod reports `Ready` `True`.
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status == "True")
    }
}

/// A ConfigMap or Secret a pod uses: `kind` is the resource (`configmaps`, `secrets`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodReference {
    pub kind: &'static str,
    pub name: String,
}

impl PodSpec {
    /// The ConfigMaps and Secrets the pod uses, in its namespace: through volumes, `env`
    /// (`configMapKeyRef`, `secretKeyRef`) and `envFrom`, of every container and init
    /// container. Sorted, without repeats. What a node may read for the pod.
    pub fn references(&self) -> Vec<PodReference> {
        let reference = |kind: &'static str, name: &str| PodReference {
            kind,
            name: name.to_string(),
        };
        let mut found = Vec::new();
        for volume in &self.volumes {
            if let Some(source) = &volume.config_map {
                found.push(reference("configmaps", &source.name));
            }
            if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
                found.push(reference("secrets", name));
            }
        }
        for container in self.init_containers.iter().chain(&self.containers) {
            for source in container.env.iter().filter_map(|e| e.value_from.as_ref()) {
                if let Some(key) = &source.config_map_key_ref {
                    found.push(reference("configmaps", &key.name));
                }
                if let Some(key) = &source.secret_key_ref {
                    found.push(reference("secrets", &key.name));
                }
            }
            for source in &container.env_from {
                if let Some(map) = &source.config_map_ref {
                    found.push(reference("configmaps", &map.name));
                }
                if let Some(secret) = &source.secret_ref {
                    found.push(reference("secrets", &secret.name));
                }
            }
        }
        found.retain(|r| !r.name.is_empty());
        found.sort();
        found.dedup();
        found
    }
}

// ---------------------------------------------------------------------------------------
// Pod defaults

/// Fills in the pod spec defaults Kubernetes applies: `restartPolicy: Always`,
/// `terminationGracePeriodSeconds: 30`, `dnsPolicy: ClusterFirst`, `schedulerName:
/// default-scheduler`; for every container `imagePullPolicy: IfNotPresent`,
/// `terminationMessagePath: /dev/termination-log`, `terminationMessagePolicy: File`,
/// port `protocol: TCP`, `fieldRef.apiVersion: v1`, probe timings (10s period, 1s
/// timeout, thresholds 1 and 3), `httpGet` `path: /` and `scheme: HTTP`, and requests
/// equal to the limits for resources that have only a limit; `defaultMode: 420` (0644)
/// for configMap and secret volumes; toleration `operator: Equal`. Idempotent.
pub fn set_pod_spec_defaults(spec: &mut PodSpec) {
    spec.restart_policy
        .get_or_insert_with(|| "Always".to_string());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy
        .get_or_insert_with(|| "ClusterFirst".to_string());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".to_string());
    for container in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        set_container_defaults(container);
    }
    for volume in &mut spec.volumes {
        if let Some(source) = &mut volume.config_map {
            source.default_mode.get_or_insert(0o644);
        }
        if let Some(source) = &mut volume.secret {
            source.default_mode.get_or_insert(0o644);
        }
    }
    for toleration in &mut spec.tolerations {
        toleration
            .operator
            .get_or_insert_with(|| "Equal".to_string());
    }
}

fn set_container_defaults(container: &mut Container) {
    container
        .image_pull_policy
        .get_or_insert_with(|| "IfNotPresent".to_string());
    container
        .termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".to_string());
    container
        .termination_message_policy
        .get_or_insert_with(|| "File".to_string());
    for port in &mut container.ports {
        port.protocol.get_or_insert_with(|| "TCP".to_string());
    }
    for env in &mut container.env {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field_ref
                .api_version
                .get_or_insert_with(|| "v1".to_string());
        }
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        set_probe_defaults(probe);
    }
    let resources = &mut container.resources;
    for (name, limit) in &resources.limits {
        resources
            .requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
}

fn set_probe_defaults(probe: &mut Probe) {
    let default = |field: &mut Option<i32>, value: i32| {
        if field.is_none_or(|v| v == 0) {
            *field = Some(value);
        }
    };
    default(&mut probe.period_seconds, 10);
    default(&mut probe.timeout_seconds, 1);
    default(&mut probe.success_threshold, 1);
    default(&mut probe.failure_threshold, 3);
    if let Some(http) = &mut probe.http_get {
        if http.path.as_deref().is_none_or(str::is_empty) {
            http.path = Some("/".to_string());
        }
        if http.scheme.as_deref().is_none_or(str::is_empty) {
            http.scheme = Some("HTTP".to_string());
        }
    }
}

/// The pod's quality-of-service class, as Kubernetes computes it: `BestEffort` when no
/// container requests or limits cpu or memory, `Guaranteed` when every container has
/// cpu and memory limits equal to its requests, `Burstable` otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let nonzero = |q: Option<&Quantity>| q.and_then(|q| q.parse().ok()).filter(|n| *n != 0);
    let mut any = false;
    let mut guaranteed = true;
    for container in spec.init_containers.iter().chain(&spec.containers) {
        for resource in ["cpu", "memory"] {
            let request = nonzero(container.resources.requests.get(resource));
            let limit = nonzero(container.resources.limits.get(resource));
            any |= request.is_some() || limit.is_some();
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(request), Some(limit)) if request != limit => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------------------
// Pod validation

const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Checks a pod spec as Kubernetes' `ValidatePodSpec`; `path` is `spec` for a Pod and
/// `spec.template.spec` for a template. Containers (at least one; names unique DNS-1123
/// labels; image; ports; env; mounts of existing volumes; resources; probes), volumes
/// (unique names, one source each), restart policy, grace period, node selector,
/// affinity and tolerations.
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let volumes = validate_volumes(&spec.volumes, &format!("{path}.volumes"), &mut errors);

    if spec.containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = BTreeSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        validate_container(
            container,
            &format!("{path}.containers[{i}]"),
            &volumes,
            &mut names,
            false,
            &mut errors,
        );
    }
    for (i, container) in spec.init_containers.iter().enumerate() {
        validate_container(
            container,
            &format!("{path}.initContainers[{i}]"),
            &volumes,
            &mut names,
            true,
            &mut errors,
        );
    }

    if let Some(policy) = &spec.restart_policy {
        if policy.is_empty() {
            errors.push(FieldError::required(format!("{path}.restartPolicy"), ""));
        } else if !RESTART_POLICIES.contains(&policy.as_str()) {
            errors.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                policy,
                &RESTART_POLICIES,
            ));
        }
    }
    if let Some(policy) = spec
        .dns_policy
        .as_deref()
        .filter(|p| !DNS_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            policy,
            &DNS_POLICIES,
        ));
    }
    if let Some(seconds) = spec.termination_grace_period_seconds {
        errors.extend(validate_nonnegative(
            seconds,
            &format!("{path}.terminationGracePeriodSeconds"),
        ));
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        errors.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            seconds,
            inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    errors.extend(validate_labels(
        &spec.node_selector,
        &format!("{path}.nodeSelector"),
    ));
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errors.extend(invalid_each(
                &format!("{path}.{field}"),
                value,
                is_dns1123_subdomain(value),
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errors.extend(invalid_each(
                &format!("{path}.{field}"),
                value,
                is_dns1123_label(value),
            ));
        }
    }
    if let Some(node_affinity) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        validate_node_affinity(
            node_affinity,
            &format!("{path}.affinity.nodeAffinity"),
            &mut errors,
        );
    }
    errors.extend(validate_tolerations(
        &spec.tolerations,
        &format!("{path}.tolerations"),
    ));
    errors
}

/// Checks a pod template: its labels and annotations, then its spec at `path.spec`.
pub fn validate_pod_template_spec(template: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let mut errors = validate_labels(
        &template.metadata.labels,
        &format!("{path}.metadata.labels"),
    );
    errors.extend(validate_annotations(
        &template.metadata.annotations,
        &format!("{path}.metadata.annotations"),
    ));
    errors.extend(validate_pod_spec(&template.spec, &format!("{path}.spec")));
    errors
}

/// Checks the volumes and returns the names of the valid ones, for the mounts.
fn validate_volumes(
    volumes: &[Volume],
    path: &str,
    errors: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let name_path = format!("{path}.name");
        if volume.name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else {
            errors.extend(invalid_each(
                &name_path,
                &volume.name,
                is_dns1123_label(&volume.name),
            ));
            if !names.insert(volume.name.clone()) {
                errors.push(FieldError::duplicate(name_path, &volume.name));
            }
        }
        let mut sources = 0;
        let mut count = |source: &str, errors: &mut Vec<FieldError>| {
            sources += 1;
            if sources > 1 {
                errors.push(FieldError::forbidden(
                    format!("{path}.{source}"),
                    "may not specify more than 1 volume type",
                ));
            }
        };
        if let Some(host_path) = &volume.host_path {
            count("hostPath", errors);
            if host_path.path.is_empty() {
                errors.push(FieldError::required(format!("{path}.hostPath.path"), ""));
            }
            const TYPES: [&str; 8] = [
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if let Some(t) = host_path.type_.as_deref().filter(|t| !TYPES.contains(t)) {
                errors.push(FieldError::not_supported(
                    format!("{path}.hostPath.type"),
                    t,
                    &TYPES,
                ));
            }
        }
        if let Some(empty_dir) = &volume.empty_dir {
            count("emptyDir", errors);
            if let Some(limit) = &empty_dir.size_limit {
                errors.extend(validate_quantity(
                    limit,
                    &format!("{path}.emptyDir.sizeLimit"),
                ));
            }
        }
        if let Some(secret) = &volume.secret {
            count("secret", errors);
            match secret.secret_name.as_deref() {
                None | Some("") => errors.push(FieldError::required(
                    format!("{path}.secret.secretName"),
                    "",
                )),
                Some(name) => errors.extend(invalid_each(
                    &format!("{path}.secret.secretName"),
                    name,
                    is_dns1123_subdomain(name),
                )),
            }
            validate_projection(
                &secret.items,
                secret.default_mode,
                &format!("{path}.secret"),
                errors,
            );
        }
        if let Some(config_map) = &volume.config_map {
            count("configMap", errors);
            if config_map.name.is_empty() {
                errors.push(FieldError::required(format!("{path}.configMap.name"), ""));
            } else {
                errors.extend(invalid_each(
                    &format!("{path}.configMap.name"),
                    &config_map.name,
                    is_dns1123_subdomain(&config_map.name),
                ));
            }
            validate_projection(
                &config_map.items,
                config_map.default_mode,
                &format!("{path}.configMap"),
                errors,
            );
        }
        if sources == 0 {
            errors.push(FieldError::required(
                path.clone(),
                "must specify a volume type",
            ));
        }
    }
    names
}

fn validate_file_mode(mode: i32, path: &str, errors: &mut Vec<FieldError>) {
    if !(0..=0o777).contains(&mode) {
        errors.push(FieldError::invalid(path, mode, FILE_MODE_ERROR));
    }
}

fn validate_projection(
    items: &[KeyToPath],
    default_mode: Option<i32>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(mode) = default_mode {
        validate_file_mode(mode, &format!("{path}.defaultMode"), errors);
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}.items[{i}]");
        if item.key.is_empty() {
            errors.push(FieldError::required(format!("{path}.key"), ""));
        }
        if item.path.is_empty() {
            errors.push(FieldError::required(format!("{path}.path"), ""));
        } else {
            validate_relative_path(&item.path, &format!("{path}.path"), true, errors);
        }
        if let Some(mode) = item.mode {
            validate_file_mode(mode, &format!("{path}.mode"), errors);
        }
    }
}

/// A path that stays inside its volume: relative, without `..` steps.
fn validate_relative_path(
    value: &str,
    path: &str,
    no_dotdot_prefix: bool,
    errors: &mut Vec<FieldError>,
) {
    if value.starts_with('/') {
        errors.push(FieldError::invalid(path, value, "must be a relative path"));
    }
    if value.split(['/', '\\']).any(|part| part == "..") {
        errors.push(FieldError::invalid(path, value, "must not contain '..'"));
    } else if no_dotdot_prefix && value.starts_with("..") {
        errors.push(FieldError::invalid(path, value, "must not start with '..'"));
    }
}

fn validate_container(
    container: &Container,
    path: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    init: bool,
    errors: &mut Vec<FieldError>,
) {
    let name_path = format!("{path}.name");
    if container.name.is_empty() {
        errors.push(FieldError::required(name_path, ""));
    } else {
        errors.extend(invalid_each(
            &name_path,
            &container.name,
            is_dns1123_label(&container.name),
        ));
        if !names.insert(container.name.clone()) {
            errors.push(FieldError::duplicate(name_path, &container.name));
        }
    }
    if container
        .image
        .as_deref()
        .is_none_or(|i| i.trim().is_empty())
    {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    if let Some(policy) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !PULL_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            policy,
            &PULL_POLICIES,
        ));
    }
    const MESSAGE_POLICIES: [&str; 2] = ["FallbackToLogsOnError", "File"];
    if let Some(policy) = container
        .termination_message_policy
        .as_deref()
        .filter(|p| !MESSAGE_POLICIES.contains(p))
    {
        errors.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            policy,
            &MESSAGE_POLICIES,
        ));
    }
    validate_container_ports(&container.ports, &format!("{path}.ports"), errors);
    validate_env(&container.env, &format!("{path}.env"), errors);
    validate_env_from(&container.env_from, &format!("{path}.envFrom"), errors);
    validate_volume_mounts(
        &container.volume_mounts,
        volumes,
        &format!("{path}.volumeMounts"),
        errors,
    );
    validate_resources(&container.resources, &format!("{path}.resources"), errors);
    let probes = [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ];
    for (field, probe) in probes {
        let Some(probe) = probe else { continue };
        let probe_path = format!("{path}.{field}");
        if init {
            errors.push(FieldError::forbidden(
                probe_path,
                "may not be set for init containers",
            ));
            continue;
        }
        validate_probe(probe, &probe_path, errors);
        if field != "readinessProbe" && probe.success_threshold.is_some_and(|t| t != 1) {
            errors.push(FieldError::invalid(
                format!("{probe_path}.successThreshold"),
                probe.success_threshold.unwrap_or_default(),
                "must be 1",
            ));
        }
    }
}

fn validate_container_ports(ports: &[ContainerPort], path: &str, errors: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let problems = is_iana_svc_name(name);
            if !problems.is_empty() {
                errors.extend(invalid_each(&format!("{path}.name"), name, problems));
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(format!("{path}.name"), name));
            }
        }
        if port.container_port == 0 {
            errors.push(FieldError::required(format!("{path}.containerPort"), ""));
        } else {
            for message in is_valid_port_num(i64::from(port.container_port)) {
                errors.push(FieldError::invalid(
                    format!("{path}.containerPort"),
                    port.container_port,
                    message,
                ));
            }
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            for message in is_valid_port_num(i64::from(host_port)) {
                errors.push(FieldError::invalid(
                    format!("{path}.hostPort"),
                    host_port,
                    message,
                ));
            }
        }
        if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            errors.extend(invalid_each(&format!("{path}.hostIP"), ip, is_valid_ip(ip)));
        }
        validate_protocol(
            port.protocol.as_deref(),
            &format!("{path}.protocol"),
            errors,
        );
    }
}

/// `TCP`, `UDP` or `SCTP`; absent is fine (it defaults to TCP), empty is not.
fn validate_protocol(protocol: Option<&str>, path: &str, errors: &mut Vec<FieldError>) {
    match protocol {
        None => {}
        Some("") => errors.push(FieldError::required(path, "")),
        Some(p) if !PORT_PROTOCOLS.contains(&p) => {
            errors.push(FieldError::not_supported(path, p, &PORT_PROTOCOLS))
        }
        Some(_) => {}
    }
}

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const ENV_RESOURCE_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env(env: &[EnvVar], path: &str, errors: &mut Vec<FieldError>) {
    for (i, var) in env.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if var.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            errors.extend(invalid_each(
                &format!("{path}.name"),
                &var.name,
                is_env_var_name(&var.name),
            ));
        }
        let Some(from) = &var.value_from else {
            continue;
        };
        let from_path = format!("{path}.valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = &from.field_ref {
            sources += 1;
            let field_path = format!("{from_path}.fieldRef.fieldPath");
            let fp = field_ref.field_path.as_str();
            let subscripted =
                ["metadata.labels['", "metadata.annotations['"]
                    .iter()
                    .any(|prefix| {
                        fp.starts_with(prefix) && fp.ends_with("']") && fp.len() > prefix.len() + 2
                    });
            if fp.is_empty() {
                errors.push(FieldError::required(field_path, ""));
            } else if !subscripted && !ENV_FIELD_PATHS.contains(&fp) {
                errors.push(FieldError::not_supported(field_path, fp, &ENV_FIELD_PATHS));
            }
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            sources += 1;
            let resource_path = format!("{from_path}.resourceFieldRef.resource");
            if resource_ref.resource.is_empty() {
                errors.push(FieldError::required(resource_path, ""));
            } else if !ENV_RESOURCE_PATHS.contains(&resource_ref.resource.as_str()) {
                errors.push(FieldError::not_supported(
                    resource_path,
                    &resource_ref.resource,
                    &ENV_RESOURCE_PATHS,
                ));
            }
            if let Some(divisor) = &resource_ref.divisor {
                errors.extend(validate_quantity(
                    divisor,
                    &format!("{from_path}.resourceFieldRef.divisor"),
                ));
            }
        }
        if let Some(selector) = &from.config_map_key_ref {
            sources += 1;
            validate_key_selector(
                &selector.name,
                &selector.key,
                &format!("{from_path}.configMapKeyRef"),
                errors,
            );
        }
        if let Some(selector) = &from.secret_key_ref {
            sources += 1;
            validate_key_selector(
                &selector.name,
                &selector.key,
                &format!("{from_path}.secretKeyRef"),
                errors,
            );
        }
        if sources == 0 {
            errors.push(FieldError::invalid(
                from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::invalid(
                from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errors.push(FieldError::invalid(
                from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_key_selector(name: &str, key: &str, path: &str, errors: &mut Vec<FieldError>) {
    if name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errors.extend(invalid_each(
            &format!("{path}.name"),
            name,
            is_dns1123_subdomain(name),
        ));
    }
    if key.is_empty() {
        errors.push(FieldError::required(format!("{path}.key"), ""));
    } else {
        errors.extend(invalid_each(
            &format!("{path}.key"),
            key,
            is_config_map_key(key),
        ));
    }
}

fn validate_env_from(sources: &[EnvFromSource], path: &str, errors: &mut Vec<FieldError>) {
    for (i, source) in sources.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            errors.extend(invalid_each(
                &format!("{path}.prefix"),
                prefix,
                is_env_var_name(prefix),
            ));
        }
        let mut count = 0;
        for (field, name) in [
            (
                "configMapRef",
                source.config_map_ref.as_ref().map(|r| r.name.as_str()),
            ),
            (
                "secretRef",
                source.secret_ref.as_ref().map(|r| r.name.as_str()),
            ),
        ] {
            let Some(name) = name else { continue };
            count += 1;
            if name.is_empty() {
                errors.push(FieldError::required(format!("{path}.{field}.name"), ""));
            } else {
                errors.extend(invalid_each(
                    &format!("{path}.{field}.name"),
                    name,
                    is_dns1123_subdomain(name),
                ));
            }
        }
        if count == 0 {
            errors.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errors.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<String>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        } else if !volumes.contains(&mount.name) {
            errors.push(FieldError::not_found(format!("{path}.name"), &mount.name));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{path}.mountPath"), ""));
        } else {
            if !mount.mount_path.starts_with('/') {
                errors.push(FieldError::invalid(
                    format!("{path}.mountPath"),
                    &mount.mount_path,
                    "must be an absolute path",
                ));
            }
            if !mount_paths.insert(mount.mount_path.as_str()) {
                errors.push(FieldError::invalid(
                    format!("{path}.mountPath"),
                    &mount.mount_path,
                    "must be unique",
                ));
            }
        }
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            validate_relative_path(sub_path, &format!("{path}.subPath"), false, errors);
        }
    }
}

/// A quantity that parses and is not negative.
fn validate_quantity(quantity: &Quantity, path: &str) -> Vec<FieldError> {
    match quantity.parse() {
        Err(error) => vec![FieldError::invalid(
            path,
            quantity.as_str(),
            error.to_string(),
        )],
        Ok(value) if value < 0 => {
            vec![FieldError::invalid(path, quantity.as_str(), NEGATIVE_ERROR)]
        }
        Ok(_) => Vec::new(),
    }
}

/// Resources whose requests may be below their limits; the others (extended
/// resources, huge pages) must request exactly their limit.
fn overcommit_allowed(resource: &str) -> bool {
    matches!(resource, "cpu" | "memory" | "ephemeral-storage")
}

fn validate_resource_name(name: &str, path: &str, errors: &mut Vec<FieldError>) -> bool {
    let problems = is_qualified_name(name);
    if !problems.is_empty() {
        errors.extend(invalid_each(path, name, problems));
        return false;
    }
    let standard = overcommit_allowed(name) || name.starts_with("hugepages-");
    let extended =
        name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests.");
    if !standard && !extended {
        errors.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource for containers",
        ));
        return false;
    }
    true
}

fn validate_resources(resources: &ResourceRequirements, path: &str, errors: &mut Vec<FieldError>) {
    for (name, quantity) in &resources.limits {
        let path = format!("{path}.limits[{name}]");
        if validate_resource_name(name, &path, errors) {
            errors.extend(validate_quantity(quantity, &path));
        }
    }
    for (name, quantity) in &resources.requests {
        let entry_path = format!("{path}.requests[{name}]");
        if !validate_resource_name(name, &entry_path, errors) {
            continue;
        }
        let problems = validate_quantity(quantity, &entry_path);
        let valid = problems.is_empty();
        errors.extend(problems);
        let Some(limit) = resources.limits.get(name) else {
            continue;
        };
        let (Ok(request), Ok(limit_value), true) = (quantity.parse(), limit.parse(), valid) else {
            continue;
        };
        if !overcommit_allowed(name) && request != limit_value {
            errors.push(FieldError::invalid(
                format!("{path}.requests"),
                quantity.as_str(),
                format!("must be equal to {name} limit of {limit}"),
            ));
        } else if request > limit_value {
            errors.push(FieldError::invalid(
                format!("{path}.requests"),
                quantity.as_str(),
                format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

/// A port by number (1–65535) or by IANA name.
fn validate_port_num_or_name(port: &IntOrString, path: &str, errors: &mut Vec<FieldError>) {
    let problems = match port {
        IntOrString::Int(n) => is_valid_port_num(i64::from(*n)),
        IntOrString::String(name) => is_iana_svc_name(name),
    };
    for message in problems {
        errors.push(FieldError::invalid_rendered(path, port.rendered(), message));
    }
}

fn validate_probe(probe: &Probe, path: &str, errors: &mut Vec<FieldError>) {
    let mut handlers = 0;
    let mut handler = |name: &str, errors: &mut Vec<FieldError>| {
        handlers += 1;
        if handlers > 1 {
            errors.push(FieldError::forbidden(
                format!("{path}.{name}"),
                "may not specify more than 1 handler type",
            ));
            false
        } else {
            true
        }
    };
    if let Some(exec) = &probe.exec
        && handler("exec", errors)
        && exec.command.is_empty()
    {
        errors.push(FieldError::required(format!("{path}.exec.command"), ""));
    }
    if let Some(http) = &probe.http_get
        && handler("httpGet", errors)
    {
        if http.path.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{path}.httpGet.path"), ""));
        }
        validate_port_num_or_name(&http.port, &format!("{path}.httpGet.port"), errors);
        const SCHEMES: [&str; 2] = ["HTTP", "HTTPS"];
        if let Some(scheme) = http.scheme.as_deref().filter(|s| !SCHEMES.contains(s)) {
            errors.push(FieldError::not_supported(
                format!("{path}.httpGet.scheme"),
                scheme,
                &SCHEMES,
            ));
        }
        for header in &http.http_headers {
            errors.extend(invalid_each(
                &format!("{path}.httpGet.httpHeaders"),
                &header.name,
                is_http_header_name(&header.name),
            ));
        }
    }
    if let Some(tcp) = &probe.tcp_socket
        && handler("tcpSocket", errors)
    {
        validate_port_num_or_name(&tcp.port, &format!("{path}.tcpSocket.port"), errors);
    }
    if let Some(grpc) = &probe.grpc
        && handler("grpc", errors)
    {
        for message in is_valid_port_num(i64::from(grpc.port)) {
            errors.push(FieldError::invalid(
                format!("{path}.grpc.port"),
                grpc.port,
                message,
            ));
        }
    }
    if handlers == 0 {
        errors.push(FieldError::required(path, "must specify a handler type"));
    }
    let timings = [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("periodSeconds", probe.period_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ];
    for (field, value, min) in timings {
        let Some(value) = value else { continue };
        let path = format!("{path}.{field}");
        if min == 0 {
            errors.extend(validate_nonnegative(i64::from(value), &path));
        } else {
            errors.extend(validate_positive(i64::from(value), &path));
        }
    }
    if let Some(seconds) = probe.termination_grace_period_seconds
        && seconds <= 0
    {
        errors.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            seconds,
            "must be greater than 0",
        ));
    }
}

fn validate_node_affinity(affinity: &NodeAffinity, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(required) = &affinity.required_during_scheduling_ignored_during_execution {
        let path = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution");
        if required.node_selector_terms.is_empty() {
            errors.push(FieldError::required(
                format!("{path}.nodeSelectorTerms"),
                "must have at least one node selector term",
            ));
        }
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            validate_node_selector_term(term, &format!("{path}.nodeSelectorTerms[{i}]"), errors);
        }
    }
    let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in affinity
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let path = format!("{path}[{i}]");
        if !(1..=100).contains(&term.weight) {
            errors.push(FieldError::invalid(
                format!("{path}.weight"),
                term.weight,
                "must be in the range 1-100",
            ));
        }
        validate_node_selector_term(&term.preference, &format!("{path}.preference"), errors);
    }
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &str, errors: &mut Vec<FieldError>) {
    for (i, requirement) in term.match_expressions.iter().enumerate() {
        let path = format!("{path}.matchExpressions[{i}]");
        match requirement.operator.as_str() {
            "In" | "NotIn" if requirement.values.is_empty() => errors.push(FieldError::required(
                format!("{path}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !requirement.values.is_empty() => {
                errors.push(FieldError::forbidden(
                    format!("{path}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ))
            }
            "Gt" | "Lt" if requirement.values.len() != 1 => errors.push(FieldError::required(
                format!("{path}.values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errors.push(FieldError::invalid(
                format!("{path}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errors.extend(validate_label_name(
            &requirement.key,
            &format!("{path}.key"),
        ));
    }
    for (i, requirement) in term.match_fields.iter().enumerate() {
        let path = format!("{path}.matchFields[{i}]");
        match requirement.operator.as_str() {
            "In" | "NotIn" if requirement.values.len() != 1 => errors.push(FieldError::required(
                format!("{path}.values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            other => errors.push(FieldError::invalid(
                format!("{path}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        if requirement.key != "metadata.name" {
            errors.push(FieldError::not_supported(
                format!("{path}.key"),
                &requirement.key,
                &["metadata.name"],
            ));
        }
    }
}

fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let key = toleration.key.as_deref().unwrap_or("");
        let operator = toleration.operator.as_deref().unwrap_or("");
        let effect = toleration.effect.as_deref().unwrap_or("");
        let value = toleration.value.as_deref().unwrap_or("");
        if !key.is_empty() {
            errors.extend(validate_label_name(key, &format!("{path}.key")));
        }
        if key.is_empty() && operator != "Exists" {
            errors.push(FieldError::invalid(
                format!("{path}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errors.push(FieldError::invalid(
                format!("{path}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let problems = is_valid_label_value(value);
                if !problems.is_empty() {
                    errors.push(FieldError::invalid(
                        format!("{path}.operator"),
                        value,
                        problems.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errors.push(FieldError::invalid(
                        format!("{path}.operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errors.push(FieldError::not_supported(
                format!("{path}.operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errors.push(FieldError::not_supported(
                format!("{path}.effect"),
                effect,
                &TAINT_EFFECTS,
            ));
        }
    }
    errors
}

impl_resource!(
    Pod,
    kind = "Pod",
    group = "",
    version = "v1",
    plural = "pods",
    namespaced = true
);

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

impl Object for Pod {
    const HAS_STATUS_SUBRESOURCE: bool = true;

    /// The pod spec defaults ([`set_pod_spec_defaults`]) and the QoS class.
    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        set_pod_spec_defaults(&mut self.spec);
        if self.status.qos_class.is_none() && !self.spec.containers.is_empty() {
            self.status.qos_class = Some(qos_class(&self.spec).to_string());
        }
    }

    /// The spec; the status is the node agent's report and is not checked.
    fn validate(&self) -> Vec<FieldError> {
        validate_pod_spec(&self.spec, "spec")
    }

    /// A running pod's spec is fixed except for container images, a shorter
    /// `activeDeadlineSeconds`, added tolerations, and `nodeName` being set once (the
    /// binding).
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        let (new, old) = (&self.spec, &old.spec);
        if new.containers.len() != old.containers.len() {
            errors.push(FieldError::forbidden(
                "spec.containers",
                "pod updates may not add or remove containers",
            ));
            return errors;
        }
        if new.init_containers.len() != old.init_containers.len() {
            errors.push(FieldError::forbidden(
                "spec.initContainers",
                "pod updates may not add or remove containers",
            ));
            return errors;
        }
        match (new.active_deadline_seconds, old.active_deadline_seconds) {
            (Some(new), Some(old)) if new > old => errors.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                new,
                "must be less than or equal to previous value",
            )),
            (None, Some(_)) => errors.push(FieldError::invalid_rendered(
                "spec.activeDeadlineSeconds",
                "null",
                "must not update from a positive integer to nil value",
            )),
            _ => {}
        }
        for existing in &old.tolerations {
            let kept = new.tolerations.iter().any(|t| {
                Toleration {
                    toleration_seconds: t.toleration_seconds,
                    ..existing.clone()
                } == *t
            });
            if !kept {
                errors.push(FieldError::forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                ));
                break;
            }
        }

        let mut munged = new.clone();
        for (container, old) in munged.containers.iter_mut().zip(&old.containers) {
            container.image.clone_from(&old.image);
        }
        for (container, old) in munged.init_containers.iter_mut().zip(&old.init_containers) {
            container.image.clone_from(&old.image);
        }
        munged.active_deadline_seconds = old.active_deadline_seconds;
        munged.tolerations.clone_from(&old.tolerations);
        if old.node_name.as_deref().is_none_or(str::is_empty) {
            munged.node_name.clone_from(&old.node_name);
        }
        if old.termination_grace_period_seconds.is_some_and(|s| s < 0)
            && new.termination_grace_period_seconds == Some(1)
        {
            munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
        }
        if munged != *old {
            let changed = changed_fields(&munged, old);
            errors.push(FieldError::forbidden(
                "spec",
                format!("{POD_UPDATE_FORBIDDEN}\nchanged: {changed}"),
            ));
        }
        errors
    }
}

/// The top-level fields of two specs that differ, as `spec.field` paths.
fn changed_fields(new: &PodSpec, old: &PodSpec) -> String {
    let as_map = |spec: &PodSpec| match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (new, old) = (as_map(new), as_map(old));
    let keys: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| new.get(*k) != old.get(*k))
        .map(|k| format!("`spec.{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// =======================================================================================
// Service

/// A stable virtual address (ClusterIP and DNS name) for the ready pods its selector
/// picks. Its name is a DNS-1035 label. Defaults: `type: ClusterIP`, `sessionAffinity:
/// None`, port `protocol: TCP`, `targetPort` = `port`, `externalTrafficPolicy: Cluster`
/// for NodePort and LoadBalancer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub spec: ServiceSpec,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub status: ServiceStatus,
}

/// What a service exposes and where traffic goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The pods behind the service; without one, Endpoints are managed by hand.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub selector: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub ports: Vec<ServicePort>,
    /// Assigned from the service range when empty; `None` makes a headless service.
    /// Immutable once set.
    #[serde(rename = "clusterIP", default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// `clusterIP` first, then one per further IP family.
    #[serde(
        rename = "clusterIPs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub cluster_ips: Vec<String>,
    #[serde(
        rename = "externalIPs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub external_ips: Vec<String>,
    /// For `ExternalName`: the DNS name the service aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// `None` (default) or `ClientIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<String>,
    #[serde(
        rename = "loadBalancerIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<String>,
    /// `Cluster` or `Local`: whether node ports reach pods on other nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// `Cluster` or `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    /// Include pods that are not ready in the endpoints.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "crate::null_as_default"
    )]
    pub publish_not_ready_addresses: bool,
    /// `IPv4`, `IPv6`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub ip_families: Vec<String>,
    /// `SingleStack`, `PreferDualStack` or `RequireDualStack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
}

/// One port of a service and where it leads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Required, and unique, when the service has more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// The port on the ClusterIP.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub port: i32,
    /// The pods' port, by number or container port name; `port` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// For NodePort and LoadBalancer: the port opened on every node (30000–32767).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

/// What is known of a service beyond the cluster: its load balancer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub load_balancer: LoadBalancerStatus,
}

/// A LoadBalancer service's external addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One external address of a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Service {
    /// The service type, `ClusterIP` when unset.
    pub fn service_type(&self) -> &str {
        self.spec
            .type_
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or("ClusterIP")
    }

    /// Whether the service is headless (`clusterIP: None`): DNS names the pods directly.
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip.as_deref() == Some("None")
    }

    /// Carries over what the server allocated (cluster IPs, node ports) into an update
    /// that left them out, as Kubernetes does before validating, so that a manifest
    /// applied again with PUT keeps its addresses instead of failing as immutable.
    pub fn preserve_allocated_fields(&mut self, old: &Service) {
        if self.service_type() == "ExternalName" || old.service_type() == "ExternalName" {
            return;
        }
        if self.spec.cluster_ip.as_deref().is_none_or(str::is_empty)
            && self.spec.cluster_ips.is_empty()
        {
            self.spec.cluster_ip.clone_from(&old.spec.cluster_ip);
            self.spec.cluster_ips.clone_from(&old.spec.cluster_ips);
        }
        let wants_node_ports =
            |s: &Service| matches!(s.service_type(), "NodePort" | "LoadBalancer");
        if wants_node_ports(self) && wants_node_ports(old) {
            let mut used: BTreeSet<i32> =
                self.spec.ports.iter().filter_map(|p| p.node_port).collect();
            for port in self.spec.ports.iter_mut().filter(|p| p.node_port.is_none()) {
                let previous = old.spec.ports.iter().find(|o| {
                    o.port == port.port
                        && o.protocol.as_deref().unwrap_or("TCP")
                            == port.protocol.as_deref().unwrap_or("TCP")
                        && o.node_port.is_some_and(|n| !used.contains(&n))
                });
                if let Some(node_port) = previous.and_then(|o| o.node_port) {
                    used.insert(node_port);
                    port.node_port = Some(node_port);
                }
            }
        }
    }
}

impl_resource!(
    Service,
    kind = "Service",
    group = "",
    version = "v1",
    plural = "services",
    namespaced = true
);

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
/// The range node ports are taken from.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

impl Object for Service {
    const HAS_STATUS_SUBRESOURCE: bool = true;
    const NAME_RULE: NameRule = NameRule::Dns1035Label;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        let spec = &mut self.spec;
        spec.type_.get_or_insert_with(|| "ClusterIP".to_string());
        spec.session_affinity
            .get_or_insert_with(|| "None".to_string());
        for port in &mut spec.ports {
            port.protocol.get_or_insert_with(|| "TCP".to_string());
            if port.target_port.is_none() || port.target_port == Some(IntOrString::Int(0)) {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        if matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
            spec.external_traffic_policy
                .get_or_insert_with(|| "Cluster".to_string());
        }
        match (spec.cluster_ip.as_deref(), spec.cluster_ips.first()) {
            (Some(ip), None) if !ip.is_empty() => spec.cluster_ips = vec![ip.to_string()],
            (None | Some(""), Some(first)) => spec.cluster_ip = Some(first.clone()),
            _ => {}
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &self.spec;
        let service_type = self.service_type();
        if !SERVICE_TYPES.contains(&service_type) {
            errors.push(FieldError::not_supported(
                "spec.type",
                service_type,
                &SERVICE_TYPES,
            ));
        }
        let headless = self.is_headless();
        if service_type == "ExternalName" {
            match spec.external_name.as_deref() {
                None | Some("") => errors.push(FieldError::required("spec.externalName", "")),
                Some(name) => {
                    let trimmed = name.strip_suffix('.').unwrap_or(name);
                    errors.extend(invalid_each(
                        "spec.externalName",
                        name,
                        is_dns1123_subdomain(trimmed),
                    ));
                }
            }
            if spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
                errors.push(FieldError::forbidden(
                    "spec.clusterIP",
                    "may not be set for ExternalName services",
                ));
            }
        } else if spec.ports.is_empty() && !headless {
            errors.push(FieldError::required("spec.ports", ""));
        }

        let require_name = spec.ports.len() > 1;
        let mut names = BTreeSet::new();
        let mut seen_ports = BTreeSet::new();
        let mut seen_node_ports = BTreeSet::new();
        for (i, port) in spec.ports.iter().enumerate() {
            let path = format!("spec.ports[{i}]");
            match port.name.as_deref().filter(|n| !n.is_empty()) {
                None if require_name => {
                    errors.push(FieldError::required(format!("{path}.name"), ""))
                }
                None => {}
                Some(name) => {
                    errors.extend(invalid_each(
                        &format!("{path}.name"),
                        name,
                        is_dns1123_label(name),
                    ));
                    if !names.insert(name) {
                        errors.push(FieldError::duplicate(format!("{path}.name"), name));
                    }
                }
            }
            for message in is_valid_port_num(i64::from(port.port)) {
                errors.push(FieldError::invalid(
                    format!("{path}.port"),
                    port.port,
                    message,
                ));
            }
            validate_protocol(
                port.protocol.as_deref(),
                &format!("{path}.protocol"),
                &mut errors,
            );
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if !seen_ports.insert((port.port, protocol)) {
                errors.push(FieldError::duplicate(
                    path.clone(),
                    format!("{}/{protocol}", port.port),
                ));
            }
            if let Some(target) = &port.target_port {
                validate_port_num_or_name(target, &format!("{path}.targetPort"), &mut errors);
            }
            if let Some(node_port) = port.node_port.filter(|p| *p != 0) {
                let node_port_path = format!("{path}.nodePort");
                if !matches!(service_type, "NodePort" | "LoadBalancer") {
                    errors.push(FieldError::forbidden(
                        node_port_path,
                        format!("may not be used when `type` is '{service_type}'"),
                    ));
                } else if !NODE_PORT_RANGE.contains(&node_port) {
                    errors.push(FieldError::invalid(
                        node_port_path,
                        node_port,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORT_RANGE.start(),
                            NODE_PORT_RANGE.end()
                        ),
                    ));
                } else if !seen_node_ports.insert((node_port, protocol)) {
                    errors.push(FieldError::duplicate(node_port_path, node_port));
                }
            }
        }

        if let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            errors.extend(invalid_each("spec.clusterIP", ip, is_valid_ip(ip)));
        }
        for (i, ip) in spec.cluster_ips.iter().enumerate() {
            if ip != "None" {
                errors.extend(invalid_each(
                    &format!("spec.clusterIPs[{i}]"),
                    ip,
                    is_valid_ip(ip),
                ));
            }
        }
        if let (Some(ip), Some(first)) = (
            spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()),
            spec.cluster_ips.first(),
        ) && ip != first
        {
            errors.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                first,
                "must match `clusterIP`",
            ));
        }
        for (i, ip) in spec.external_ips.iter().enumerate() {
            errors.extend(invalid_each(
                &format!("spec.externalIPs[{i}]"),
                ip,
                is_valid_ip(ip),
            ));
        }
        errors.extend(validate_labels(&spec.selector, "spec.selector"));

        const AFFINITIES: [&str; 2] = ["ClientIP", "None"];
        if let Some(affinity) = spec
            .session_affinity
            .as_deref()
            .filter(|a| !AFFINITIES.contains(a))
        {
            errors.push(FieldError::not_supported(
                "spec.sessionAffinity",
                affinity,
                &AFFINITIES,
            ));
        }
        const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
        if let Some(policy) = spec
            .external_traffic_policy
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            if !TRAFFIC_POLICIES.contains(&policy) {
                errors.push(FieldError::not_supported(
                    "spec.externalTrafficPolicy",
                    policy,
                    &TRAFFIC_POLICIES,
                ));
            } else if !matches!(service_type, "NodePort" | "LoadBalancer") {
                errors.push(FieldError::invalid(
                    "spec.externalTrafficPolicy",
                    policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                ));
            }
        }
        if let Some(policy) = spec
            .internal_traffic_policy
            .as_deref()
            .filter(|p| !TRAFFIC_POLICIES.contains(p))
        {
            errors.push(FieldError::not_supported(
                "spec.internalTrafficPolicy",
                policy,
                &TRAFFIC_POLICIES,
            ));
        }
        const FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
        let mut families = BTreeSet::new();
        for (i, family) in spec.ip_families.iter().enumerate() {
            let path = format!("spec.ipFamilies[{i}]");
            if !FAMILIES.contains(&family.as_str()) {
                errors.push(FieldError::not_supported(path, family, &FAMILIES));
            } else if !families.insert(family) {
                errors.push(FieldError::duplicate(path, family));
            }
        }
        const FAMILY_POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];
        if let Some(policy) = spec
            .ip_family_policy
            .as_deref()
            .filter(|p| !FAMILY_POLICIES.contains(p))
        {
            errors.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                policy,
                &FAMILY_POLICIES,
            ));
        }
        errors
    }

    /// The cluster IP may not change once set (except to or from ExternalName).
    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = self.validate();
        let external = |s: &Service| s.service_type() == "ExternalName";
        let old_ip = old.spec.cluster_ip.as_deref().unwrap_or("");
        let new_ip = self.spec.cluster_ip.as_deref().unwrap_or("");
        if !old_ip.is_empty() && !external(old) && !external(self) && new_ip != old_ip {
            errors.push(FieldError::invalid(
                "spec.clusterIP",
                new_ip,
                IMMUTABLE_ERROR,
            ));
        }
        errors
    }
}

// =======================================================================================
// Endpoints

/// The addresses behind a service, kept by the endpoints controller: ready pods in
/// `addresses`, the others in `notReadyAddresses`. Defaults: port `protocol: TCP`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub subsets: Vec<EndpointSubset>,
}

/// Addresses that all serve the same ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub addresses: Vec<EndpointAddress>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub ports: Vec<EndpointPort>,
}

/// One pod (or other address) behind a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The pod behind the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

/// A port the addresses of a subset serve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// The service port's name; required when there is more than one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl_resource!(
    Endpoints,
    kind = "Endpoints",
    group = "",
    version = "v1",
    plural = "endpoints",
    namespaced = true
);

impl Object for Endpoints {
    const HAS_STATUS_SUBRESOURCE: bool = false;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        for port in self.subsets.iter_mut().flat_map(|s| s.ports.iter_mut()) {
            port.protocol.get_or_insert_with(|| "TCP".to_string());
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, subset) in self.subsets.iter().enumerate() {
            let path = format!("subsets[{i}]");
            if subset.addresses.is_empty() && subset.not_ready_addresses.is_empty() {
                errors.push(FieldError::required(
                    path.clone(),
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (field, addresses) in [
                ("addresses", &subset.addresses),
                ("notReadyAddresses", &subset.not_ready_addresses),
            ] {
                for (j, address) in addresses.iter().enumerate() {
                    let path = format!("{path}.{field}[{j}]");
                    errors.extend(invalid_each(
                        &format!("{path}.ip"),
                        &address.ip,
                        is_valid_ip(&address.ip),
                    ));
                    if let Some(hostname) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
                        errors.extend(invalid_each(
                            &format!("{path}.hostname"),
                            hostname,
                            is_dns1123_label(hostname),
                        ));
                    }
                    if let Some(node) = address.node_name.as_deref().filter(|n| !n.is_empty()) {
                        errors.extend(invalid_each(
                            &format!("{path}.nodeName"),
                            node,
                            is_dns1123_subdomain(node),
                        ));
                    }
                }
            }
            if subset.ports.is_empty() {
                errors.push(FieldError::required(format!("{path}.ports"), ""));
            }
            let require_name = subset.ports.len() > 1;
            for (j, port) in subset.ports.iter().enumerate() {
                let path = format!("{path}.ports[{j}]");
                match port.name.as_deref().filter(|n| !n.is_empty()) {
                    None if require_name => {
                        errors.push(FieldError::required(format!("{path}.name"), ""))
                    }
                    None => {}
                    Some(name) => errors.extend(invalid_each(
                        &format!("{path}.name"),
                        name,
                        is_dns1123_label(name),
                    )),
                }
                for message in is_valid_port_num(i64::from(port.port)) {
                    errors.push(FieldError::invalid(
                        format!("{path}.port"),
                        port.port,
                        message,
                    ));
                }
                validate_protocol(
                    port.protocol.as_deref(),
                    &format!("{path}.protocol"),
                    &mut errors,
                );
            }
        }
        errors
    }
}

// =======================================================================================
// ConfigMap

/// Most bytes a ConfigMap's or Secret's data may hold.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET_ERROR: &str = "field is immutable when `immutable` is set";

/// Configuration as keys and values, for environment variables and volume files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    /// UTF-8 values.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub data: BTreeMap<String, String>,
    /// Binary values, base64 on the wire (kept as that text here).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub binary_data: BTreeMap<String, String>,
    /// Once true, data can no longer change (and `immutable` cannot be unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl ConfigMap {
    /// The bytes of `key`, from `data` or (decoded) `binaryData`.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        match self.data.get(key) {
            Some(value) => Some(value.clone().into_bytes()),
            None => BASE64.decode(self.binary_data.get(key)?).ok(),
        }
    }
}

impl_resource!(
    ConfigMap,
    kind = "ConfigMap",
    group = "",
    version = "v1",
    plural = "configmaps",
    namespaced = true
);

/// An error at `path` for base64 text that does not decode; the value is not shown.
fn invalid_base64(path: String, error: base64::DecodeError) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Invalid,
        field: path,
        value: None,
        detail: format!("must be valid base64 data: {error}"),
    }
}

impl Object for ConfigMap {
    const HAS_STATUS_SUBRESOURCE: bool = false;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }

    /// Keys are config-map keys, not repeated between `data` and `binaryData`, and all
    /// values together hold at most 1 MiB.
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut total = 0;
        for (key, value) in &self.data {
            let path = format!("data[{key}]");
            errors.extend(invalid_each(&path, key, is_config_map_key(key)));
            if self.binary_data.contains_key(key) {
                errors.push(FieldError::invalid(
                    path,
                    key,
                    "duplicate of key present in binaryData",
                ));
            }
            total += value.len();
        }
        for (key, value) in &self.binary_data {
            let path = format!("binaryData[{key}]");
            errors.extend(invalid_each(&path, key, is_config_map_key(key)));
            match BASE64.decode(value) {
                Ok(bytes) => total += bytes.len(),
                Err(error) => errors.push(invalid_base64(path, error)),
            }
        }
        if total > MAX_DATA_SIZE {
            errors.push(FieldError::too_long("data", MAX_DATA_SIZE));
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errors.push(FieldError::forbidden("immutable", IMMUTABLE_SET_ERROR));
            }
            if self.data != old.data {
                errors.push(FieldError::forbidden("data", IMMUTABLE_SET_ERROR));
            }
            if self.binary_data != old.binary_data {
                errors.push(FieldError::forbidden("binaryData", IMMUTABLE_SET_ERROR));
            }
        }
        errors.extend(self.validate());
        errors
    }
}

// =======================================================================================
// Secret

/// Sensitive keys and values. `data` holds base64 text; `stringData` is a write-only
/// convenience that the defaults merge into `data`. Default `type: Opaque`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    /// `Opaque` (default), `kubernetes.io/tls`, `kubernetes.io/dockerconfigjson`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Values as base64 text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub data: BTreeMap<String, String>,
    /// Plain-text values, merged into `data` (and overriding it) on write.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    /// The decoded bytes of `key`, if present and valid base64.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        BASE64.decode(self.data.get(key)?).ok()
    }

    /// Sets `key` to `value`, base64-encoding it.
    pub fn insert(&mut self, key: impl Into<String>, value: impl AsRef<[u8]>) {
        self.data.insert(key.into(), BASE64.encode(value));
    }
}

impl_resource!(
    Secret,
    kind = "Secret",
    group = "",
    version = "v1",
    plural = "secrets",
    namespaced = true
);

impl Object for Secret {
    const HAS_STATUS_SUBRESOURCE: bool = false;

    /// `type: Opaque` when unset, and `stringData` merged into `data` (base64) and
    /// cleared, as the API server does.
    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
        if self.type_.as_deref().is_none_or(str::is_empty) {
            self.type_ = Some("Opaque".to_string());
        }
        for (key, value) in std::mem::take(&mut self.string_data) {
            self.insert(key, value);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut total = 0;
        for (key, value) in &self.data {
            let path = format!("data[{key}]");
            errors.extend(invalid_each(&path, key, is_config_map_key(key)));
            match BASE64.decode(value) {
                Ok(bytes) => total += bytes.len(),
                Err(error) => errors.push(invalid_base64(path, error)),
            }
        }
        for (key, value) in &self.string_data {
            errors.extend(invalid_each(
                &format!("stringData[{key}]"),
                key,
                is_config_map_key(key),
            ));
            total += value.len();
        }
        if total > MAX_DATA_SIZE {
            errors.push(FieldError::too_long("data", MAX_DATA_SIZE));
        }
        let has = |key: &str| self.data.contains_key(key) || self.string_data.contains_key(key);
        let mut require = |key: &str| {
            if !has(key) {
                errors.push(FieldError::required(format!("data[{key}]"), ""));
            }
        };
        match self.type_.as_deref().unwrap_or("Opaque") {
            "kubernetes.io/tls" => {
                require("tls.crt");
                require("tls.key");
            }
            "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson"),
            "kubernetes.io/dockercfg" => require(".dockercfg"),
            "kubernetes.io/ssh-auth" => require("ssh-privatekey"),
            // skiff's API tokens: the SHA-256 of the token and the identity it proves.
            "skiff.dev/token" => {
                require("tokenHash");
                require("user");
            }
            // A join token (`skiff token create`) and a node's own credential.
            "bootstrap.kubernetes.io/token" => {
                require("token-id");
                require("tokenHash");
                require("expiration");
            }
            "skiff.dev/node-token" => {
                require("tokenHash");
                require("node");
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                require("username");
                require("password");
            }
            _ => {}
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let type_of = |s: &Secret| s.type_.as_deref().unwrap_or("").to_string();
        let mut errors = validate_immutable(&type_of(self), &type_of(old), "type");
        if old.immutable == Some(true) {
            if self.immutable != Some(true) {
                errors.push(FieldError::forbidden("immutable", IMMUTABLE_SET_ERROR));
            }
            if self.data != old.data {
                errors.push(FieldError::forbidden("data", IMMUTABLE_SET_ERROR));
            }
        }
        errors.extend(self.validate());
        errors
    }
}

// =======================================================================================
// Event

/// Something that happened to an object, for people (`kubectl describe`, `get
/// events`). Events about cluster-scoped objects live in the `default` namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub metadata: ObjectMeta,
    /// The object the event is about.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub involved_object: ObjectReference,
    /// A short CamelCase word: `Scheduled`, `Pulled`, `BackOff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "is_default",
        deserialize_with = "crate::null_as_default"
    )]
    pub source: EventSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_timestamp: Option<String>,
    /// How many times it happened between the first and last timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// RFC 3339 with microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<EventSeries>,
    /// What was done (or failed): `Binding`, `Pulling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A second object involved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    /// `skiff-scheduler`, `skiff-node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<String>,
    /// The reporter's instance: a node name, a host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<String>,
}

/// Who reported an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A repeated event, counted instead of recorded again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventSeries {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_time: Option<String>,
}

impl_resource!(
    Event,
    kind = "Event",
    group = "",
    version = "v1",
    plural = "events",
    namespaced = true
);

impl Object for Event {
    const HAS_STATUS_SUBRESOURCE: bool = false;

    fn set_defaults(&mut self) {
        fill_type_meta::<Self>(&mut self.api_version, &mut self.kind);
    }

    /// Loose, as Kubernetes is with v1 events: `type` is `Normal` or `Warning` when
    /// given, and the involved object's namespace agrees with the event's (objects
    /// without a namespace report into `default`).
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        const TYPES: [&str; 2] = ["Normal", "Warning"];
        if let Some(type_) = self
            .type_
            .as_deref()
            .filter(|t| !t.is_empty() && !TYPES.contains(t))
        {
            errors.push(FieldError::not_supported("type", type_, &TYPES));
        }
        let namespace = self.metadata.namespace();
        let involved = self.involved_object.namespace.as_deref().unwrap_or("");
        let agrees = if involved.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            involved == namespace
        };
        if !agrees {
            errors.push(FieldError::invalid(
                "involvedObject.namespace",
                involved,
                "does not match event.namespace",
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::Resource;
    use crate::validation::validate_object_meta;

    fn strings(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(value: Value) -> T {
        let typed: T = serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            value,
            "nothing lost, nothing added"
        );
        typed
    }

    #[test]
    fn a_pod_references_the_config_maps_and_secrets_of_its_volumes_and_env() {
        let spec: PodSpec = serde_json::from_value(json!({
            "initContainers": [{ "name": "init", "image": "i.wasm",
                "envFrom": [{ "secretRef": { "name": "init-secret" } }] }],
            "containers": [{ "name": "main", "image": "m.wasm",
                "env": [
                    { "name": "A", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "a" } } },
                    { "name": "B", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } },
                    { "name": "C", "value": "plain" },
                ],
                "envFrom": [{ "configMapRef": { "name": "settings" } }] }],
            "volumes": [
                { "name": "v1", "configMap": { "name": "files" } },
                { "name": "v2", "secret": { "secretName": "tls" } },
                { "name": "v3", "emptyDir": {} },
            ],
        }))
        .unwrap();
        let found: Vec<String> = spec
            .references()
            .iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect();
        assert_eq!(
            found,
            [
                "configmaps/files",
                "configmaps/settings",
                "secrets/db",
                "secrets/init-secret",
                "secrets/tls",
            ]
        );
    }

    fn realistic_pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-7d4b9c-x2x9z",
                "generateName": "web-7d4b9c-",
                "namespace": "default",
                "uid": "0b6f3c5e-7a8e-4a8e-9a4c-3f2b1c0d9e8f",
                "resourceVersion": "1234",
                "creationTimestamp": "2024-05-01T12:00:00Z",
                "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
                "annotations": {"example.com/note": "hello"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
                    "uid": "6e1f", "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "config", "configMap": {"name": "web-config", "items": [{"key": "app.toml", "path": "app.toml", "mode": 420}], "defaultMode": 420, "optional": true}},
                    {"name": "certs", "secret": {"secretName": "web-tls", "defaultMode": 256}},
                    {"name": "host", "hostPath": {"path": "/var/data", "type": "DirectoryOrCreate"}}
                ],
                "initContainers": [{"name": "migrate", "image": "sha256:abcd", "args": ["--up"]}],
                "containers": [{
                    "name": "app",
                    "image": "registry.example/web:1.2",
                    "command": ["/web.wasm"],
                    "args": ["--port", "8080"],
                    "workingDir": "/",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090, "hostPort": 19090, "hostIP": "0.0.0.0", "protocol": "UDP"}],
                    "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "web-config"}}, {"secretRef": {"name": "web-secret", "optional": false}}],
                    "env": [
                        {"name": "MODE", "value": "production"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}},
                        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "level", "optional": true}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "token"}}}
                    ],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}, {"name": "scratch", "mountPath": "/tmp", "subPath": "t"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                    "startupProbe": {"exec": {"command": ["/bin/check"]}, "failureThreshold": 30, "terminationGracePeriodSeconds": 5},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "activeDeadlineSeconds": 3600,
                "dnsPolicy": "ClusterFirst",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "serviceAccountName": "default",
                "nodeName": "node-1",
                "hostNetwork": true,
                "hostname": "web-0",
                "subdomain": "web",
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
                            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-9"]}]
                        }]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]
                    },
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
                },
                "schedulerName": "default-scheduler",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "priority": 0
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-01T12:00:05Z"}],
                "hostIP": "192.168.1.10",
                "hostIPs": [{"ip": "192.168.1.10"}],
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}],
                "startTime": "2024-05-01T12:00:01Z",
                "initContainerStatuses": [{
                    "name": "migrate", "ready": false, "restartCount": 0, "image": "sha256:abcd", "imageID": "sha256:abcd",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2024-05-01T12:00:02Z", "finishedAt": "2024-05-01T12:00:03Z", "containerID": "skiff://1"}}
                }],
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 2, "image": "registry.example/web:1.2", "imageID": "sha256:ef01", "containerID": "skiff://2", "started": true,
                    "state": {"running": {"startedAt": "2024-05-01T12:00:04Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled", "message": "out of memory"}}
                }],
                "qosClass": "Burstable"
            }
        })
    }

    #[test]
    fn pod_round_trips_unchanged() {
        let mut value = realistic_pod();
        // `null` times are absent ones: they are not written back.
        value["status"]["conditions"][0]
            .as_object_mut()
            .unwrap()
            .remove("lastProbeTime");
        let pod: Pod = round_trip(value.clone());
        assert_eq!(
            pod.spec.containers[0].resources.limits["cpu"].to_millis(),
            Some(500)
        );
        assert_eq!(pod.status.pod_ip.as_deref(), Some("10.244.1.7"));
        assert_eq!(
            pod.status.container_statuses[0]
                .last_state
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            137
        );
        assert!(pod.is_ready());
        assert_eq!(
            pod.spec.containers[0]
                .liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .port,
            IntOrString::from("http")
        );

        let mut with_null = realistic_pod();
        with_null["status"]["conditions"][0]["lastProbeTime"] = Value::Null;
        let decoded: Pod = serde_json::from_value(with_null).unwrap();
        assert_eq!(decoded, pod);
    }

    #[test]
    fn realistic_pod_is_valid_and_defaults_change_nothing() {
        let mut pod: Pod = serde_json::from_value(realistic_pod()).unwrap();
        let before = pod.clone();
        pod.set_defaults();
        // Everything was already spelled out except the probes' defaulted timings.
        let probe = pod.spec.containers[0].readiness_probe.clone().unwrap();
        assert_eq!(
            (
                probe.timeout_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(1), Some(1), Some(3))
        );
        pod.spec.containers[0].readiness_probe = before.spec.containers[0].readiness_probe.clone();
        pod.spec.containers[0].startup_probe = before.spec.containers[0].startup_probe.clone();
        pod.spec.init_containers = before.spec.init_containers.clone();
        assert_eq!(pod, before);

        let mut pod: Pod = serde_json::from_value(realistic_pod()).unwrap();
        pod.set_defaults();
        assert_eq!(strings(pod.validate()), Vec::<String>::new());
    }

    #[test]
    fn wire_names_keep_kubernetes_acronyms() {
        let pod: Pod = serde_json::from_value(realistic_pod()).unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        for key in [
            "\"podIP\"",
            "\"podIPs\"",
            "\"hostIP\"",
            "\"hostIPs\"",
            "\"imageID\"",
            "\"containerID\"",
            "\"qosClass\"",
            "\"httpGet\"",
            "\"tcpSocket\"",
            "\"httpHeaders\"",
        ] {
            assert!(text.contains(key), "{key} missing");
        }
        let node = Node {
            spec: NodeSpec {
                pod_cidr: Some("10.244.1.0/24".into()),
                provider_id: Some("skiff://n1".into()),
                ..NodeSpec::default()
            },
            status: NodeStatus {
                node_info: NodeSystemInfo {
                    machine_id: "m".into(),
                    ..NodeSystemInfo::default()
                },
                ..NodeStatus::default()
            },
            ..Node::default()
        };
        let text = serde_json::to_string(&node).unwrap();
        for key in [
            "\"podCIDR\"",
            "\"providerID\"",
            "\"machineID\"",
            "\"systemUUID\"",
            "\"bootID\"",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        let service = Service {
            spec: ServiceSpec {
                cluster_ip: Some("None".into()),
                ..ServiceSpec::default()
            },
            ..Service::default()
        };
        assert!(
            serde_json::to_string(&service)
                .unwrap()
                .contains("\"clusterIP\":\"None\"")
        );
    }

    #[test]
    fn quantities_decode_from_yaml_numbers() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": 1, "memory": 1073741824}, "requests": {"cpu": 0.5}}}]}
        }))
        .unwrap();
        let resources = &pod.spec.containers[0].resources;
        assert_eq!(resources.limits["cpu"].to_millis(), Some(1000));
        assert_eq!(resources.requests["cpu"].to_millis(), Some(500));
        assert_eq!(resources.limits["memory"].to_bytes(), Some(1 << 30));
        let out = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            json!("1")
        );
    }

    #[test]
    fn nulls_read_as_empty() {
        // YAML `args:` with nothing after it is JSON null; Kubernetes reads it as empty.
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "volumes": null,
                "containers": [{"name": "a", "image": "x", "args": null, "env": null, "resources": null, "ports": [{"containerPort": 80, "name": null}]}],
                "nodeSelector": null
            },
            "status": null
        }))
        .unwrap();
        assert!(pod.spec.containers[0].args.is_empty());
        assert_eq!(
            pod.spec.containers[0].resources,
            ResourceRequirements::default()
        );
        assert_eq!(pod.spec.containers[0].ports[0].name, None);
        assert!(pod.validate().is_empty());
    }

    #[test]
    fn empty_objects_write_no_empty_sections() {
        let pod = Pod::default();
        assert_eq!(serde_json::to_value(&pod).unwrap(), json!({"metadata": {}}));
        let volume = Volume {
            name: "s".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        };
        assert_eq!(
            serde_json::to_value(&volume).unwrap(),
            json!({"name": "s", "emptyDir": {}})
        );
        let state = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"running": {}})
        );
    }

    #[test]
    fn resource_constants() {
        assert_eq!(
            (
                Pod::KIND,
                Pod::GROUP,
                Pod::VERSION,
                Pod::PLURAL,
                Pod::NAMESPACED
            ),
            ("Pod", "", "v1", "pods", true)
        );
        assert_eq!(Pod::api_version(), "v1");
        assert_eq!(
            (Namespace::PLURAL, Namespace::NAMESPACED),
            ("namespaces", false)
        );
        assert_eq!((Node::PLURAL, Node::NAMESPACED), ("nodes", false));
        assert_eq!(Service::PLURAL, "services");
        assert_eq!(Endpoints::PLURAL, "endpoints");
        assert_eq!(ConfigMap::PLURAL, "configmaps");
        assert_eq!(Secret::PLURAL, "secrets");
        assert_eq!(Event::PLURAL, "events");
        let with_status = [
            Namespace::HAS_STATUS_SUBRESOURCE,
            Node::HAS_STATUS_SUBRESOURCE,
            Pod::HAS_STATUS_SUBRESOURCE,
            Service::HAS_STATUS_SUBRESOURCE,
        ];
        assert_eq!(with_status, [true; 4]);
        let without = [
            Endpoints::HAS_STATUS_SUBRESOURCE,
            ConfigMap::HAS_STATUS_SUBRESOURCE,
            Secret::HAS_STATUS_SUBRESOURCE,
            Event::HAS_STATUS_SUBRESOURCE,
        ];
        assert_eq!(without, [false; 4]);
        assert_eq!(Namespace::NAME_RULE, NameRule::Dns1123Label);
        assert_eq!(Service::NAME_RULE, NameRule::Dns1035Label);
        assert_eq!(Pod::NAME_RULE, NameRule::Dns1123Subdomain);
    }

    // ---------------------------------------------------------------------------------
    // IntOrString, tolerations, node selectors

    #[test]
    fn int_or_string_wire_and_scaling() {
        assert_eq!(
            serde_json::from_value::<IntOrString>(json!(8080)).unwrap(),
            IntOrString::Int(8080)
        );
        assert_eq!(
            serde_json::from_value::<IntOrString>(json!("http")).unwrap(),
            IntOrString::from("http")
        );
        assert!(serde_json::from_value::<IntOrString>(json!(1u64 << 40)).is_err());
        assert!(serde_json::from_value::<IntOrString>(json!(1.5)).is_err());
        assert_eq!(serde_json::to_value(IntOrString::Int(3)).unwrap(), json!(3));
        assert_eq!(
            serde_json::to_value(IntOrString::from("25%")).unwrap(),
            json!("25%")
        );

        let quarter = IntOrString::from("25%");
        assert_eq!(quarter.scaled_value(10, true), Ok(3));
        assert_eq!(quarter.scaled_value(10, false), Ok(2));
        assert_eq!(quarter.scaled_value(4, true), Ok(1));
        assert_eq!(quarter.scaled_value(0, true), Ok(0));
        assert_eq!(IntOrString::Int(3).scaled_value(10, true), Ok(3));
        assert!(IntOrString::from("10").scaled_value(10, true).is_err());
        assert!(IntOrString::from("x%").scaled_value(10, true).is_err());
    }

    #[test]
    fn tolerations_tolerate_as_kubernetes() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(Into::into),
                operator: Some(op.into()),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                toleration_seconds: None,
            };
        assert!(t(Some("dedicated"), "Equal", Some("gpu"), Some("NoSchedule")).tolerates(&taint));
        assert!(t(Some("dedicated"), "Equal", Some("gpu"), None).tolerates(&taint));
        assert!(!t(Some("dedicated"), "Equal", Some("cpu"), None).tolerates(&taint));
        assert!(t(Some("dedicated"), "Exists", None, None).tolerates(&taint));
        assert!(t(None, "Exists", None, None).tolerates(&taint));
        assert!(!t(Some("dedicated"), "Exists", None, Some("NoExecute")).tolerates(&taint));
        assert!(!t(Some("other"), "Exists", None, None).tolerates(&taint));
    }

    #[test]
    fn node_selectors_match_labels_and_name() {
        let labels = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]);
        let req = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: exprs,
                match_fields: fields,
            }
        };
        assert!(term(vec![req("zone", "In", &["a", "b"])], vec![]).matches(&labels, "n1"));
        assert!(!term(vec![req("zone", "NotIn", &["a"])], vec![]).matches(&labels, "n1"));
        assert!(
            term(
                vec![req("cores", "Gt", &["4"]), req("cores", "Lt", &["16"])],
                vec![]
            )
            .matches(&labels, "n1")
        );
        assert!(!term(vec![req("cores", "Gt", &["8"])], vec![]).matches(&labels, "n1"));
        assert!(
            term(
                vec![req("gpu", "DoesNotExist", &[])],
                vec![req("metadata.name", "In", &["n1"])]
            )
            .matches(&labels, "n1")
        );
        assert!(!term(vec![], vec![req("metadata.name", "In", &["n1"])]).matches(&labels, "n2"));
        assert!(
            !term(vec![], vec![]).matches(&labels, "n1"),
            "an empty term matches nothing"
        );
        let selector = NodeSelector {
            node_selector_terms: vec![
                term(vec![req("zone", "In", &["z"])], vec![]),
                term(vec![req("zone", "Exists", &[])], vec![]),
            ],
        };
        assert!(selector.matches(&labels, "n1"), "terms are ORed");
    }

    // ---------------------------------------------------------------------------------
    // Pod defaults

    fn minimal_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "web.wasm", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap()
    }

    fn defaulted_pod() -> Pod {
        let mut pod = minimal_pod();
        pod.set_defaults();
        pod
    }

    #[test]
    fn pod_defaults() {
        let pod = defaulted_pod();
        assert_eq!(pod.api_version, "v1");
        assert_eq!(pod.kind, "Pod");
        let spec = &pod.spec;
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        let container = &spec.containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            container.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("File")
        );
        assert_eq!(container.ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(pod.status.qos_class.as_deref(), Some("BestEffort"));
        assert!(pod.validate().is_empty());

        let mut again = pod.clone();
        again.set_defaults();
        assert_eq!(again, pod, "defaults are idempotent");
    }

    #[test]
    fn probe_defaults() {
        let mut spec = PodSpec {
            containers: vec![Container {
                liveness_probe: Some(Probe {
                    http_get: Some(HttpGetAction {
                        port: 8080.into(),
                        ..HttpGetAction::default()
                    }),
                    ..Probe::default()
                }),
                readiness_probe: Some(Probe {
                    period_seconds: Some(3),
                    success_threshold: Some(0),
                    ..Probe::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        set_pod_spec_defaults(&mut spec);
        let liveness = spec.containers[0].liveness_probe.as_ref().unwrap();
        assert_eq!(liveness.period_seconds, Some(10));
        assert_eq!(liveness.timeout_seconds, Some(1));
        assert_eq!(liveness.success_threshold, Some(1));
        assert_eq!(liveness.failure_threshold, Some(3));
        assert_eq!(liveness.initial_delay_seconds, None);
        let http = liveness.http_get.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.scheme.as_deref(), Some("HTTP"));
        let readiness = spec.containers[0].readiness_probe.as_ref().unwrap();
        assert_eq!(readiness.period_seconds, Some(3), "given values stay");
        assert_eq!(
            readiness.success_threshold,
            Some(1),
            "zero means unset, as in Kubernetes"
        );
    }

    #[test]
    fn volume_env_toleration_defaults() {
        let mut spec: PodSpec = serde_json::from_value(json!({
            "volumes": [{"name": "c", "configMap": {"name": "x"}}, {"name": "s", "secret": {"secretName": "y", "defaultMode": 256}}],
            "containers": [{"name": "a", "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "tolerations": [{"key": "k", "value": "v", "effect": "NoSchedule"}]
        }))
        .unwrap();
        set_pod_spec_defaults(&mut spec);
        assert_eq!(
            spec.volumes[0].config_map.as_ref().unwrap().default_mode,
            Some(420)
        );
        assert_eq!(
            spec.volumes[1].secret.as_ref().unwrap().default_mode,
            Some(256)
        );
        let field_ref = spec.containers[0].env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(field_ref.api_version.as_deref(), Some("v1"));
        assert_eq!(spec.tolerations[0].operator.as_deref(), Some("Equal"));
    }

    #[test]
    fn requests_default_to_limits_and_qos_follows() {
        let mut pod: Pod = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap();
        pod.set_defaults();
        let resources = &pod.spec.containers[0].resources;
        assert_eq!(
            resources.requests["cpu"].as_str(),
            "250m",
            "a given request stays"
        );
        assert_eq!(
            resources.requests["memory"].as_str(),
            "64Mi",
            "a missing request is the limit"
        );
        assert_eq!(pod.status.qos_class.as_deref(), Some("Burstable"));

        let mut guaranteed: Pod = serde_json::from_value(json!({
            "spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}}}]}
        }))
        .unwrap();
        guaranteed.set_defaults();
        assert_eq!(
            guaranteed.status.qos_class.as_deref(),
            Some("Guaranteed"),
            "1 and 1000m are equal"
        );
    }

    // ---------------------------------------------------------------------------------
    // Pod validation

    /// The errors of the defaulted minimal pod after `change`.
    fn pod_errors(change: impl FnOnce(&mut Pod)) -> Vec<String> {
        let mut pod = defaulted_pod();
        change(&mut pod);
        strings(pod.validate())
    }

    fn container(pod: &mut Pod) -> &mut Container {
        &mut pod.spec.containers[0]
    }

    #[test]
    fn pod_needs_containers_with_names_and_images() {
        assert_eq!(
            pod_errors(|p| p.spec.containers.clear()),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            pod_errors(|p| container(p).name.clear()),
            ["spec.containers[0].name: Required value"]
        );
        let errors = pod_errors(|p| container(p).name = "App_1".into());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "spec.containers[0].name: Invalid value: \"App_1\": a lowercase RFC 1123 label"
            ),
            "{errors:?}"
        );
        assert_eq!(
            pod_errors(|p| container(p).image = None),
            ["spec.containers[0].image: Required value"]
        );
        assert_eq!(
            pod_errors(|p| container(p).image = Some(" ".into())),
            ["spec.containers[0].image: Required value"]
        );
        let errors = pod_errors(|p| {
            let mut init = p.spec.containers[0].clone();
            init.ports.clear();
            p.spec.init_containers.push(init);
        });
        assert_eq!(
            errors,
            ["spec.initContainers[0].name: Duplicate value: \"app\""]
        );
        let errors = pod_errors(|p| {
            let second = p.spec.containers[0].clone();
            p.spec.containers.push(second);
        });
        assert_eq!(
            errors,
            ["spec.containers[1].name: Duplicate value: \"app\""]
        );
        assert_eq!(
            pod_errors(|p| container(p).image_pull_policy = Some("Sometimes".into())),
            [
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\""
            ]
        );
    }

    #[test]
    fn pod_ports() {
        assert_eq!(
            pod_errors(|p| container(p).ports[0].container_port = 0),
            ["spec.containers[0].ports[0].containerPort: Required value"]
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].container_port = 70000),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].host_port = Some(0)),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].host_port = Some(65535)),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].host_port = Some(-1)),
            [
                "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].protocol = Some("HTTP".into())),
            [
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).ports[0].name = Some("8080".into())),
            [
                "spec.containers[0].ports[0].name: Invalid value: \"8080\": must contain at least one letter (a-z)"
            ]
        );
        let errors = pod_errors(|p| {
            let mut second = p.spec.containers[0].ports[0].clone();
            second.container_port = 8081;
            container(p).ports.push(second);
        });
        assert_eq!(
            errors,
            ["spec.containers[0].ports[1].name: Duplicate value: \"http\""]
        );
    }

    #[test]
    fn pod_env() {
        let var = |name: &str, value: Option<&str>, from: Option<EnvVarSource>| EnvVar {
            name: name.into(),
            value: value.map(Into::into),
            value_from: from,
        };
        let config_ref = |key: &str| EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "cfg".into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        };
        assert_eq!(
            pod_errors(
                |p| container(p).env = vec![var("A", Some("1"), None), var("A", Some("2"), None)]
            ),
            Vec::<String>::new(),
            "duplicate names are allowed"
        );
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("", Some("1"), None)]),
            ["spec.containers[0].env[0].name: Required value"]
        );
        let errors = pod_errors(|p| container(p).env = vec![var("1A", None, None)]);
        assert!(errors[0].starts_with("spec.containers[0].env[0].name: Invalid value: \"1A\": a valid environment variable name"));
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("A", None, Some(EnvVarSource::default()))]),
            [
                "spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("A", Some("x"), Some(config_ref("k")))]),
            [
                "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"
            ]
        );
        let mut two = config_ref("k");
        two.secret_key_ref = Some(SecretKeySelector {
            name: "s".into(),
            key: "k".into(),
            optional: None,
        });
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("A", None, Some(two))]),
            [
                "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("A", None, Some(config_ref("")))]),
            ["spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Required value"]
        );
        let field = EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "spec.containers".into(),
            }),
            ..EnvVarSource::default()
        };
        let errors = pod_errors(|p| container(p).env = vec![var("A", None, Some(field))]);
        assert!(errors[0].starts_with("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.containers\""));
        let label = EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.labels['app']".into(),
            }),
            ..EnvVarSource::default()
        };
        assert_eq!(
            pod_errors(|p| container(p).env = vec![var("A", None, Some(label))]),
            Vec::<String>::new()
        );
        let errors = pod_errors(|p| container(p).env_from = vec![EnvFromSource::default()]);
        assert_eq!(
            errors,
            [
                "spec.containers[0].envFrom[0]: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`"
            ]
        );
    }

    #[test]
    fn pod_volumes_and_mounts() {
        let empty_dir = |name: &str| Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        };
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..VolumeMount::default()
        };
        assert_eq!(
            pod_errors(|p| {
                p.spec.volumes = vec![empty_dir("data")];
                container(p).volume_mounts = vec![mount("data", "/data")];
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| container(p).volume_mounts = vec![mount("data", "/data")]),
            ["spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
        );
        assert_eq!(
            pod_errors(|p| {
                p.spec.volumes = vec![empty_dir("data")];
                container(p).volume_mounts = vec![mount("data", "data"), mount("data", "data")];
            }),
            [
                "spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"data\": must be an absolute path",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"data\": must be an absolute path",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"data\": must be unique",
            ]
        );
        assert_eq!(
            pod_errors(|p| {
                p.spec.volumes = vec![empty_dir("data")];
                container(p).volume_mounts = vec![VolumeMount {
                    sub_path: Some("../up".into()),
                    ..mount("data", "/d")
                }];
            }),
            [
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../up\": must not contain '..'"
            ]
        );
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![empty_dir("a"), empty_dir("a")]),
            ["spec.volumes[1].name: Duplicate value: \"a\""]
        );
        let errors = pod_errors(|p| p.spec.volumes = vec![empty_dir("Data")]);
        assert!(errors[0].starts_with("spec.volumes[0].name: Invalid value: \"Data\""));
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![Volume {
                name: "a".into(),
                ..Volume::default()
            }]),
            ["spec.volumes[0]: Required value: must specify a volume type"]
        );
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![Volume {
                config_map: Some(ConfigMapVolumeSource {
                    name: "c".into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..empty_dir("a")
            }]),
            ["spec.volumes[0].configMap: Forbidden: may not specify more than 1 volume type"]
        );
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![Volume {
                name: "s".into(),
                secret: Some(SecretVolumeSource {
                    default_mode: Some(0o1000),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            [
                "spec.volumes[0].secret.secretName: Required value",
                "spec.volumes[0].secret.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
            ]
        );
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![Volume {
                name: "c".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    items: vec![KeyToPath {
                        key: "".into(),
                        path: "/abs".into(),
                        mode: None
                    }],
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            [
                "spec.volumes[0].configMap.items[0].key: Required value",
                "spec.volumes[0].configMap.items[0].path: Invalid value: \"/abs\": must be a relative path",
            ]
        );
        assert_eq!(
            pod_errors(|p| p.spec.volumes = vec![Volume {
                name: "h".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "".into(),
                    type_: Some("Dir".into())
                }),
                ..Volume::default()
            }]),
            [
                "spec.volumes[0].hostPath.path: Required value",
                "spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
            ]
        );
    }

    #[test]
    fn pod_restart_policy_and_timings() {
        assert_eq!(
            pod_errors(|p| p.spec.restart_policy = Some("Sometimes".into())),
            [
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
            ]
        );
        assert_eq!(
            pod_errors(|p| p.spec.termination_grace_period_seconds = Some(-1)),
            [
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        assert_eq!(
            pod_errors(|p| p.spec.termination_grace_period_seconds = Some(0)),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| p.spec.active_deadline_seconds = Some(0)),
            [
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"
            ]
        );
    }

    #[test]
    fn pod_resources() {
        let set = |p: &mut Pod, limits: &[(&str, &str)], requests: &[(&str, &str)]| {
            let map = |pairs: &[(&str, &str)]| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity::from(*v)))
                    .collect()
            };
            container(p).resources = ResourceRequirements {
                limits: map(limits),
                requests: map(requests),
            };
        };
        assert_eq!(
            pod_errors(|p| set(p, &[("cpu", "500m")], &[("cpu", "500m")])),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| set(p, &[("cpu", "500m")], &[("cpu", "600m")])),
            [
                "spec.containers[0].resources.requests: Invalid value: \"600m\": must be less than or equal to cpu limit of 500m"
            ]
        );
        assert_eq!(
            pod_errors(|p| set(p, &[("memory", "-1Mi")], &[])),
            [
                "spec.containers[0].resources.limits[memory]: Invalid value: \"-1Mi\": must be greater than or equal to 0"
            ]
        );
        assert_eq!(
            pod_errors(|p| set(p, &[], &[("cpu", "lots")])),
            [
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ]
        );
        assert_eq!(
            pod_errors(|p| set(p, &[("gpu", "1")], &[])),
            [
                "spec.containers[0].resources.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers"
            ]
        );
        assert_eq!(
            pod_errors(|p| set(p, &[("example.com/gpu", "2")], &[("example.com/gpu", "2")])),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| set(p, &[("example.com/gpu", "2")], &[("example.com/gpu", "1")])),
            [
                "spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2"
            ]
        );
    }

    #[test]
    fn pod_probes() {
        let http = |port: IntOrString| Probe {
            http_get: Some(HttpGetAction {
                path: Some("/".into()),
                port,
                scheme: Some("HTTP".into()),
                ..HttpGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            pod_errors(|p| container(p).liveness_probe = Some(http("http".into()))),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| container(p).liveness_probe = Some(Probe::default())),
            ["spec.containers[0].livenessProbe: Required value: must specify a handler type"]
        );
        assert_eq!(
            pod_errors(|p| container(p).liveness_probe = Some(Probe {
                exec: Some(ExecAction {
                    command: vec!["true".into()]
                }),
                ..http(8080.into())
            })),
            [
                "spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(http(0.into()))),
            [
                "spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(http("web--port".into()))),
            [
                "spec.containers[0].readinessProbe.httpGet.port: Invalid value: \"web--port\": must not contain consecutive hyphens"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: 70000.into(),
                    host: None
                }),
                ..Probe::default()
            })),
            [
                "spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(Probe {
                exec: Some(ExecAction::default()),
                ..Probe::default()
            })),
            ["spec.containers[0].readinessProbe.exec.command: Required value"]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(Probe {
                failure_threshold: Some(-1),
                period_seconds: Some(-5),
                initial_delay_seconds: Some(-1),
                ..http(8080.into())
            })),
            [
                "spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].readinessProbe.periodSeconds: Invalid value: -5: must be greater than zero",
                "spec.containers[0].readinessProbe.failureThreshold: Invalid value: -1: must be greater than zero",
            ]
        );
        assert_eq!(
            pod_errors(|p| container(p).liveness_probe = Some(Probe {
                success_threshold: Some(2),
                ..http(8080.into())
            })),
            ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]
        );
        assert_eq!(
            pod_errors(|p| container(p).readiness_probe = Some(Probe {
                success_threshold: Some(2),
                ..http(8080.into())
            })),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| {
                let mut init = p.spec.containers[0].clone();
                init.name = "init".into();
                init.liveness_probe = Some(http(8080.into()));
                p.spec.init_containers.push(init);
            }),
            ["spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers"]
        );
    }

    #[test]
    fn pod_node_selector_affinity_tolerations() {
        let errors = pod_errors(|p| {
            p.spec.node_selector.insert("bad key".into(), "x".into());
        });
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "spec.nodeSelector: Invalid value: \"bad key\": name part must consist"
            )
        );

        let requirement = |key: &str, op: &str, values: &[&str]| NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let errors = pod_errors(|p| {
            p.spec.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: vec![
                                requirement("zone", "In", &[]),
                                requirement("zone", "Like", &["a"]),
                                requirement("cores", "Gt", &["1", "2"]),
                            ],
                            match_fields: vec![requirement("metadata.labels", "In", &["x"])],
                        }],
                    }),
                    preferred_during_scheduling_ignored_during_execution: vec![
                        PreferredSchedulingTerm {
                            weight: 0,
                            preference: NodeSelectorTerm::default(),
                        },
                    ],
                }),
                ..Affinity::default()
            })
        });
        let base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
        assert_eq!(
            errors,
            [
                format!("{base}.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
                format!("{base}.matchExpressions[1].operator: Invalid value: \"Like\": not a valid selector operator"),
                format!("{base}.matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
                format!("{base}.matchFields[0].key: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\""),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100".to_string(),
            ]
        );
        let errors = pod_errors(|p| {
            p.spec.affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(
                        NodeSelector::default(),
                    ),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            })
        });
        assert_eq!(
            errors,
            [
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term"
            ]
        );

        let toleration = |key: Option<&str>,
                          op: &str,
                          value: Option<&str>,
                          effect: Option<&str>,
                          seconds: Option<i64>| Toleration {
            key: key.map(Into::into),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: seconds,
        };
        assert_eq!(
            pod_errors(|p| p.spec.tolerations = vec![
                toleration(Some("k"), "Equal", Some("v"), Some("NoSchedule"), None),
                toleration(None, "Exists", None, None, None),
                toleration(Some("k"), "Exists", None, Some("NoExecute"), Some(60)),
            ]),
            Vec::<String>::new()
        );
        assert_eq!(
            pod_errors(|p| p.spec.tolerations = vec![
                toleration(Some("k"), "Maybe", None, Some("Sometimes"), None),
                toleration(None, "Equal", None, None, None),
                toleration(Some("k"), "Exists", Some("v"), None, None),
                toleration(Some("k"), "Equal", None, Some("NoSchedule"), Some(5)),
            ]),
            [
                "spec.tolerations[0].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\"",
                "spec.tolerations[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\"",
                "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.tolerations[2].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
                "spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ]
        );
    }

    #[test]
    fn pod_template_path_is_prefixed() {
        let template = PodTemplateSpec {
            metadata: ObjectMeta {
                labels: BTreeMap::from([("app".into(), "-bad".into())]),
                ..ObjectMeta::default()
            },
            spec: PodSpec::default(),
        };
        let errors = strings(validate_pod_template_spec(&template, "spec.template"));
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("spec.template.metadata.labels: Invalid value: \"-bad\""));
        assert_eq!(errors[1], "spec.template.spec.containers: Required value");
    }

    // ---------------------------------------------------------------------------------
    // Pod updates

    fn update_errors(change: impl FnOnce(&mut Pod)) -> Vec<String> {
        let old = defaulted_pod();
        let mut new = old.clone();
        change(&mut new);
        new.set_defaults();
        strings(new.validate_update(&old))
    }

    #[test]
    fn pod_updates_allowed() {
        assert_eq!(
            update_errors(|p| container(p).image = Some("web-v2.wasm".into())),
            Vec::<String>::new()
        );
        assert_eq!(
            update_errors(|p| p.spec.active_deadline_seconds = Some(60)),
            Vec::<String>::new()
        );
        assert_eq!(
            update_errors(|p| p.spec.node_name = Some("node-1".into())),
            Vec::<String>::new(),
            "the binding sets nodeName once"
        );
        assert_eq!(
            update_errors(|p| p.spec.tolerations.push(Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            })),
            Vec::<String>::new()
        );
        assert_eq!(
            update_errors(|p| p.status.phase = Some("Running".into())),
            Vec::<String>::new(),
            "status is not the spec"
        );
    }

    #[test]
    fn pod_updates_forbidden() {
        let errors = update_errors(|p| p.spec.restart_policy = Some("Never".into()));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
        assert!(
            errors[0].ends_with("changed: `spec.restartPolicy`"),
            "{}",
            errors[0]
        );

        let mut old = defaulted_pod();
        old.spec.node_name = Some("node-1".into());
        let mut new = old.clone();
        new.spec.node_name = Some("node-2".into());
        let errors = strings(new.validate_update(&old));
        assert!(
            errors[0].ends_with("changed: `spec.nodeName`"),
            "{errors:?}"
        );

        assert_eq!(
            update_errors(|p| {
                let mut c = p.spec.containers[0].clone();
                c.name = "second".into();
                p.spec.containers.push(c);
            }),
            ["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );

        let mut old = defaulted_pod();
        old.spec.active_deadline_seconds = Some(60);
        old.spec.tolerations = vec![Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        let mut new = old.clone();
        new.spec.active_deadline_seconds = Some(120);
        new.spec.tolerations.clear();
        assert_eq!(
            strings(new.validate_update(&old)),
            [
                "spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value",
                "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
            ]
        );
        new.spec.active_deadline_seconds = None;
        new.spec.tolerations = old.spec.tolerations.clone();
        assert_eq!(
            strings(new.validate_update(&old)),
            [
                "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"
            ]
        );
    }

    // ---------------------------------------------------------------------------------
    // Namespace and Node

    #[test]
    fn namespace_defaults_and_rules() {
        let mut ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
        ns.set_defaults();
        assert_eq!(
            serde_json::to_value(&ns).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
            })
        );
        assert!(ns.validate().is_empty());

        ns.metadata.deletion_timestamp = Some("2024-05-01T12:00:00Z".into());
        ns.spec.finalizers.clear();
        ns.status.phase = Some("Terminating".into());
        ns.set_defaults();
        assert!(
            ns.spec.finalizers.is_empty(),
            "a finalized namespace being deleted stays finalized"
        );
        assert_eq!(ns.status.phase.as_deref(), Some("Terminating"));

        ns.spec.finalizers = vec!["not valid".into()];
        assert_eq!(ns.validate()[0].field, "spec.finalizers");
        let errors = validate_object_meta(
            &ObjectMeta {
                name: Some("team.a".into()),
                ..ObjectMeta::default()
            },
            false,
            Namespace::NAME_RULE,
        );
        assert_eq!(
            strings(errors),
            ["metadata.name: Invalid value: \"team.a\": must not contain dots"]
        );
    }

    #[test]
    fn node_round_trip_defaults_and_rules() {
        let value = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {
                "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "skiff://node-1",
                "unschedulable": true,
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2024-05-01T12:00:00Z"}]
            },
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "7500m", "memory": "15Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T12:00:00Z", "lastTransitionTime": "2024-05-01T11:00:00Z", "reason": "KubeletReady", "message": "skiff node is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "m1", "systemUUID": "s1", "bootID": "b1", "kernelVersion": "6.8.0", "osImage": "Ubuntu 24.04",
                    "containerRuntimeVersion": "skiff://0.1.0", "kubeletVersion": "v1.30.0-skiff", "kubeProxyVersion": "",
                    "operatingSystem": "linux", "architecture": "amd64"
                }
            }
        });
        let mut node: Node = round_trip(value.clone());
        assert!(node.is_ready());
        assert_eq!(node.status.daemon_endpoints.kubelet_endpoint.port, 10250);
        node.set_defaults();
        assert!(node.validate().is_empty());
        let mut expected = value;
        expected["apiVersion"] = json!("v1");
        assert_eq!(
            serde_json::to_value(&node).unwrap(),
            expected,
            "defaults change nothing that is given"
        );

        let mut bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24"}, "status": {"capacity": {"cpu": "2"}}})).unwrap();
        bare.set_defaults();
        assert_eq!(bare.spec.pod_cidrs, ["10.0.0.0/24"]);
        assert_eq!(bare.status.allocatable["cpu"].as_str(), "2");

        let mut bad = bare.clone();
        bad.spec.pod_cidrs = vec!["10.0.0.0/33".into()];
        bad.spec.pod_cidr = Some("10.0.0.0/33".into());
        bad.spec.taints = vec![
            Taint {
                key: "a".into(),
                effect: "".into(),
                ..Taint::default()
            },
            Taint {
                key: "b".into(),
                effect: "Sometimes".into(),
                ..Taint::default()
            },
            Taint {
                key: "c".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            },
            Taint {
                key: "c".into(),
                effect: "NoSchedule".into(),
                value: Some("x".into()),
                ..Taint::default()
            },
        ];
        assert_eq!(
            strings(bad.validate()),
            [
                "spec.podCIDRs[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR",
                "spec.taints[0].effect: Required value",
                "spec.taints[1].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\"",
                "spec.taints[3].key: Duplicate value: \"c:NoSchedule\"",
            ]
        );

        let mut unassigned = bare.clone();
        unassigned.spec.pod_cidr = None;
        unassigned.spec.pod_cidrs.clear();
        assert!(
            bare.validate_update(&unassigned).is_empty(),
            "a pod range may be assigned once"
        );
        let mut moved = bare.clone();
        moved.spec.pod_cidr = Some("10.0.1.0/24".into());
        moved.spec.pod_cidrs = vec!["10.0.1.0/24".into()];
        assert_eq!(
            strings(moved.validate_update(&bare)),
            [
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ]
        );
    }

    // ---------------------------------------------------------------------------------
    // Service

    fn realistic_service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "protocol": "TCP", "appProtocol": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                    {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9090, "nodePort": 30090}
                ],
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "sessionAffinity": "None",
                "externalTrafficPolicy": "Cluster",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack"
            },
            "status": {"loadBalancer": {}}
        })
    }

    #[test]
    fn service_round_trips_and_is_valid() {
        let mut value = realistic_service();
        value.as_object_mut().unwrap().remove("status");
        let mut service: Service = round_trip(value.clone());
        // `status: {loadBalancer: {}}` is empty: read, not written.
        let with_status: Service = serde_json::from_value(realistic_service()).unwrap();
        assert_eq!(with_status, service);
        service.set_defaults();
        assert_eq!(
            serde_json::to_value(&service).unwrap(),
            value,
            "already fully defaulted"
        );
        assert!(service.validate().is_empty());
    }

    fn service(spec: Value) -> Service {
        let mut service: Service = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap();
        service.set_defaults();
        service
    }

    #[test]
    fn service_defaults() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80}, {"name": "b", "port": 81, "targetPort": "http"}]}),
        );
        assert_eq!(svc.spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(svc.spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(svc.spec.ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(svc.spec.ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(
            svc.spec.ports[1].target_port,
            Some(IntOrString::from("http"))
        );
        assert_eq!(svc.spec.external_traffic_policy, None);
        let node_port = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        assert_eq!(
            node_port.spec.external_traffic_policy.as_deref(),
            Some("Cluster")
        );
        let allocated = service(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.5"}));
        assert_eq!(allocated.spec.cluster_ips, ["10.96.0.5"]);
    }

    #[test]
    fn service_validation() {
        let errors = |spec: Value| strings(service(spec).validate());
        assert_eq!(
            errors(json!({"selector": {"app": "web"}})),
            ["spec.ports: Required value"]
        );
        assert_eq!(
            errors(json!({"clusterIP": "None"})),
            Vec::<String>::new(),
            "headless services need no ports"
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80}, {"port": 81}]})),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value"
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]})),
            ["spec.ports[1].name: Duplicate value: \"a\""]
        );
        assert_eq!(
            errors(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})),
            ["spec.ports[1]: Duplicate value: \"80/TCP\""]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 0, "targetPort": 8080}]})),
            ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "targetPort": 70000}]})),
            [
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "targetPort": "-http"}]})),
            [
                "spec.ports[0].targetPort: Invalid value: \"-http\": must not begin or end with a hyphen"
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "protocol": "ICMP"}]})),
            [
                "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80, "nodePort": 30080}]})),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        assert_eq!(
            errors(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]})),
            [
                "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
            ]
        );
        assert_eq!(
            errors(json!({"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 32767}]})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(json!({"type": "Weird", "ports": [{"port": 80}]})),
            [
                "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80}], "sessionAffinity": "Sticky"})),
            [
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0"})),
            [
                "spec.clusterIP: Invalid value: \"10.96.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.clusterIPs[0]: Invalid value: \"10.96.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ]
        );
        assert_eq!(
            errors(json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"})),
            [
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set when `type` is 'NodePort' or 'LoadBalancer'"
            ]
        );
        assert_eq!(
            errors(json!({"type": "ExternalName"})),
            ["spec.externalName: Required value"]
        );
        assert_eq!(
            errors(json!({"type": "ExternalName", "externalName": "db.example.com."})),
            Vec::<String>::new()
        );

        let bad_name = ObjectMeta {
            name: Some("1web".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        };
        let errors = strings(validate_object_meta(&bad_name, true, Service::NAME_RULE));
        assert!(
            errors[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"),
            "{errors:?}"
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = service(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.1"}));
        let mut new = service(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.2"}));
        assert_eq!(
            strings(new.validate_update(&old)),
            ["spec.clusterIP: Invalid value: \"10.96.0.2\": field is immutable"]
        );
        let unallocated = service(json!({"ports": [{"port": 80}]}));
        assert!(
            old.validate_update(&unallocated).is_empty(),
            "the first allocation is not a change"
        );

        new = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let old = service(
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}], "clusterIP": "10.96.0.1"}),
        );
        new.preserve_allocated_fields(&old);
        new.set_defaults();
        assert_eq!(new.spec.cluster_ip.as_deref(), Some("10.96.0.1"));
        assert_eq!(new.spec.cluster_ips, ["10.96.0.1"]);
        assert_eq!(new.spec.ports[0].node_port, Some(30001));
        assert!(new.validate_update(&old).is_empty());
    }

    // ---------------------------------------------------------------------------------
    // Endpoints, ConfigMap, Secret, Event

    #[test]
    fn endpoints_round_trip_and_rules() {
        let value = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "10.244.1.7", "hostname": "web-0", "nodeName": "node-1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "u1"}}],
                "notReadyAddresses": [{"ip": "10.244.2.3"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090, "protocol": "TCP", "appProtocol": "http"}]
            }]
        });
        let mut endpoints: Endpoints = round_trip(value);
        endpoints.set_defaults();
        assert!(endpoints.validate().is_empty());

        let mut bare: Endpoints = serde_json::from_value(json!({"subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 80}, {"port": 0}]}]})).unwrap();
        bare.set_defaults();
        assert_eq!(bare.subsets[0].ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            strings(bare.validate()),
            [
                "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
        let empty: Endpoints = serde_json::from_value(json!({"subsets": [{}]})).unwrap();
        assert_eq!(
            strings(empty.validate()),
            [
                "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`",
                "subsets[0].ports: Required value"
            ]
        );
    }

    #[test]
    fn config_map_rules() {
        let value = json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": "default"},
            "data": {"app.toml": "level = \"info\"\n", "LEVEL": "info"},
            "binaryData": {"logo.png": "iVBORw0KGgo="},
            "immutable": false
        });
        let cm: ConfigMap = round_trip(value);
        assert!(cm.validate().is_empty());
        assert_eq!(cm.value("LEVEL").as_deref(), Some(&b"info"[..]));
        assert_eq!(cm.value("logo.png").unwrap()[..4], [0x89, b'P', b'N', b'G']);

        let mut bad = cm.clone();
        bad.data.insert("a/b".into(), "x".into());
        bad.data.insert("logo.png".into(), "x".into());
        bad.binary_data.insert("raw".into(), "not base64!".into());
        let errors = strings(bad.validate());
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0]
                .starts_with("data[a/b]: Invalid value: \"a/b\": a valid config key must consist")
        );
        assert_eq!(
            errors[1],
            "data[logo.png]: Invalid value: \"logo.png\": duplicate of key present in binaryData"
        );
        assert!(
            errors[2].starts_with("binaryData[raw]: Invalid value: must be valid base64 data"),
            "{}",
            errors[2]
        );

        let mut big = ConfigMap::default();
        big.data.insert("a".into(), "x".repeat(MAX_DATA_SIZE));
        big.data.insert("b".into(), "x".into());
        assert_eq!(
            strings(big.validate()),
            ["data: Too long: must have at most 1048576 bytes"]
        );

        let mut frozen = cm.clone();
        frozen.immutable = Some(true);
        let mut changed = frozen.clone();
        changed.data.insert("LEVEL".into(), "debug".into());
        changed.immutable = None;
        assert_eq!(
            strings(changed.validate_update(&frozen)),
            [
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        let mut mutable_change = cm.clone();
        mutable_change.data.insert("LEVEL".into(), "debug".into());
        assert!(mutable_change.validate_update(&cm).is_empty());
    }

    #[test]
    fn secret_defaults_and_rules() {
        let mut secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "web-secret", "namespace": "default"},
            "data": {"token": "b2xk", "keep": "a2VlcA=="},
            "stringData": {"token": "new", "user": "admin"}
        }))
        .unwrap();
        secret.set_defaults();
        assert_eq!(
            serde_json::to_value(&secret).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "web-secret", "namespace": "default"},
                "type": "Opaque",
                "data": {"keep": "a2VlcA==", "token": "bmV3", "user": "YWRtaW4="}
            })
        );
        assert_eq!(secret.value("token").as_deref(), Some(&b"new"[..]));
        assert!(secret.validate().is_empty());

        let mut bad = secret.clone();
        bad.data.insert("bin".into(), "%%%".into());
        let errors = strings(bad.validate());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("data[bin]: Invalid value: must be valid base64 data"),
            "{errors:?}"
        );

        let mut tls = Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        };
        assert_eq!(
            strings(tls.validate()),
            [
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value"
            ]
        );
        tls.insert("tls.crt", "cert");
        tls.insert("tls.key", "key");
        assert!(tls.validate().is_empty());

        assert_eq!(
            strings(tls.validate_update(&secret)),
            ["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
        let mut frozen = secret.clone();
        frozen.immutable = Some(true);
        let mut changed = frozen.clone();
        changed.insert("token", "newer");
        assert_eq!(
            strings(changed.validate_update(&frozen)),
            ["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn event_round_trip_and_rules() {
        let value = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-0.17c8d9e2", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-0", "uid": "u1", "resourceVersion": "12", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container app",
            "source": {"component": "skiff-node", "host": "node-1"},
            "firstTimestamp": "2024-05-01T12:00:00Z",
            "lastTimestamp": "2024-05-01T12:05:00Z",
            "count": 5,
            "type": "Warning",
            "eventTime": "2024-05-01T12:00:00.000000Z",
            "series": {"count": 5, "lastObservedTime": "2024-05-01T12:05:00.000000Z"},
            "action": "Restarting",
            "related": {"kind": "Node", "name": "node-1"},
            "reportingComponent": "skiff-node",
            "reportingInstance": "node-1"
        });
        let event: Event = round_trip(value);
        assert!(event.validate().is_empty());

        let mut bad = event.clone();
        bad.type_ = Some("Info".into());
        bad.involved_object.namespace = Some("other".into());
        assert_eq!(
            strings(bad.validate()),
            [
                "type: Unsupported value: \"Info\": supported values: \"Normal\", \"Warning\"",
                "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace",
            ]
        );
        let mut node_event = event.clone();
        node_event.involved_object = ObjectReference {
            kind: Some("Node".into()),
            name: Some("node-1".into()),
            ..ObjectReference::default()
        };
        assert!(
            node_event.validate().is_empty(),
            "cluster-scoped objects report into default"
        );
        node_event.metadata.namespace = Some("kube-system".into());
        assert_eq!(node_event.validate()[0].field, "involvedObject.namespace");
    }
}
