//! End-to-end tests: real `skiff` processes on `127.0.0.1:0`.

mod cli;
mod cluster;
mod durability;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod ha;
mod jobs;
mod kubectl;
mod kubectl_auth;
mod kubectl_create;
mod kubectl_port_forward;
mod kubectl_top;
mod kubectl_workloads;
#[cfg(feature = "etcd")]
mod migrate;
mod network;
mod pods;
mod probes;
mod python_client;
mod rollout;
mod run;
mod samples;
mod security;
mod support;
mod udp;
