//! What every API object is: a kind in a group and version, with metadata.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::meta::ObjectMeta;
use crate::validation::{FieldError, NameRule};

/// The static description of an API kind and access to its metadata, in the shape of
/// kube-core's `Resource`: enough for a client to build the kind's URLs and for the
/// server to route requests to it.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// `Pod`, `Deployment`, ...
    const KIND: &'static str;
    /// The API group: `""` for the core group, `apps`, `coordination.k8s.io`, ...
    const GROUP: &'static str;
    /// `v1`.
    const VERSION: &'static str;
    /// The lowercase plural used in URLs: `pods`, `deployments`.
    const PLURAL: &'static str;
    /// Whether objects of this kind live in a namespace.
    const NAMESPACED: bool;

    /// `v1` for the core group, `GROUP/VERSION` otherwise.
    fn api_version() -> String {
        if Self::GROUP.is_empty() {
            Self::VERSION.to_string()
        } else {
            format!("{}/{}", Self::GROUP, Self::VERSION)
        }
    }

    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The object's metadata, for changing it.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

/// Server-side behaviour of a kind: its defaults and its validation.
///
/// Both work on the typed object after decoding; the API server calls `set_defaults`
/// before `validate` on every create and update, as Kubernetes does.
pub trait Object: Resource {
    /// Whether the kind has a `status` that only the `status` subresource may change.
    const HAS_STATUS_SUBRESOURCE: bool;

    /// Which names objects of the kind may have; the server checks `metadata.name`
    /// against it with [`crate::validation::validate_object_meta`]. Most kinds take a
    /// DNS-1123 subdomain; Namespaces a DNS-1123 label; Services a DNS-1035 label.
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;

    /// Fills in the fields Kubernetes defaults (restartPolicy `Always`, protocol `TCP`,
    /// RollingUpdate 25%/25%, ...). Must be idempotent.
    fn set_defaults(&mut self) {}

    /// Checks a new object. Every problem is reported with its field path; an empty
    /// vector means valid. Metadata (name, labels, ...) is checked by the caller.
    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// Checks an update against the stored object: immutable fields stay as they were.
    /// The default checks the new object as if created.
    fn validate_update(&self, _old: &Self) -> Vec<FieldError> {
        self.validate()
    }
}

/// Implements [`Resource`] for a struct with `api_version`, `kind` and `metadata` fields.
#[macro_export]
macro_rules! impl_resource {
    ($ty:ty, kind = $kind:literal, group = $group:literal, version = $version:literal, plural = $plural:literal, namespaced = $ns:literal) => {
        impl $crate::resource::Resource for $ty {
            const KIND: &'static str = $kind;
            const GROUP: &'static str = $group;
            const VERSION: &'static str = $version;
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $ns;

            fn meta(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
