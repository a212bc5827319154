//! The typed HTTP client of the skiff API server.
//!
//! skiff's API server speaks the Kubernetes API: the same paths, verbs, list and watch
//! shapes and `Status` errors. This crate is how controllers, the node agent and the
//! CLI talk to it:
//!
//! - [`Config`] (from a kubeconfig) and [`Client`]: connection, credentials, raw JSON
//!   requests for kinds known only at run time;
//! - [`Api`]: the verbs on one typed kind — get, list, create, replace, patch, delete,
//!   status and scale subresources, watch;
//! - [`watcher()`]: a watch that lists, resumes and relists by itself;
//! - [`Informer`] and [`Store`]: a cache of one kind kept current by a watcher, telling
//!   subscribers which objects changed;
//! - [`WorkQueue`] and [`controller::run`]: one reconcile per key at a time, retries
//!   with back-off.

pub mod api;
pub mod backoff;
pub mod client;
pub mod config;
pub mod controller;
pub mod error;
pub mod path;
pub mod reflector;
pub mod tls;
pub mod watcher;
pub mod workqueue;

pub use api::{
    Api, DeleteOutcome, DeleteParams, ListParams, Patch, PropagationPolicy, WatchEvent, WatchParams,
};
pub use backoff::Backoff;
pub use client::{Client, Method};
pub use config::{Config, Kubeconfig};
pub use controller::Action;
pub use error::{Error, Result, error_chain};
pub use reflector::{Changes, Informer, ObjectRef, Store};
pub use watcher::{WatcherParams, watcher};
pub use workqueue::WorkQueue;
