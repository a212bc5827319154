//! The API server through `Router::oneshot`: every verb and error a client relies on.

mod allocation;
mod api;
mod authz;
mod bad_input;
mod certificates;
mod controllers_deployment;
mod controllers_endpoints;
mod controllers_gc;
mod controllers_job;
mod controllers_leader;
mod controllers_nodelifecycle;
mod controllers_replicaset;
mod controllers_support;
mod dry_run;
#[cfg(feature = "etcd")]
mod etcd;
mod field_validation;
mod limits;
mod metrics_api;
mod openapi;
mod reviews;
mod scheduler;
mod server_side_apply;
mod strategic_patch;
mod support;
mod tables;
mod watch;
