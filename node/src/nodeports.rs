//! `type: NodePort` Services: a real listener on the node's address for each node port,
//! forwarding every connection into the pod network through the service proxy, so the
//! Service is reachable from outside the cluster at NODE:NODEPORT.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use skiff_api::core::Service;
use skiff_client::Store;

use crate::{AbortOnDrop, NodeContext};

/// The node ports this node listens on, each with the ClusterIP:port it leads to.
#[derive(Default)]
pub struct NodePorts {
    open: HashMap<u16, (SocketAddrV4, tokio::task::JoinHandle<()>)>,
    /// Ports that could not be opened, reported once each.
    failed: std::collections::HashSet<u16>,
}

impl Drop for NodePorts {
    fn drop(&mut self) {
        for (_, (_, task)) in self.open.drain() {
            task.abort();
        }
    }
}

impl NodePorts {
    /// Opens the node ports of `services` that are not open yet and closes those no Service
    /// has any more.
    pub async fn reconcile(&mut self, ctx: &Arc<NodeContext>, services: &Store<Service>) {
        let wanted: HashMap<u16, SocketAddrV4> = services
            .list()
            .iter()
            .filter(|s| matches!(s.spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")))
            .filter_map(|s| {
                let ip: Ipv4Addr = s.spec.cluster_ip.as_deref()?.parse().ok()?;
                Some(s.spec.ports.iter().filter_map(move |p| {
                    // Node ports forward TCP only; a UDP port's node port is not opened.
                    if p.protocol.as_deref().is_some_and(|p| p != "TCP") {
                        return None;
                    }
                    let node_port = u16::try_from(p.node_port?).ok()?;
                    Some((node_port, SocketAddrV4::new(ip, p.port as u16)))
                }))
            })
            .flatten()
            .collect();
        self.open.retain(|port, (target, task)| {
            let keep = wanted.get(port) == Some(target);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, target) in wanted {
            if self.open.contains_key(&port) {
                continue;
            }
            let listener =
                match tokio::net::TcpListener::bind((ctx.config.address.as_str(), port)).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        // Another node on this machine may hold it already.
                        if self.failed.insert(port) {
                            tracing::warn!(port, %error, "opening a node port failed");
                        }
                        continue;
                    }
                };
            self.failed.remove(&port);
            let task = tokio::spawn(forward(ctx.clone(), listener, target));
            self.open.insert(port, (target, task));
        }
    }
}

/// Forwards each connection on `listener` to the Service at `target`.
async fn forward(ctx: Arc<NodeContext>, listener: tokio::net::TcpListener, target: SocketAddrV4) {
    loop {
        let Ok((mut outside, peer)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let from = ctx.pod_network_address();
            match ctx
                .outside
                .connect_service(&ctx.network, from, target)
                .await
            {
                Ok(mut inside) => {
                    let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                }
                Err(error) => {
                    tracing::debug!(%peer, %target, %error, "a node port connection found no endpoint")
                }
            }
        });
    }
}

/// Listeners for a pod's `hostPort`s: each forwards connections on the node's address (or
/// the port's `hostIP`) to the container port in the pod network. They close when the
/// returned tasks are dropped (aborted).
pub fn open_host_ports(
    ctx: &Arc<NodeContext>,
    pod: &skiff_api::core::Pod,
    ip: Ipv4Addr,
) -> Vec<AbortOnDrop> {
    let mut open = Vec::new();
    for port in pod.spec.containers.iter().flat_map(|c| &c.ports) {
        let Some(host_port) = port
            .host_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
            continue;
        }
        let host = port
            .host_ip
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| ctx.config.address.clone());
        let listener = match std::net::TcpListener::bind((host.as_str(), host_port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
        {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(pod = %pod.metadata.name(), host_port, %error, "opening a host port failed");
                continue;
            }
        };
        let target = std::net::SocketAddr::from((ip, port.container_port as u16));
        let ctx = ctx.clone();
        open.push(AbortOnDrop(tokio::spawn(async move {
            loop {
                let Ok((mut outside, _)) = listener.accept().await else {
                    continue;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let from = ctx.pod_network_address();
                    if let Ok(mut inside) = ctx.network.connect_to_pod(target, from).await {
                        let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                    }
                });
            }
        })));
    }
    open
}
