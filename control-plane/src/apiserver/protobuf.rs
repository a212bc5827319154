//! Kubernetes' protobuf encoding, read for the kinds skiff takes in it: the objects
//! kubectl's typed `create` generators send (`create namespace`, `configmap`, `secret`,
//! `deployment`, `job`, `service`, `role`, `clusterrole`, `rolebinding`,
//! `clusterrolebinding`), and the access reviews (see [`super::reviews`]) that
//! `auth can-i` and `auth whoami` send. kubectl sends all of these only as protobuf and
//! never retries as JSON.
//!
//! A body is the 4 bytes `k8s\0` and a `runtime.Unknown` message: `typeMeta` (1: its
//! `apiVersion` 1 and `kind` 2), `raw` (2: the object's own message), `contentEncoding`
//! (3) and `contentType` (4). The object is decoded by [`Message`] tables of field
//! numbers into the JSON value the same object sent as JSON decodes to, so one code path
//! (typed defaults, validation) serves both. That is the JSON Go's encoder writes: a
//! protobuf body holds every plain (non-pointer) scalar field, set or not, and one that
//! holds its zero value is left out, as `omitempty` leaves it out; a field that is a
//! pointer in Go (`replicas`, `immutable`) is written only when set, so it is kept
//! whatever its value (`replicas: 0`).
//!
//! An object's decoding fails closed: a field its tables do not name is refused
//! ([`ProtobufError::UnknownField`]), never dropped, so what skiff keeps is what was
//! sent. The reviews skip such fields, as protobuf readers do: they are questions, not
//! objects kept. `status` is not read: a create ignores it (the server writes status),
//! so a status a client sends, empty or not, changes nothing.
//!
//! The tables' numbers are those of Kubernetes' `generated.proto` files
//! (`k8s.io/apimachinery/pkg/{runtime,apis/meta/v1,util/intstr,api/resource}`,
//! `k8s.io/api/{core,apps,batch,rbac,authorization,authentication}/v1`).
//!
//! A hand-written reader rather than generated code: a few dozen small messages do not
//! pay for a code generator and `protoc` in every build.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("it does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    Prefix,
    #[error("it ends inside a field")]
    Truncated,
    #[error("a varint is longer than 10 bytes")]
    LongVarint,
    #[error("wire type {0} is not a protobuf wire type")]
    WireType(u8),
    #[error("field {field}: wire type {wire} where {expected} was expected")]
    Mismatch {
        field: String,
        wire: u8,
        expected: &'static str,
    },
    #[error("field {0}: not UTF-8")]
    Utf8(String),
    #[error("field {0}: a time before 1970 or after 9999")]
    TimeRange(String),
    #[error("content encoding {0:?} is not supported")]
    Encoding(String),
    #[error("{api_version}, Kind={kind} is not read from protobuf")]
    Kind { api_version: String, kind: String },
    /// A field of an object that the tables do not name: refused rather than dropped.
    #[error("{}field {number} of {message} is not one skiff reads from protobuf", at(.path))]
    UnknownField {
        /// The protobuf message it is in, as `generated.proto` names it.
        message: &'static str,
        number: u64,
        /// Where that message is in the object (`spec.template.spec.containers[0]`);
        /// empty for the object itself.
        path: String,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// One field as it came off the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

impl Wire<'_> {
    fn number(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed => 1,
            Wire::Bytes(_) => 2,
        }
    }
}

/// Reads a message's fields in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or(ProtobufError::Truncated)?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::LongVarint)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated)?;
        if len > self.rest.len() {
            return Err(ProtobufError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// The next field's number and value; `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len = self.varint()?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            // Groups (3, 4) are proto1's; no Kubernetes message has them.
            other => return Err(ProtobufError::WireType(other as u8)),
        };
        Ok(Some((key >> 3, wire)))
    }
}

/// How a field read into JSON is shaped. "Plain" fields are not pointers in Go: a
/// protobuf body always holds them, and their zero value is left out of the JSON.
#[derive(Clone, Copy)]
enum Shape {
    /// A plain `string`.
    String,
    /// A `string` that is a pointer in Go (`*string`): kept even when empty.
    OptionalString,
    /// `repeated string`.
    Strings,
    /// A plain `int32` or `int64`.
    Int,
    /// An `int32` or `int64` that is a pointer in Go: kept even when 0.
    OptionalInt,
    /// A plain `bool`.
    Bool,
    /// A `bool` that is a pointer in Go: kept even when false.
    OptionalBool,
    /// `map<string, string>`.
    StringMap,
    /// `map<string, bytes>`: base64 text in JSON.
    BytesMap,
    /// `map<string, resource.Quantity>`: a quantity is its text in JSON.
    QuantityMap,
    /// `intstr.IntOrString`: a number or a string in JSON.
    IntOrString,
    /// `meta/v1.Time`: RFC 3339 text in JSON. An empty one (kubectl sends
    /// `creationTimestamp` so) is left out, as Go writes `null` for it.
    Time,
    Message(&'static Message),
    /// `repeated` message.
    Messages(&'static Message),
    /// Not read: `status`, which a create ignores (see the module's doc).
    Ignored,
}

/// A message skiff reads: its name in `generated.proto` (for errors) and its fields:
/// number, JSON name, shape.
struct Message {
    name: &'static str,
    fields: &'static [(u64, &'static str, Shape)],
}

/// What is done with a field the tables do not name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// Skipped, as protobuf readers do: for the reviews, which are questions.
    Skip,
    /// Refused: for objects, which are kept, so that nothing sent is lost.
    Refuse,
}

// ---- k8s.io/apimachinery ----

/// `meta/v1.ObjectMeta`. Not read: `deletionTimestamp` (9) and
/// `deletionGracePeriodSeconds` (10), which only the server sets, and `managedFields`
/// (17).
const OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        (1, "name", Shape::String),
        (2, "generateName", Shape::String),
        (3, "namespace", Shape::String),
        (4, "selfLink", Shape::String),
        (5, "uid", Shape::String),
        (6, "resourceVersion", Shape::String),
        (7, "generation", Shape::Int),
        (8, "creationTimestamp", Shape::Time),
        (11, "labels", Shape::StringMap),
        (12, "annotations", Shape::StringMap),
        (13, "ownerReferences", Shape::Messages(&OWNER_REFERENCE)),
        (14, "finalizers", Shape::Strings),
    ],
};

/// `meta/v1.OwnerReference`.
const OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        (5, "apiVersion", Shape::String),
        (1, "kind", Shape::String),
        (3, "name", Shape::String),
        (4, "uid", Shape::String),
        (6, "controller", Shape::OptionalBool),
        (7, "blockOwnerDeletion", Shape::OptionalBool),
    ],
};

/// `meta/v1.Time`, read into RFC 3339 text (see [`Shape::Time`]).
const TIME: Message = Message {
    name: "Time",
    fields: &[(1, "seconds", Shape::Int), (2, "nanos", Shape::Int)],
};

/// `meta/v1.LabelSelector`.
const LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        (1, "matchLabels", Shape::StringMap),
        (
            2,
            "matchExpressions",
            Shape::Messages(&LABEL_SELECTOR_REQUIREMENT),
        ),
    ],
};

