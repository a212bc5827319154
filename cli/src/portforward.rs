//! `skiff port-forward pod/NAME|svc/NAME [LOCAL:]REMOTE...`: listens on this machine and
//! carries each connection to the pod's port through the API server
//! (`pods/NAME/portforward`), which reaches it in the pod network of its node.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use skiff_client::Client;

use crate::api::Api;

#[derive(clap::Args, Debug)]
pub struct PortForwardArgs {
    /// `pod/NAME`, `NAME` (a pod) or `svc/NAME` (one of its ready pods).
    pub target: String,
    /// `LOCAL:REMOTE` or `REMOTE` (the same port locally). For a Service, REMOTE is a port of
    /// the Service, mapped to its target port on the pod.
    #[arg(required = true)]
    pub ports: Vec<String>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// Forwards until interrupted.
pub async fn run(api: &Api, args: PortForwardArgs) -> Result<u8> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let mut pairs = Vec::new();
    for spec in &args.ports {
        let (local, remote) = match spec.split_once(':') {
            Some((local, remote)) => (local, remote),
            None => (spec.as_str(), spec.as_str()),
        };
        let parse = |text: &str| {
            text.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .with_context(|| format!("{spec:?}: ports are LOCAL:REMOTE numbers, 1-65535"))
        };
        pairs.push((parse(local)?, parse(remote)?));
    }
    let (pod, pairs) = resolve(api, &namespace, &args.target, pairs).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind((args.address.as_str(), local))
            .await
            .with_context(|| format!("listening on {}:{local}", args.address))?;
        outln!(
            "Forwarding from {} -> {remote}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let client = api.client().clone();
        let pod = pod.clone();
        let namespace = namespace.clone();
        tasks.spawn(async move {
            loop {
                let Ok((connection, _)) = listener.accept().await else {
                    continue;
                };
                outln!("Handling connection for {local}");
                let (client, pod, namespace) = (client.clone(), pod.clone(), namespace.clone());
                tokio::spawn(async move {
                    if let Err(error) = forward(connection, &client, &namespace, &pod, remote).await
                    {
                        eprintln!("error forwarding port {remote} to pod {pod}: {error:#}");
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c().await.ok();
    Ok(0)
}

/// The pod to forward to and the pod ports, from a pod or a Service target.
async fn resolve(
    api: &Api,
    namespace: &str,
    target: &str,
    pairs: Vec<(u16, u16)>,
) -> Result<(String, Vec<(u16, u16)>)> {
    let (kind, name) = target.split_once('/').unwrap_or(("pod", target));
    match kind {
        "pod" | "pods" | "po" => Ok((name.to_string(), pairs)),
        "svc" | "service" | "services" => {
            let service = api
                .get(&format!("/api/v1/namespaces/{namespace}/services/{name}"))
                .await?;
            let endpoints = api
                .get(&format!("/api/v1/namespaces/{namespace}/endpoints/{name}"))
                .await?;
            let subset = &endpoints["subsets"][0];
            let pod = subset["addresses"][0]["targetRef"]["name"]
                .as_str()
                .with_context(|| format!("service {name} has no ready pods"))?
                .to_string();
            let mut mapped = Vec::new();
            for (local, remote) in pairs {
                let port = service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["port"].as_u64() == Some(u64::from(remote)))
                    .with_context(|| format!("service {name} has no port {remote}"))?;
                let port_name = port["name"].clone();
                let target = subset["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| {
                        p["name"] == port_name || (port_name.is_null() && p["name"] == Value::Null)
                    })
                    .and_then(|p| p["port"].as_u64())
                    .with_context(|| format!("service {name}: no endpoint port for {remote}"))?;
                mapped.push((local, target as u16));
            }
            Ok((pod, mapped))
        }
        other => bail!("{other:?}: port-forward goes to pod/NAME or svc/NAME"),
    }
}

/// Carries one local connection to `port` of the pod.
async fn forward(
    mut local: tokio::net::TcpStream,
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<()> {
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/portforward?ports={port}");
    let mut remote = client.upgrade(&path, "skiff-tcp").await?;
    tokio::io::copy_bidirectional(&mut local, &mut remote).await?;
    Ok(())
}
