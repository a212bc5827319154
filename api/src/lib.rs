//! skiff's API objects, in the Kubernetes wire format.
//!
//! The JSON and YAML shapes here are the ones Kubernetes uses, so that manifests,
//! `kubectl` and the official client libraries work unchanged. This crate does no I/O:
//! it holds the types, their defaults ([`Object::set_defaults`]), their validation
//! ([`Object::validate`], errors carrying Kubernetes field paths), label and field
//! selectors, and resource quantities.

pub mod apps;
pub mod coordination;
pub mod core;
pub mod meta;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod validation;

pub use meta::{ListMeta, ObjectMeta, OwnerReference, Status, StatusCause, StatusDetails};
pub use quantity::Quantity;
pub use resource::{Object, Resource};
pub use validation::{FieldError, FieldErrorKind};