/// `meta/v1.LabelSelectorRequirement`.
const LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        (1, "key", Shape::String),
        (2, "operator", Shape::String),
        (3, "values", Shape::Strings),
    ],
};

/// `util/intstr.IntOrString`, read into a number or a string (type 0 or 1).
const INT_OR_STRING: Message = Message {
    name: "IntOrString",
    fields: &[
        (1, "type", Shape::Int),
        (2, "intVal", Shape::Int),
        (3, "strVal", Shape::String),
    ],
};

/// `api/resource.Quantity`, read into its text.
const QUANTITY: Message = Message {
    name: "Quantity",
    fields: &[(1, "string", Shape::String)],
};

// ---- core/v1 ----

/// `core/v1.Namespace`.
const NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&NAMESPACE_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

const NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[(1, "finalizers", Shape::Strings)],
};

/// `core/v1.ConfigMap`.
const CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "data", Shape::StringMap),
        (3, "binaryData", Shape::BytesMap),
        (4, "immutable", Shape::OptionalBool),
    ],
};

/// `core/v1.Secret`.
const SECRET: Message = Message {
    name: "Secret",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "data", Shape::BytesMap),
        (3, "type", Shape::String),
        (4, "stringData", Shape::StringMap),
        (5, "immutable", Shape::OptionalBool),
    ],
};

/// `core/v1.Pod`.
const POD: Message = Message {
    name: "Pod",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&POD_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

/// `core/v1.PodTemplateSpec`.
const POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&POD_SPEC)),
    ],
};

/// `core/v1.PodSpec`: what the generators set and the plain fields a body always holds,
/// and a few simple fields besides. Not read: volumes, security contexts, affinity, DNS
/// config and the other structured fields skiff's pods do not use.
const POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        (2, "containers", Shape::Messages(&CONTAINER)),
        (3, "restartPolicy", Shape::String),
        (4, "terminationGracePeriodSeconds", Shape::OptionalInt),
        (5, "activeDeadlineSeconds", Shape::OptionalInt),
        (6, "dnsPolicy", Shape::String),
        (7, "nodeSelector", Shape::StringMap),
        (8, "serviceAccountName", Shape::String),
        (9, "serviceAccount", Shape::String),
        (10, "nodeName", Shape::String),
        (11, "hostNetwork", Shape::Bool),
        (12, "hostPID", Shape::Bool),
        (13, "hostIPC", Shape::Bool),
        (
            15,
            "imagePullSecrets",
            Shape::Messages(&LOCAL_OBJECT_REFERENCE),
        ),
        (16, "hostname", Shape::String),
        (17, "subdomain", Shape::String),
        (19, "schedulerName", Shape::String),
        (20, "initContainers", Shape::Messages(&CONTAINER)),
        (21, "automountServiceAccountToken", Shape::OptionalBool),
        (22, "tolerations", Shape::Messages(&TOLERATION)),
        (24, "priorityClassName", Shape::String),
        (25, "priority", Shape::OptionalInt),
        (27, "shareProcessNamespace", Shape::OptionalBool),
        (29, "runtimeClassName", Shape::OptionalString),
        (30, "enableServiceLinks", Shape::OptionalBool),
        (31, "preemptionPolicy", Shape::OptionalString),
        (35, "setHostnameAsFQDN", Shape::OptionalBool),
        (37, "hostUsers", Shape::OptionalBool),
    ],
};

/// `core/v1.Container`. Not read: probes, lifecycle, security context, volume mounts
/// and devices, `envFrom`, resize and restart rules.
const CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        (1, "name", Shape::String),
        (2, "image", Shape::String),
        (3, "command", Shape::Strings),
        (4, "args", Shape::Strings),
        (5, "workingDir", Shape::String),
        (6, "ports", Shape::Messages(&CONTAINER_PORT)),
        (7, "env", Shape::Messages(&ENV_VAR)),
        (8, "resources", Shape::Message(&RESOURCE_REQUIREMENTS)),
        (13, "terminationMessagePath", Shape::String),
        (14, "imagePullPolicy", Shape::String),
        (16, "stdin", Shape::Bool),
        (17, "stdinOnce", Shape::Bool),
        (18, "tty", Shape::Bool),
        (20, "terminationMessagePolicy", Shape::String),
        (24, "restartPolicy", Shape::OptionalString),
    ],
};

/// `core/v1.ContainerPort`.
const CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        (1, "name", Shape::String),
        (2, "hostPort", Shape::Int),
        (3, "containerPort", Shape::Int),
        (4, "protocol", Shape::String),
        (5, "hostIP", Shape::String),
    ],
};

/// `core/v1.EnvVar`. Not read: `valueFrom` (3).
const ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[(1, "name", Shape::String), (2, "value", Shape::String)],
};

/// `core/v1.ResourceRequirements`. Not read: `claims` (3).
const RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        (1, "limits", Shape::QuantityMap),
        (2, "requests", Shape::QuantityMap),
    ],
};

/// `core/v1.LocalObjectReference`.
const LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[(1, "name", Shape::String)],
};

/// `core/v1.Toleration`.
const TOLERATION: Message = Message {
    name: "Toleration",
    fields: &[
        (1, "key", Shape::String),
        (2, "operator", Shape::String),
        (3, "value", Shape::String),
        (4, "effect", Shape::String),
        (5, "tolerationSeconds", Shape::OptionalInt),
    ],
};

/// `core/v1.Service`.
const SERVICE: Message = Message {
    name: "Service",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&SERVICE_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

/// `core/v1.ServiceSpec`. Not read: `sessionAffinityConfig` (14).
const SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        (1, "ports", Shape::Messages(&SERVICE_PORT)),
        (2, "selector", Shape::StringMap),
        (3, "clusterIP", Shape::String),
        (4, "type", Shape::String),
        (5, "externalIPs", Shape::Strings),
        (7, "sessionAffinity", Shape::String),
        (8, "loadBalancerIP", Shape::String),
        (9, "loadBalancerSourceRanges", Shape::Strings),
        (10, "externalName", Shape::String),
        (11, "externalTrafficPolicy", Shape::String),
        (12, "healthCheckNodePort", Shape::Int),
        (13, "publishNotReadyAddresses", Shape::Bool),
        (17, "ipFamilyPolicy", Shape::OptionalString),
        (18, "clusterIPs", Shape::Strings),
        (19, "ipFamilies", Shape::Strings),
        (20, "allocateLoadBalancerNodePorts", Shape::OptionalBool),
        (21, "loadBalancerClass", Shape::OptionalString),
        (22, "internalTrafficPolicy", Shape::OptionalString),
        (23, "trafficDistribution", Shape::OptionalString),
    ],
};

/// `core/v1.ServicePort`.
const SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        (1, "name", Shape::String),
        (2, "protocol", Shape::String),
        (3, "port", Shape::Int),
        (4, "targetPort", Shape::IntOrString),
        (5, "nodePort", Shape::Int),
        (6, "appProtocol", Shape::OptionalString),
    ],
};

// ---- apps/v1 and batch/v1 ----

/// `apps/v1.Deployment`.
const DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&DEPLOYMENT_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

