//! The API server through `Router::oneshot`: every verb and error a client relies on.

mod api;
mod bad_input;
mod scheduler;
mod support;
mod watch;
