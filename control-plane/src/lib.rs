//! skiff's control plane: the store and the API server; the scheduler and the
//! controllers come as API clients beside them. See DESIGN.md for the way one request
//! travels.

pub mod apiserver;
pub mod controllers;
pub mod pki;
pub mod scheduler;
pub mod store;