/// `apps/v1.DeploymentSpec`.
const DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        (1, "replicas", Shape::OptionalInt),
        (2, "selector", Shape::Message(&LABEL_SELECTOR)),
        (3, "template", Shape::Message(&POD_TEMPLATE_SPEC)),
        (4, "strategy", Shape::Message(&DEPLOYMENT_STRATEGY)),
        (5, "minReadySeconds", Shape::Int),
        (6, "revisionHistoryLimit", Shape::OptionalInt),
        (7, "paused", Shape::Bool),
        (9, "progressDeadlineSeconds", Shape::OptionalInt),
    ],
};

/// `apps/v1.DeploymentStrategy`.
const DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        (1, "type", Shape::String),
        (
            2,
            "rollingUpdate",
            Shape::Message(&ROLLING_UPDATE_DEPLOYMENT),
        ),
    ],
};

/// `apps/v1.RollingUpdateDeployment`.
const ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        (1, "maxUnavailable", Shape::IntOrString),
        (2, "maxSurge", Shape::IntOrString),
    ],
};

/// `apps/v1.ReplicaSet`.
const REPLICA_SET: Message = Message {
    name: "ReplicaSet",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&REPLICA_SET_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

/// `apps/v1.ReplicaSetSpec`.
const REPLICA_SET_SPEC: Message = Message {
    name: "ReplicaSetSpec",
    fields: &[
        (1, "replicas", Shape::OptionalInt),
        (2, "selector", Shape::Message(&LABEL_SELECTOR)),
        (3, "template", Shape::Message(&POD_TEMPLATE_SPEC)),
        (4, "minReadySeconds", Shape::Int),
    ],
};

/// `batch/v1.Job`.
const JOB: Message = Message {
    name: "Job",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&JOB_SPEC)),
        (3, "status", Shape::Ignored),
    ],
};

/// `batch/v1.JobSpec`. Not read: `podFailurePolicy` (11) and `successPolicy` (16).
const JOB_SPEC: Message = Message {
    name: "JobSpec",
    fields: &[
        (1, "parallelism", Shape::OptionalInt),
        (2, "completions", Shape::OptionalInt),
        (3, "activeDeadlineSeconds", Shape::OptionalInt),
        (4, "selector", Shape::Message(&LABEL_SELECTOR)),
        (5, "manualSelector", Shape::OptionalBool),
        (6, "template", Shape::Message(&POD_TEMPLATE_SPEC)),
        (7, "backoffLimit", Shape::OptionalInt),
        (8, "ttlSecondsAfterFinished", Shape::OptionalInt),
        (9, "completionMode", Shape::OptionalString),
        (10, "suspend", Shape::OptionalBool),
        (12, "backoffLimitPerIndex", Shape::OptionalInt),
        (13, "maxFailedIndexes", Shape::OptionalInt),
        (14, "podReplacementPolicy", Shape::OptionalString),
        (15, "managedBy", Shape::OptionalString),
    ],
};

// ---- rbac/v1 ----

/// `rbac/v1.Role`.
const ROLE: Message = Message {
    name: "Role",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "rules", Shape::Messages(&POLICY_RULE)),
    ],
};

/// `rbac/v1.ClusterRole`.
const CLUSTER_ROLE: Message = Message {
    name: "ClusterRole",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "rules", Shape::Messages(&POLICY_RULE)),
        (3, "aggregationRule", Shape::Message(&AGGREGATION_RULE)),
    ],
};

/// `rbac/v1.PolicyRule`.
const POLICY_RULE: Message = Message {
    name: "PolicyRule",
    fields: &[
        (1, "verbs", Shape::Strings),
        (2, "apiGroups", Shape::Strings),
        (3, "resources", Shape::Strings),
        (4, "resourceNames", Shape::Strings),
        (5, "nonResourceURLs", Shape::Strings),
    ],
};

/// `rbac/v1.AggregationRule`.
const AGGREGATION_RULE: Message = Message {
    name: "AggregationRule",
    fields: &[(1, "clusterRoleSelectors", Shape::Messages(&LABEL_SELECTOR))],
};

/// `rbac/v1.RoleBinding` and `ClusterRoleBinding`, which have the same fields.
const ROLE_BINDING: Message = Message {
    name: "RoleBinding",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "subjects", Shape::Messages(&SUBJECT)),
        (3, "roleRef", Shape::Message(&ROLE_REF)),
    ],
};

const CLUSTER_ROLE_BINDING: Message = Message {
    name: "ClusterRoleBinding",
    fields: ROLE_BINDING.fields,
};

/// `rbac/v1.Subject`.
const SUBJECT: Message = Message {
    name: "Subject",
    fields: &[
        (1, "kind", Shape::String),
        (2, "apiGroup", Shape::String),
        (3, "name", Shape::String),
        (4, "namespace", Shape::String),
    ],
};

/// `rbac/v1.RoleRef`.
const ROLE_REF: Message = Message {
    name: "RoleRef",
    fields: &[
        (1, "apiGroup", Shape::String),
        (2, "kind", Shape::String),
        (3, "name", Shape::String),
    ],
};

// ---- the reviews: authorization/v1 and authentication/v1 ----

/// `authorization/v1.ResourceAttributes`. `fieldSelector` (8) and `labelSelector` (9) are
/// not read: they could only narrow a request, and RBAC does not look at them.
const RESOURCE_ATTRIBUTES: Message = Message {
    name: "ResourceAttributes",
    fields: &[
        (1, "namespace", Shape::String),
        (2, "verb", Shape::String),
        (3, "group", Shape::String),
        (4, "version", Shape::String),
        (5, "resource", Shape::String),
        (6, "subresource", Shape::String),
        (7, "name", Shape::String),
    ],
};

/// `authorization/v1.NonResourceAttributes`.
const NON_RESOURCE_ATTRIBUTES: Message = Message {
    name: "NonResourceAttributes",
    fields: &[(1, "path", Shape::String), (2, "verb", Shape::String)],
};

/// `authorization/v1.SelfSubjectAccessReview`.
const SELF_SUBJECT_ACCESS_REVIEW: Message = Message {
    name: "SelfSubjectAccessReview",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&SELF_ACCESS_SPEC)),
    ],
};

/// `authorization/v1.SelfSubjectAccessReviewSpec`.
const SELF_ACCESS_SPEC: Message = Message {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        (
            1,
            "resourceAttributes",
            Shape::Message(&RESOURCE_ATTRIBUTES),
        ),
        (
            2,
            "nonResourceAttributes",
            Shape::Message(&NON_RESOURCE_ATTRIBUTES),
        ),
    ],
};

/// `authorization/v1.SubjectAccessReview`.
const SUBJECT_ACCESS_REVIEW: Message = Message {
    name: "SubjectAccessReview",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&ACCESS_SPEC)),
    ],
};

/// `authorization/v1.SubjectAccessReviewSpec`. `extra` (5) is not read: RBAC does not
/// look at it.
const ACCESS_SPEC: Message = Message {
    name: "SubjectAccessReviewSpec",
    fields: &[
        (
            1,
            "resourceAttributes",
            Shape::Message(&RESOURCE_ATTRIBUTES),
        ),
        (
            2,
            "nonResourceAttributes",
            Shape::Message(&NON_RESOURCE_ATTRIBUTES),
        ),
        (3, "user", Shape::String),
        (4, "groups", Shape::Strings),
        (6, "uid", Shape::String),
    ],
};

