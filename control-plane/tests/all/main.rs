//! The API server through `Router::oneshot`: every verb and error a client relies on.

mod api;
mod bad_input;
mod support;
mod watch;
