//! `skiff port-forward pod/NAME|svc/NAME [LOCAL:]REMOTE...`: listens on this machine and
//! carries each connection to the pod's port through the API server
//! (`pods/NAME/portforward`), which reaches it in the pod network of its node.

use std::path::Path;

use anyhow::{Context, Result, bail};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_client::Config;

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
pub async fn run(api: &Api, kubeconfig: Option<&Path>, args: PortForwardArgs) -> Result<u8> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| api.default_namespace.clone());
    let path = crate::api::kubeconfig_path(kubeconfig)?;
    let config = Config::from_kubeconfig_file(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    if config.server.scheme() != "http" {
        bail!(
            "port-forward speaks plain HTTP to the API server for now; {} is not",
            config.server
        );
    }
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
        let config = config.clone();
        let pod = pod.clone();
        let namespace = namespace.clone();
        tasks.spawn(async move {
            loop {
                let Ok((connection, _)) = listener.accept().await else {
                    continue;
                };
                outln!("Handling connection for {local}");
                let (config, pod, namespace) = (config.clone(), pod.clone(), namespace.clone());
                tokio::spawn(async move {
                    if let Err(error) = forward(connection, &config, &namespace, &pod, remote).await
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
    config: &Config,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<()> {
    let host = config
        .server
        .host_str()
        .context("the server URL has no host")?;
    let server_port = config.server.port_or_known_default().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, server_port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection.with_upgrades());
    let mut request = hyper::Request::post(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/portforward?ports={port}"
    ))
    .header(hyper::header::HOST, format!("{host}:{server_port}"))
    .header(hyper::header::CONNECTION, "Upgrade")
    .header(hyper::header::UPGRADE, "skiff-tcp");
    if let Some(token) = &config.token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new())?)
        .await?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        bail!(
            "{status}: {}",
            message["message"]
                .as_str()
                .unwrap_or(&String::from_utf8_lossy(&body))
        );
    }
    let upgraded = hyper::upgrade::on(&mut response).await?;
    let mut remote = TokioIo::new(upgraded);
    tokio::io::copy_bidirectional(&mut local, &mut remote).await?;
    Ok(())
}