/// `authorization/v1.SelfSubjectRulesReview`.
const SELF_SUBJECT_RULES_REVIEW: Message = Message {
    name: "SelfSubjectRulesReview",
    fields: &[
        (1, "metadata", Shape::Message(&OBJECT_META)),
        (2, "spec", Shape::Message(&SELF_RULES_SPEC)),
    ],
};

/// `authorization/v1.SelfSubjectRulesReviewSpec`.
const SELF_RULES_SPEC: Message = Message {
    name: "SelfSubjectRulesReviewSpec",
    fields: &[(1, "namespace", Shape::String)],
};

/// `authentication/v1.SelfSubjectReview`: its status (2) is the server's to fill.
const SELF_SUBJECT_REVIEW: Message = Message {
    name: "SelfSubjectReview",
    fields: &[(1, "metadata", Shape::Message(&OBJECT_META))],
};

/// The kinds read from protobuf, by API version and kind.
const OBJECTS: &[(&str, &str, &Message, Unknown)] = &[
    ("v1", "Namespace", &NAMESPACE, Unknown::Refuse),
    ("v1", "ConfigMap", &CONFIG_MAP, Unknown::Refuse),
    ("v1", "Secret", &SECRET, Unknown::Refuse),
    ("v1", "Service", &SERVICE, Unknown::Refuse),
    ("v1", "Pod", &POD, Unknown::Refuse),
    ("apps/v1", "Deployment", &DEPLOYMENT, Unknown::Refuse),
    ("apps/v1", "ReplicaSet", &REPLICA_SET, Unknown::Refuse),
    ("batch/v1", "Job", &JOB, Unknown::Refuse),
    (
        "rbac.authorization.k8s.io/v1",
        "Role",
        &ROLE,
        Unknown::Refuse,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        &CLUSTER_ROLE,
        Unknown::Refuse,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        &ROLE_BINDING,
        Unknown::Refuse,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &CLUSTER_ROLE_BINDING,
        Unknown::Refuse,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &SELF_SUBJECT_ACCESS_REVIEW,
        Unknown::Skip,
    ),
    (
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &SUBJECT_ACCESS_REVIEW,
        Unknown::Skip,
    ),
    (
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &SELF_SUBJECT_RULES_REVIEW,
        Unknown::Skip,
    ),
    (
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &SELF_SUBJECT_REVIEW,
        Unknown::Skip,
    ),
];

/// Whether a `Content-Type` is Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// The 415 for a protobuf body skiff does not read, saying what to send instead: `error`
/// says why a create's body could not be read; `None` is for a body other than a
/// create's, which skiff never reads in protobuf.
pub fn unreadable(error: Option<ProtobufError>) -> ApiError {
    let why = match error {
        Some(error) => format!("skiff cannot read this Kubernetes protobuf body: {error}"),
        None => "skiff reads Kubernetes protobuf bodies only in creates (what kubectl's \
                 typed `create` generators send)"
            .to_string(),
    };
    ApiError {
        code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        reason: "UnsupportedMediaType",
        message: format!(
            "{why}; send the object as JSON or YAML instead (accepted media types include: \
             application/json, application/yaml): with kubectl, its manifest with \
             `kubectl create -f` or `kubectl apply -f`, as in `kubectl create deployment \
             NAME --image=IMAGE --dry-run=client -o yaml | kubectl create -f -`"
        ),
        details: None,
    }
}

