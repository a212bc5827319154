//! The kinds the API server serves, and how each is decoded, defaulted and validated.
//!
//! Handlers work on JSON values so that one code path serves every kind; the typed
//! round trip through the kind's Rust type happens once per write, in [`ResourceType::normalize`]:
//! decode (naming the field that fails), default, validate (naming every bad field),
//! encode. What comes out is what is stored.

use std::marker::PhantomData;

use serde_json::Value;
use skiff_api::Object;
use skiff_api::validation::{validate_object_meta, validate_object_meta_update};

use super::error::{ApiError, ApiResult};

/// One kind the server serves, with its URL names and behaviour.
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// The lowercase kind: `pod`, `deployment`.
    pub singular: String,
    /// kubectl's short names: `po`, `deploy`.
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Whether `status` may change only through the `status` subresource.
    pub has_status: bool,
    /// Whether the kind has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// Whether the kind has the `scale` subresource (`spec.replicas`).
    pub scalable: bool,
    /// Field selectors beyond `metadata.name` and `metadata.namespace`, as
    /// (selector name, JSON pointer into the object, value when absent).
    pub field_selectors: &'static [(&'static str, &'static str, &'static str)],
    codec: Box<dyn Codec>,
}

impl ResourceType {
    fn of<T: Object>(short_names: &'static [&'static str], has_spec: bool) -> Self {
        ResourceType {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural: T::PLURAL,
            singular: T::KIND.to_lowercase(),
            short_names,
            namespaced: T::NAMESPACED,
            has_status: T::HAS_STATUS_SUBRESOURCE,
            has_spec,
            scalable: false,
            field_selectors: &[],
            codec: Box::new(Typed::<T>(PhantomData)),
        }
    }

    fn scalable(mut self) -> Self {
        self.scalable = true;
        self
    }

    fn fields(mut self, fields: &'static [(&'static str, &'static str, &'static str)]) -> Self {
        self.field_selectors = fields;
        self
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, or `deployments.apps` for grouped kinds, as Kubernetes names them in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key of one object, or of a list's prefix when `name` is `None`
    /// (`namespace` `None` lists across namespaces).
    pub fn key(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        let mut key = format!("/{group}/{}/", self.plural);
        if let Some(namespace) = namespace.filter(|_| self.namespaced) {
            key.push_str(namespace);
            key.push('/');
        }
        if let Some(name) = name {
            key.push_str(name);
        }
        key
    }

    /// Decodes `object` as this kind, applies defaults and validates it (against `old`
    /// for an update); returns the value to store.
    pub fn normalize(&self, object: Value, old: Option<&Value>) -> ApiResult<Value> {
        self.codec.normalize(self, object, old)
    }

    /// The value of a field selector's field in `object`, or `None` if the kind does
    /// not support selecting on it.
    pub fn field_value(&self, object: &Value, field: &str) -> Option<String> {
        let (pointer, absent) = match field {
            "metadata.name" => ("/metadata/name", ""),
            "metadata.namespace" => ("/metadata/namespace", ""),
            _ => {
                let (_, pointer, absent) = self
                    .field_selectors
                    .iter()
                    .find(|(name, _, _)| *name == field)?;
                (*pointer, *absent)
            }
        };
        Some(match object.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => absent.to_string(),
            Some(other) => other.to_string(),
        })
    }
}

/// The typed half of a kind: decoding, defaults and validation through its Rust type.
trait Codec: Send + Sync {
    fn normalize(&self, rt: &ResourceType, object: Value, old: Option<&Value>) -> ApiResult<Value>;
}

struct Typed<T>(PhantomData<fn() -> T>);

impl<T: Object> Typed<T> {
    fn decode(rt: &ResourceType, object: Value) -> ApiResult<T> {
        serde_path_to_error::deserialize(object).map_err(|error| {
            let path = error.path().to_string();
            let field = (path != ".").then_some(path);
            ApiError::undecodable(rt, field, error.into_inner())
        })
    }
}

impl<T: Object> Codec for Typed<T> {
    fn normalize(&self, rt: &ResourceType, object: Value, old: Option<&Value>) -> ApiResult<Value> {
        let mut typed = Self::decode(rt, object)?;
        typed.set_defaults();
        let mut errors = validate_object_meta(typed.meta(), T::NAMESPACED, T::NAME_RULE);
        match old {
            None => errors.extend(typed.validate()),
            Some(old) => {
                let old = Self::decode(rt, old.clone())?;
                errors.extend(validate_object_meta_update(typed.meta(), old.meta()));
                errors.extend(typed.validate_update(&old));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(rt, typed.meta().name(), &errors));
        }
        serde_json::to_value(&typed).map_err(|e| ApiError::internal("encoding an object", e))
    }
}

/// Every kind the server serves.
pub struct Registry {
    pub types: Vec<ResourceType>,
}

impl Registry {
    /// The built-in kinds of DESIGN.md.
    pub fn builtin() -> Self {
        use skiff_api::{apps, batch, coordination, core, rbac};
        let types = vec![
            ResourceType::of::<core::Namespace>(&["ns"], true).fields(&[(
                "status.phase",
                "/status/phase",
                "",
            )]),
            ResourceType::of::<core::Node>(&["no"], true).fields(&[(
                "spec.unschedulable",
                "/spec/unschedulable",
                "false",
            )]),
            ResourceType::of::<core::Pod>(&["po"], true).fields(&[
                ("spec.nodeName", "/spec/nodeName", ""),
                ("spec.restartPolicy", "/spec/restartPolicy", ""),
                ("spec.schedulerName", "/spec/schedulerName", ""),
                ("status.phase", "/status/phase", ""),
                ("status.podIP", "/status/podIP", ""),
            ]),
            ResourceType::of::<core::Service>(&["svc"], true),
            ResourceType::of::<core::Endpoints>(&["ep"], false),
            ResourceType::of::<core::ConfigMap>(&["cm"], false),
            ResourceType::of::<core::Secret>(&[], false).fields(&[("type", "/type", "")]),
            ResourceType::of::<core::Event>(&["ev"], false).fields(&[
                ("involvedObject.kind", "/involvedObject/kind", ""),
                ("involvedObject.name", "/involvedObject/name", ""),
                ("involvedObject.namespace", "/involvedObject/namespace", ""),
                ("involvedObject.uid", "/involvedObject/uid", ""),
                ("reason", "/reason", ""),
                ("type", "/type", ""),
            ]),
            ResourceType::of::<coordination::Lease>(&[], true),
            ResourceType::of::<apps::ReplicaSet>(&["rs"], true).scalable(),
            ResourceType::of::<apps::Deployment>(&["deploy"], true).scalable(),
            ResourceType::of::<batch::Job>(&[], true),
            ResourceType::of::<rbac::Role>(&[], false),
            ResourceType::of::<rbac::ClusterRole>(&[], false),
            ResourceType::of::<rbac::RoleBinding>(&[], false),
            ResourceType::of::<rbac::ClusterRoleBinding>(&[], false),
        ];
        Registry { types }
    }

    /// The kind served at `group/version` under `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The groups served, each with its one version, core (`""`) first.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for t in &self.types {
            if !seen.contains(&(t.group, t.version)) {
                seen.push((t.group, t.version));
            }
        }
        seen
    }
}
