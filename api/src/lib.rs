//! skiff's API objects, in the Kubernetes wire format.
//!
//! The JSON and YAML shapes here are the ones Kubernetes uses, so that manifests,
//! `kubectl` and the official client libraries work unchanged. This crate does no I/O:
//! it holds the types, their defaults ([`Object::set_defaults`]), their validation
//! ([`Object::validate`], errors carrying Kubernetes field paths), label and field
//! selectors, and resource quantities.

pub mod apps;
pub mod batch;
pub mod coordination;
pub mod core;
pub mod meta;
pub mod quantity;
pub mod rbac;
pub mod resource;
pub mod selector;
pub mod validation;

/// The schema generator the types' `JsonSchema` impls are for (feature `schema`).
#[cfg(feature = "schema")]
pub use schemars;

pub use core::IntOrString;
pub use meta::{ListMeta, ObjectMeta, OwnerReference, Status, StatusCause, StatusDetails};
pub use quantity::Quantity;
pub use resource::{Object, Resource};
pub use selector::{FieldSelector, LabelSelector, Selector};
pub use validation::{FieldError, FieldErrorKind, NameRule};

/// `skip_serializing_if` for fields Kubernetes omits when they hold their zero value.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `skip_serializing_if` for Kubernetes' `bool ... omitempty` fields.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// Fills an object's `apiVersion` and `kind` when the client left them out, so that what
/// is stored and returned always names its type.
pub(crate) fn fill_type_meta<T: Resource>(api_version: &mut String, kind: &mut String) {
    if api_version.is_empty() {
        *api_version = T::api_version();
    }
    if kind.is_empty() {
        *kind = T::KIND.to_string();
    }
}

/// `deserialize_with` for lists, maps and structs: JSON `null` (YAML `args:` with nothing
/// after it) reads as empty, as Kubernetes reads it.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize as _;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