/// Decodes a protobuf body of one of the kinds skiff reads in protobuf into the JSON
/// value it would be as JSON, `apiVersion` and `kind` included.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Prefix)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut reader = Reader { rest: envelope };
    while let Some((number, wire)) = reader.field()? {
        match number {
            1 => {
                let mut type_meta = Reader {
                    rest: bytes_of(&wire, "typeMeta")?,
                };
                while let Some((number, wire)) = type_meta.field()? {
                    match number {
                        1 => api_version = string(&wire, "typeMeta.apiVersion")?,
                        2 => kind = string(&wire, "typeMeta.kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(&wire, "raw")?,
            3 => {
                let encoding = string(&wire, "contentEncoding")?;
                if !encoding.is_empty() {
                    return Err(ProtobufError::Encoding(encoding));
                }
            }
            _ => {}
        }
    }
    let Some(&(_, _, message, unknown)) = OBJECTS
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)
    else {
        return Err(ProtobufError::Kind { api_version, kind });
    };
    let mut object = decode_message(raw, message, "", unknown)?;
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

/// Reads `message`'s fields from `bytes`; `path` names the message in errors (`""` for
/// the object, else ending in `.`). A field given twice keeps its last value (a repeated
/// one collects them), as protobuf says.
fn decode_message(
    bytes: &[u8],
    message: &Message,
    path: &str,
    unknown: Unknown,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    let mut reader = Reader { rest: bytes };
    while let Some((number, wire)) = reader.field()? {
        let Some(&(_, name, shape)) = message.fields.iter().find(|(n, _, _)| *n == number) else {
            match unknown {
                Unknown::Skip => continue,
                Unknown::Refuse => {
                    return Err(ProtobufError::UnknownField {
                        message: message.name,
                        number,
                        path: path.trim_end_matches('.').to_string(),
                    });
                }
            }
        };
        let field = format!("{path}{name}");
        // `None`: the field's zero value, which the JSON leaves out.
        let value = match shape {
            Shape::Ignored => continue,
            Shape::String => Some(string(&wire, &field)?)
                .filter(|s| !s.is_empty())
                .map(Value::String),
            Shape::OptionalString => Some(Value::String(string(&wire, &field)?)),
            // An int32's negative values are sign-extended to 64 bits on the wire, so
            // one cast serves int32 and int64.
            Shape::Int => Some(varint(&wire, &field)? as i64)
                .filter(|n| *n != 0)
                .map(Value::from),
            Shape::OptionalInt => Some(Value::from(varint(&wire, &field)? as i64)),
            Shape::Bool => (varint(&wire, &field)? != 0).then_some(Value::Bool(true)),
            Shape::OptionalBool => Some(Value::Bool(varint(&wire, &field)? != 0)),
            Shape::IntOrString => Some(int_or_string(&wire, &field, unknown)?),
            Shape::Time => time(&wire, &field, unknown)?,
            Shape::Message(inner) => {
                let inner = decode_message(
                    bytes_of(&wire, &field)?,
                    inner,
                    &format!("{field}."),
                    unknown,
                )?;
                Some(Value::Object(inner))
            }
            Shape::Strings => {
                push(&mut out, name, Value::String(string(&wire, &field)?));
                continue;
            }
            Shape::Messages(inner) => {
                let index = out.get(name).and_then(Value::as_array).map_or(0, Vec::len);
                let item_path = format!("{field}[{index}].");
                let item = decode_message(bytes_of(&wire, &field)?, inner, &item_path, unknown)?;
                push(&mut out, name, Value::Object(item));
                continue;
            }
            Shape::StringMap | Shape::BytesMap | Shape::QuantityMap => {
                let (key, value) = map_entry(&wire, shape, &field, unknown)?;
                match out.entry(name).or_insert_with(|| Value::Object(Map::new())) {
                    Value::Object(entries) => entries.insert(key, value),
                    _ => unreachable!("a map field is always an object"),
                };
                continue;
            }
        };
        match value {
            Some(value) => out.insert(name.into(), value),
            None => out.remove(name),
        };
    }
    Ok(out)
}

/// Appends to the repeated field `name`.
fn push(out: &mut Map<String, Value>, name: &str, item: Value) {
    match out.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(items) => items.push(item),
        _ => unreachable!("a repeated field is always an array"),
    }
}

/// One entry of a protobuf map (a message of `key` 1 and `value` 2), as JSON.
fn map_entry(
    wire: &Wire<'_>,
    shape: Shape,
    field: &str,
    unknown: Unknown,
) -> Result<(String, Value), ProtobufError> {
    let mut reader = Reader {
        rest: bytes_of(wire, field)?,
    };
    let (mut key, mut value) = (String::new(), None);
    while let Some((number, wire)) = reader.field()? {
        match number {
            1 => key = string(&wire, field)?,
            2 => value = Some(wire),
            _ if unknown == Unknown::Skip => {}
            _ => {
                return Err(ProtobufError::UnknownField {
                    message: "map entry",
                    number,
                    path: field.to_string(),
                });
            }
        }
    }
    let field = format!("{field}[{key}]");
    let value = match (shape, value) {
        (Shape::StringMap, Some(wire)) => Value::String(string(&wire, &field)?),
        (Shape::BytesMap, Some(wire)) => Value::String(base64(bytes_of(&wire, &field)?)),
        (Shape::QuantityMap, Some(wire)) => {
            let quantity = decode_message(
                bytes_of(&wire, &field)?,
                &QUANTITY,
                &format!("{field}."),
                unknown,
            )?;
            quantity
                .get("string")
                .cloned()
                .unwrap_or_else(|| "0".into())
        }
        // An entry without its value holds the value's zero: Go's zero Quantity is "0".
        (Shape::QuantityMap, None) => "0".into(),
        (_, None) => "".into(),
        _ => unreachable!("map_entry is called for the map shapes"),
    };
    Ok((key, value))
}

/// An `IntOrString` as JSON: its number (type 0) or its string (type 1).
fn int_or_string(wire: &Wire<'_>, field: &str, unknown: Unknown) -> Result<Value, ProtobufError> {
    let value = decode_message(
        bytes_of(wire, field)?,
        &INT_OR_STRING,
        &format!("{field}."),
        unknown,
    )?;
    Ok(if value.get("type").and_then(Value::as_i64) == Some(1) {
        value.get("strVal").cloned().unwrap_or_else(|| "".into())
    } else {
        value.get("intVal").cloned().unwrap_or_else(|| 0.into())
    })
}

/// A `Time` as JSON: RFC 3339 in seconds, as Kubernetes writes it (which drops the
/// nanoseconds); `None` for the empty time.
fn time(wire: &Wire<'_>, field: &str, unknown: Unknown) -> Result<Option<Value>, ProtobufError> {
    let value = decode_message(bytes_of(wire, field)?, &TIME, &format!("{field}."), unknown)?;
    let Some(seconds) = value.get("seconds").and_then(Value::as_i64) else {
        // The empty time (or the epoch's first second): absent.
        return Ok(None);
    };
    // 9999-12-31T23:59:59Z, the last time RFC 3339 can write.
    const LAST: u64 = 253_402_300_799;
    let seconds = u64::try_from(seconds)
        .ok()
        .filter(|s| *s <= LAST)
        .ok_or_else(|| ProtobufError::TimeRange(field.to_string()))?;
    let when = UNIX_EPOCH + Duration::from_secs(seconds);
    Ok(Some(Value::String(
        humantime::format_rfc3339_seconds(when).to_string(),
    )))
}

fn bytes_of<'a>(wire: &Wire<'a>, field: &str) -> Result<&'a [u8], ProtobufError> {
    match wire {
        Wire::Bytes(bytes) => Ok(bytes),
        other => Err(ProtobufError::Mismatch {
            field: field.to_string(),
            wire: other.number(),
            expected: "a length-delimited field",
        }),
    }
}

fn varint(wire: &Wire<'_>, field: &str) -> Result<u64, ProtobufError> {
    match wire {
        Wire::Varint(value) => Ok(*value),
        other => Err(ProtobufError::Mismatch {
            field: field.to_string(),
            wire: other.number(),
            expected: "a varint",
        }),
    }
}

fn string(wire: &Wire<'_>, field: &str) -> Result<String, ProtobufError> {
    let bytes = bytes_of(wire, field)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Utf8(field.to_string()))
}

/// Standard base64 with padding, as Go's JSON encoder writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    ALPHABET[((group >> (18 - 6 * i)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Bytes as written in a test: hex, spaces ignored.
    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    // What kubectl 1.37 sent, captured from a listener standing in for the API server
    // (its answers to discovery proxied from a real `skiff server`): every ObjectMeta
    // string and plain field written even when empty, `status` with its zeros.

    /// `kubectl auth can-i get pods -n team --subresource log`: the envelope, typeMeta,
    /// then the object.
    const CAN_I_GET_POD_LOGS: &str = "6b387300
        0a32 0a17 617574686f72697a6174696f6e2e6b38732e696f2f7631
             1217 53656c665375626a656374416363657373526576696577
        123c 0a10 0a00 1200 1a00 2200 2a00 3200 3800 4200
             121e 0a1c 0a04 7465616d 1203 676574 1a00 2200 2a04 706f6473 3203 6c6f67 3a00
             1a08 0800 1200 1a00 2000
        1a00 2200";

    /// `kubectl auth can-i delete pods/foo` (in namespace default).
    const CAN_I_DELETE_POD_FOO: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365737352657669657712420a100a0012001a0022002a0032003800420012240a220a0764656661756c74120664656c6574651a0022002a04706f647332003a03666f6f1a08080012001a0020001a002200";

    /// `kubectl auth can-i get /metrics`.
    const CAN_I_GET_METRICS: &str = "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374416363657373526576696577122f0a100a0012001a0022002a003200380042001211120f0a082f6d65747269637312036765741a08080012001a0020001a002200";

    /// `kubectl auth can-i --list -n team`.
    const CAN_I_LIST: &str = "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c657352657669657712200a100a0012001a0022002a0032003800420012060a047465616d1a04180022001a002200";

    /// `kubectl auth whoami`.
    const WHOAMI: &str = "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200";

    /// `kubectl create namespace team`.
    const CREATE_NAMESPACE: &str = "6b3873000a0f0a02763112094e616d657370616365121c0a140a047465616d12001a0022002a0032003800420012001a020a001a002200";

    /// `kubectl create configmap settings --from-literal=mode=fast --from-literal=level=3`.
    const CREATE_CONFIGMAP: &str = "6b3873000a0f0a0276311209436f6e6669674d617012340a180a0873657474696e677312001a0022002a00320038004200120a0a056c6576656c120133120c0a046d6f64651204666173741a002200";

    /// `kubectl create configmap files --from-file=bin.dat --from-file=text.txt`, where
    /// bin.dat holds the bytes 00 01 ff and text.txt `hello\n`.
    const CREATE_CONFIGMAP_FROM_FILES: &str = "6b3873000a0f0a0276311209436f6e6669674d6170123b0a150a0566696c657312001a0022002a0032003800420012120a08746578742e747874120668656c6c6f0a1a0e0a0762696e2e64617412030001ff1a002200";

    /// `kubectl create secret generic creds --from-literal=password=hunter2 --type=Opaque`.
    const CREATE_SECRET: &str = "6b3873000a0c0a027631120653656372657412340a150a05637265647312001a0022002a0032003800420012130a0870617373776f7264120768756e746572321a064f70617175651a002200";

    /// `kubectl create secret docker-registry regcred --docker-server=reg.example
    /// --docker-username=u --docker-password=p --docker-email=e@x`.
    const CREATE_DOCKER_REGISTRY_SECRET: &str = "6b3873000a0c0a027631120653656372657412a5010a170a077265676372656412001a0022002a00320038004200126a0a112e646f636b6572636f6e6669676a736f6e12557b226175746873223a7b227265672e6578616d706c65223a7b22757365726e616d65223a2275222c2270617373776f7264223a2270222c22656d61696c223a22654078222c2261757468223a2264547077227d7d7d1a1e6b756265726e657465732e696f2f646f636b6572636f6e6669676a736f6e1a002200";

    /// `kubectl create deployment web --image=file:/x.wasm --replicas=2`.
    const CREATE_DEPLOYMENT: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412ba010a1f0a0377656212001a0022002a003200380042005a0a0a0361707012037765621288010802120c0a0a0a0361707012037765621a6e0a1c0a0012001a0022002a003200380042005a0a0a036170701203776562124e12300a0c782d7761736d2d6c6a386639120c66696c653a2f782e7761736d2a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";

    /// `kubectl create deployment web2 --image=file:/x.wasm --port=8080 -- /bin/app --flag`.
    const CREATE_DEPLOYMENT_WITH_PORT_AND_COMMAND: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412de010a210a047765623212001a0022002a003200380042005a0b0a0361707012047765623212aa010801120d0a0b0a036170701204776562321a8e010a1d0a0012001a0022002a003200380042005a0b0a03617070120477656232126d124f0a0c782d7761736d2d6234366262120c66696c653a2f782e7761736d1a082f62696e2f6170701a062d2d666c61672a00320b0a00100018903f22002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";

    /// `kubectl create deployment web3 --image=file:/a.wasm --image=file:/b.wasm
    /// --replicas=0`.
    const CREATE_DEPLOYMENT_OF_NONE: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412f2010a210a047765623312001a0022002a003200380042005a0b0a0361707012047765623312be010800120d0a0b0a036170701204776562331aa2010a1d0a0012001a0022002a003200380042005a0b0a0361707012047765623312800112300a0c612d7761736d2d3462363963120c66696c653a2f612e7761736d2a0042006a007200800100880100900100a2010012300a0c622d7761736d2d3576676773120c66696c653a2f622e7761736d2a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";

    /// `kubectl create job once --image=file:/x.wasm -- run now`.
    const CREATE_JOB: &str = "6b3873000a0f0a0862617463682f763112034a6f62128d010a140a046f6e636512001a0022002a00320038004200126b32690a100a0012001a0022002a00320038004200125512320a046f6e6365120c66696c653a2f782e7761736d1a0372756e1a036e6f772a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c201001a082000280030003a001a002200";

    /// `kubectl create service clusterip web --tcp=80:8080 --tcp=443`.
    const CREATE_SERVICE_CLUSTER_IP: &str = "6b3873000a0d0a0276311207536572766963651283010a1f0a0377656212001a0022002a003200380042005a0a0a036170701203776562125c0a1b0a0738302d38303830120354435018502207080010903f1a0028000a180a03343433120354435018bb032207080010bb031a002800120a0a0361707012037765621a002209436c757374657249503a00420052005a00600068001a020a001a002200";

    /// `kubectl create service nodeport np --tcp=80:8080 --node-port=30080`.
    const CREATE_SERVICE_NODE_PORT: &str = "6b3873000a0d0a02763112075365727669636512670a1d0a026e7012001a0022002a003200380042005a090a0361707012026e7012420a1d0a0738302d38303830120354435018502207080010903f1a002880eb0112090a0361707012026e701a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200";

    /// `kubectl create role reader --verb=get,list,watch --resource=pods,deployments.apps
    /// --resource=pods/log --resource-name=a`.
    const CREATE_ROLE: &str = "6b3873000a240a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311204526f6c65126b0a160a0672656164657212001a0022002a0032003800420012270a036765740a046c6973740a05776174636812001a04706f64731a08706f64732f6c6f6722016112280a036765740a046c6973740a0577617463681204617070731a0b6465706c6f796d656e74732201611a002200";

    /// `kubectl create clusterrole agg
    /// --aggregation-rule=rbac.example.com/aggregate-to-monitoring=true`.
    const CREATE_AGGREGATED_CLUSTER_ROLE: &str = "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c7573746572526f6c65124b0a130a0361676712001a0022002a003200380042001a340a320a300a28726261632e6578616d706c652e636f6d2f6167677265676174652d746f2d6d6f6e69746f72696e671204747275651a002200";

    /// `kubectl create clusterrole cr --verb=get --non-resource-url=/metrics`.
    const CREATE_CLUSTER_ROLE: &str = "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c7573746572526f6c6512250a120a02637212001a0022002a00320038004200120f0a036765742a082f6d6574726963731a002200";

    /// `kubectl create rolebinding rb --role=reader --user=alice --group=devs
    /// --serviceaccount=team:bot`.
    const CREATE_ROLE_BINDING: &str = "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b526f6c6542696e64696e6712b6010a120a02726212001a0022002a00320038004200122a0a04557365721219726261632e617574686f72697a6174696f6e2e6b38732e696f1a05616c6963652200122a0a0547726f75701219726261632e617574686f72697a6174696f6e2e6b38732e696f1a04646576732200121d0a0e536572766963654163636f756e7412001a03626f7422047465616d1a290a19726261632e617574686f72697a6174696f6e2e6b38732e696f1204526f6c651a067265616465721a002200";

    /// `kubectl create clusterrolebinding crb --clusterrole=cr --user=alice --group=g
    /// --serviceaccount=default:s`.
    const CREATE_CLUSTER_ROLE_BINDING: &str = "6b3873000a320a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311212436c7573746572526f6c6542696e64696e6712b8010a130a0363726212001a0022002a00320038004200122a0a04557365721219726261632e617574686f72697a6174696f6e2e6b38732e696f1a05616c696365220012270a0547726f75701219726261632e617574686f72697a6174696f6e2e6b38732e696f1a01672200121e0a0e536572766963654163636f756e7412001a0173220764656661756c741a2c0a19726261632e617574686f72697a6174696f6e2e6b38732e696f120b436c7573746572526f6c651a0263721a002200";

    /// `kubectl create serviceaccount bot`: a kind skiff does not serve.
    const CREATE_SERVICE_ACCOUNT: &str = "6b3873000a140a027631120e536572766963654163636f756e7412150a130a03626f7412001a0022002a003200380042001a002200";

    fn decode(hex_text: &str) -> Value {
        decode_object(&hex(hex_text)).unwrap()
    }

    #[test]
    fn reads_what_kubectl_sends_for_the_reviews() {
        assert_eq!(
            decode(CAN_I_GET_POD_LOGS),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "metadata": {},
                "spec": { "resourceAttributes": {
                    "namespace": "team", "verb": "get", "resource": "pods", "subresource": "log",
                } },
            })
        );
        assert_eq!(
            decode(CAN_I_DELETE_POD_FOO)["spec"]["resourceAttributes"],
            json!({ "namespace": "default", "verb": "delete", "resource": "pods", "name": "foo" })
        );
        assert_eq!(
            decode(CAN_I_GET_METRICS)["spec"],
            json!({ "nonResourceAttributes": { "path": "/metrics", "verb": "get" } })
        );
        assert_eq!(
            decode(CAN_I_LIST),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "metadata": {},
                "spec": { "namespace": "team" },
            })
        );
        assert_eq!(
            decode(WHOAMI),
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {},
            })
        );
    }

    /// Each generator's object reads as the JSON `kubectl create ... --dry-run=client -o
    /// json` prints for it, less the `status` a create ignores.
    #[test]
    fn reads_what_kubectls_create_generators_send() {
        assert_eq!(
            decode(CREATE_NAMESPACE),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team" }, "spec": {} })
        );
        assert_eq!(
            decode(CREATE_CONFIGMAP),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "settings" },
                "data": { "level": "3", "mode": "fast" },
            })
        );
        // Bytes are base64, as in JSON.
        assert_eq!(
            decode(CREATE_CONFIGMAP_FROM_FILES),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "files" },
                "data": { "text.txt": "hello\n" },
                "binaryData": { "bin.dat": "AAH/" },
            })
        );
        assert_eq!(
            decode(CREATE_SECRET),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "creds" },
                "data": { "password": "aHVudGVyMg==" },
                "type": "Opaque",
            })
        );
        let docker = decode(CREATE_DOCKER_REGISTRY_SECRET);
        assert_eq!(docker["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(
            docker["data"][".dockerconfigjson"],
            "eyJhdXRocyI6eyJyZWcuZXhhbXBsZSI6eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InAiLCJlbWFpbCI6ImVAeCIsImF1dGgiOiJkVHB3In19fQ=="
        );
        assert_eq!(
            decode(CREATE_DEPLOYMENT),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "web", "labels": { "app": "web" } },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": { "containers": [
                            { "name": "x-wasm-lj8f9", "image": "file:/x.wasm", "resources": {} },
                        ] },
                    },
                    "strategy": {},
                },
            })
        );
        let web2 = decode(CREATE_DEPLOYMENT_WITH_PORT_AND_COMMAND);
        assert_eq!(
            web2["spec"]["template"]["spec"]["containers"],
            json!([{
                "name": "x-wasm-b46bb", "image": "file:/x.wasm",
                "command": ["/bin/app", "--flag"],
                "ports": [{ "containerPort": 8080 }],
                "resources": {},
            }])
        );
        assert_eq!(web2["spec"]["replicas"], 1);
        // `replicas` is a pointer in Go: written, so kept, even as 0.
        let none = decode(CREATE_DEPLOYMENT_OF_NONE);
        assert_eq!(none["spec"]["replicas"], 0);
        let images: Vec<&Value> = none["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["image"])
            .collect();
        assert_eq!(images, ["file:/a.wasm", "file:/b.wasm"]);
        assert_eq!(
            decode(CREATE_JOB),
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": "once" },
                "spec": { "template": {
                    "metadata": {},
                    "spec": {
                        "containers": [{
                            "name": "once", "image": "file:/x.wasm",
                            "command": ["run", "now"], "resources": {},
                        }],
                        "restartPolicy": "Never",
                    },
                } },
            })
        );
        assert_eq!(
            decode(CREATE_SERVICE_CLUSTER_IP),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web", "labels": { "app": "web" } },
                "spec": {
                    "ports": [
                        { "name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080 },
                        { "name": "443", "protocol": "TCP", "port": 443, "targetPort": 443 },
                    ],
                    "selector": { "app": "web" },
                    "type": "ClusterIP",
                },
            })
        );
        assert_eq!(
            decode(CREATE_SERVICE_NODE_PORT)["spec"],
            json!({
                "ports": [{
                    "name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                    "nodePort": 30080,
                }],
                "selector": { "app": "np" },
                "type": "NodePort",
            })
        );
        assert_eq!(
            decode(CREATE_ROLE),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": { "name": "reader" },
                "rules": [
                    { "verbs": ["get", "list", "watch"], "apiGroups": [""],
                      "resources": ["pods", "pods/log"], "resourceNames": ["a"] },
                    { "verbs": ["get", "list", "watch"], "apiGroups": ["apps"],
                      "resources": ["deployments"], "resourceNames": ["a"] },
                ],
            })
        );
        assert_eq!(
            decode(CREATE_CLUSTER_ROLE)["rules"],
            json!([{ "verbs": ["get"], "nonResourceURLs": ["/metrics"] }])
        );
        assert_eq!(
            decode(CREATE_AGGREGATED_CLUSTER_ROLE),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": { "name": "agg" },
                "aggregationRule": { "clusterRoleSelectors": [
                    { "matchLabels": { "rbac.example.com/aggregate-to-monitoring": "true" } },
                ] },
            })
        );
        assert_eq!(
            decode(CREATE_ROLE_BINDING),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "rb" },
                "subjects": [
                    { "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice" },
                    { "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs" },
                    { "kind": "ServiceAccount", "name": "bot", "namespace": "team" },
                ],
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader" },
            })
        );
        let binding = decode(CREATE_CLUSTER_ROLE_BINDING);
        assert_eq!(binding["kind"], "ClusterRoleBinding");
        assert_eq!(
            binding["roleRef"],
            json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cr" })
        );
        assert_eq!(
            binding["subjects"][2],
            json!({ "kind": "ServiceAccount", "name": "s", "namespace": "default" })
        );
    }

    /// Encodes a varint.
    fn varint_bytes(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// Encodes a length-delimited field.
    fn field(number: u64, body: &[u8]) -> Vec<u8> {
        [
            varint_bytes((number << 3) | 2),
            varint_bytes(body.len() as u64),
            body.to_vec(),
        ]
        .concat()
    }

    /// Encodes a varint field.
    fn number(number: u64, value: u64) -> Vec<u8> {
        [varint_bytes(number << 3), varint_bytes(value)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, raw),
            field(4, b"application/vnd.kubernetes.protobuf"),
        ]
        .concat()
    }

    /// A Deployment whose one container holds `extra` besides its name and image.
    fn deployment_with_container(extra: &[u8]) -> Vec<u8> {
        let container = [field(1, b"main"), field(2, b"file:/m.wasm"), extra.to_vec()].concat();
        let pod_spec = field(2, &container);
        let spec = field(3, &field(2, &pod_spec));
        envelope("apps/v1", "Deployment", &field(2, &spec))
    }

    #[test]
    fn refuses_an_object_with_a_field_it_does_not_read() {
        // A volume mount (Container field 9), which the tables do not read.
        let body = deployment_with_container(&field(9, &field(1, b"data")));
        let error = decode_object(&body).unwrap_err();
        assert_eq!(
            error,
            ProtobufError::UnknownField {
                message: "Container",
                number: 9,
                path: "spec.template.spec.containers[0]".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "spec.template.spec.containers[0]: field 9 of Container is not one skiff reads from protobuf"
        );
        // At the top: a ConfigMap field from a future version.
        let body = envelope("v1", "ConfigMap", &field(9, b"x"));
        assert_eq!(
            decode_object(&body).unwrap_err().to_string(),
            "field 9 of ConfigMap is not one skiff reads from protobuf"
        );
        // In a map entry.
        let entry = [field(1, b"k"), field(2, b"v"), field(3, b"?")].concat();
        let body = envelope("v1", "ConfigMap", &field(2, &entry));
        assert_eq!(
            decode_object(&body).unwrap_err(),
            ProtobufError::UnknownField {
                message: "map entry",
                number: 3,
                path: "data".into()
            }
        );
        // The 415 names the field and says what to send instead.
        let refused = unreadable(Some(
            decode_object(&deployment_with_container(&field(9, b""))).unwrap_err(),
        ));
        assert_eq!(refused.code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(refused.reason, "UnsupportedMediaType");
        for expected in [
            "field 9 of Container",
            "application/json, application/yaml",
            "`kubectl create -f`",
            "--dry-run=client -o yaml | kubectl create -f -",
        ] {
            assert!(
                refused.message.contains(expected),
                "{expected:?} in {}",
                refused.message
            );
        }
    }

    #[test]
    fn reads_times_numbers_and_names_as_json_has_them() {
        // A set creationTimestamp, a named target port, a negative int32 (sign-extended
        // to ten bytes) and a false pointer bool.
        let meta = [field(1, b"t"), field(8, &number(1, 1_700_000_000))].concat();
        let port = [
            number(3, 80),
            field(4, &[number(1, 1), field(3, b"http")].concat()),
        ]
        .concat();
        let spec = [field(1, &port), number(12, (-1i64) as u64)].concat();
        let service = [field(1, &meta), field(2, &spec)].concat();
        assert_eq!(
            decode_object(&envelope("v1", "Service", &service)).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "t", "creationTimestamp": "2023-11-14T22:13:20Z" },
                "spec": {
                    "ports": [{ "port": 80, "targetPort": "http" }],
                    "healthCheckNodePort": -1,
                },
            })
        );
        let immutable = [field(1, &field(1, b"c")), number(4, 0)].concat();
        assert_eq!(
            decode_object(&envelope("v1", "ConfigMap", &immutable)).unwrap()["immutable"],
            false
        );
        // A time before 1970.
        let meta = field(8, &number(1, (-1i64) as u64));
        assert_eq!(
            decode_object(&envelope("v1", "Namespace", &field(1, &meta))).unwrap_err(),
            ProtobufError::TimeRange("metadata.creationTimestamp".into())
        );
        // A status, empty or not, is not read.
        let job = [field(1, &field(1, b"j")), field(3, &number(4, 3))].concat();
        assert_eq!(
            decode_object(&envelope("batch/v1", "Job", &job)).unwrap(),
            json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j" } })
        );
    }

    #[test]
    fn writes_bytes_as_base64() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0, 1, 0xff], "AAH/"),
            (&[0xfb, 0xff], "+/8="),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }

    #[test]
    fn reads_subject_access_reviews_with_groups_and_skips_unknown_fields() {
        let attributes = [field(2, b"get"), field(5, b"secrets"), field(7, b"s")].concat();
        let spec = [
            field(1, &attributes),
            field(3, b"system:node:node-1"),
            field(4, b"system:nodes"),
            field(4, b"system:authenticated"),
            // Unknown to the table: a varint, a fixed64, a fixed32, a message.
            vec![0x78, 0x96, 0x01],
            vec![0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8],
            vec![0x8d, 0x01, 1, 2, 3, 4],
            field(5, &field(1, b"extra-key")),
        ]
        .concat();
        let body = envelope(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            &field(2, &spec),
        );
        assert_eq!(
            decode_object(&body).unwrap(),
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "resourceAttributes": { "verb": "get", "resource": "secrets", "name": "s" },
                    "user": "system:node:node-1",
                    "groups": ["system:nodes", "system:authenticated"],
                },
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let whoami = hex(WHOAMI);
        assert_eq!(
            decode_object(&whoami[4..]).unwrap_err(),
            ProtobufError::Prefix
        );
        assert_eq!(
            decode_object(&whoami[..whoami.len() - 3]).unwrap_err(),
            ProtobufError::Truncated
        );
        assert_eq!(
            decode_object(&hex(CREATE_SERVICE_ACCOUNT)).unwrap_err(),
            ProtobufError::Kind {
                api_version: "v1".into(),
                kind: "ServiceAccount".into()
            }
        );
        let mut gzipped = envelope("authentication.k8s.io/v1", "SelfSubjectReview", &[]);
        gzipped.extend(field(3, b"gzip"));
        assert_eq!(
            decode_object(&gzipped).unwrap_err(),
            ProtobufError::Encoding("gzip".into())
        );
        // A string field sent as a varint, and a number sent as a string.
        let spec = field(2, &[0x08, 0x01]);
        let body = envelope("authorization.k8s.io/v1", "SelfSubjectRulesReview", &spec);
        assert_eq!(
            decode_object(&body).unwrap_err(),
            ProtobufError::Mismatch {
                field: "spec.namespace".into(),
                wire: 0,
                expected: "a length-delimited field"
            }
        );
        let replicas = field(2, &field(1, b"2"));
        assert_eq!(
            decode_object(&envelope("apps/v1", "Deployment", &replicas)).unwrap_err(),
            ProtobufError::Mismatch {
                field: "spec.replicas".into(),
                wire: 2,
                expected: "a varint"
            }
        );
        let bad_utf8 = envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            &field(2, &field(1, &[0xff, 0xfe])),
        );
        assert_eq!(
            decode_object(&bad_utf8).unwrap_err(),
            ProtobufError::Utf8("spec.namespace".into())
        );
        let long_varint = [MAGIC.to_vec(), vec![0x08], vec![0xff; 11]].concat();
        assert_eq!(
            decode_object(&long_varint).unwrap_err(),
            ProtobufError::LongVarint
        );
        let group = [MAGIC.to_vec(), vec![0x0b]].concat();
        assert_eq!(
            decode_object(&group).unwrap_err(),
            ProtobufError::WireType(3)
        );
    }

    #[test]
    fn knows_its_media_type() {
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(is_protobuf(
            "Application/VND.Kubernetes.Protobuf; charset=x"
        ));
        assert!(!is_protobuf("application/json"));
        assert!(!is_protobuf("application/vnd.kubernetes.protobuf+x"));
    }
}
