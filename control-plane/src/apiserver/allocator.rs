//! Addresses the API server hands out: a ClusterIP per Service from the service range, and a
//! pod range (`spec.podCIDR`) per Node from the cluster's pod range.
//!
//! Each allocation is a key of its own in the store (`/allocations/serviceips/10.96.0.10`),
//! made with the store's create-if-absent: two API servers sharing one store can never
//! hand out the same address, and nothing is kept in memory that could disagree with the
//! store. An object's allocation is released when the object leaves the store.
//! (Kubernetes allocates ClusterIPs in the API server the same way and pod ranges in a
//! controller; here both are the API server's, so a node has its range in the answer to
//! its own registration and pods need no controller to get addresses.)

use std::net::Ipv4Addr;

use bytes::Bytes;
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use skiff_api::FieldError;

use super::error::{ApiError, ApiResult};
use super::object::name_of;
use super::registry::ResourceType;
use crate::store::{Store, StoreError};

const SERVICE_IPS: &str = "/allocations/serviceips/";
const POD_CIDRS: &str = "/allocations/podcidrs/";
const NODE_PORTS: &str = "/allocations/nodeports/";

/// Where node ports come from, as in Kubernetes.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The ranges addresses come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    /// Where ClusterIPs come from. Default `10.96.0.0/12`.
    pub service_cidr: Ipv4Net,
    /// Where nodes' pod ranges come from; `None`: nodes get none (and their pods no IPs).
    /// Default `10.244.0.0/16`.
    pub cluster_cidr: Option<Ipv4Net>,
    /// The prefix length of a node's pod range. Default 20: 4,094 pods on each of 16
    /// nodes in the default range (Kubernetes' /24 would cap a node at 254 pods, far
    /// below what a wasm node holds).
    pub node_cidr_mask_size: u8,
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            service_cidr: "10.96.0.0/12".parse().expect("a valid range"),
            cluster_cidr: Some("10.244.0.0/16".parse().expect("a valid range")),
            node_cidr_mask_size: 20,
        }
    }
}

impl Ranges {
    /// Checks that the ranges can work together; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.service_cidr.prefix_len() > 30 {
            return Err(format!(
                "service CIDR {} is too small: it needs at least 4 addresses",
                self.service_cidr
            ));
        }
        if let Some(cluster) = self.cluster_cidr {
            if self.node_cidr_mask_size < cluster.prefix_len() || self.node_cidr_mask_size > 30 {
                return Err(format!(
                    "node CIDR mask size {} must be between the pod CIDR's prefix length ({}) and 30",
                    self.node_cidr_mask_size,
                    cluster.prefix_len()
                ));
            }
            if cluster.contains(&self.service_cidr) || self.service_cidr.contains(&cluster) {
                return Err(format!(
                    "pod CIDR {cluster} and service CIDR {} overlap",
                    self.service_cidr
                ));
            }
        }
        Ok(())
    }
}

/// Gives a Service about to be created its ClusterIP, unless it asks for none (headless,
/// `clusterIP: None`) or is an `ExternalName`. A requested address is checked against the
/// range and taken if free. Returns the addresses taken, to release if the create fails.
pub(crate) async fn allocate_cluster_ip(
    store: &dyn Store,
    ranges: &Ranges,
    rt: &ResourceType,
    service: &mut Value,
) -> ApiResult<Vec<Ipv4Addr>> {
    let spec = service.get("spec").cloned().unwrap_or_else(|| json!({}));
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(Vec::new());
    }
    let requested = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            spec.pointer("/clusterIPs/0")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
        });
    if requested == Some("None") {
        return Ok(Vec::new());
    }
    let name = name_of(service).to_string();
    let invalid = |value: &str, message: String| {
        ApiError::invalid(
            rt,
            &name,
            &[FieldError::invalid("spec.clusterIPs", value, message)],
        )
    };
    let range = ranges.service_cidr;
    let ip = match requested {
        Some(text) => {
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| invalid(text, "must be a valid IPv4 address, or None".into()))?;
            if !usable(range, ip) {
                return Err(invalid(
                    text,
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                ));
            }
            if !claim(store, SERVICE_IPS, &ip.to_string()).await? {
                return Err(invalid(
                    text,
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            ip
        }
        None => {
            let hosts = range.hosts().count().max(1) as u64;
            let mut found = None;
            // Random tries first (as Kubernetes): cheap while the range has room.
            for _ in 0..32 {
                let ip = nth_host(range, rand_below(hosts));
                if usable(range, ip) && claim(store, SERVICE_IPS, &ip.to_string()).await? {
                    found = Some(ip);
                    break;
                }
            }
            if found.is_none() {
                for ip in range.hosts().filter(|ip| usable(range, *ip)) {
                    if claim(store, SERVICE_IPS, &ip.to_string()).await? {
                        found = Some(ip);
                        break;
                    }
                }
            }
            found.ok_or_else(|| {
                invalid(
                    "",
                    format!("failed to allocate a service IP: the range {range} is full"),
                )
            })?
        }
    };
    let spec = service
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("a Service must be a JSON object"))?
        .entry("spec")
        .or_insert_with(|| json!({}));
    spec["clusterIP"] = json!(ip.to_string());
    spec["clusterIPs"] = json!([ip.to_string()]);
    Ok(vec![ip])
}

/// Gives each port of a `NodePort` (or `LoadBalancer`) Service about to be created its node
/// port: the one asked for if free, else a free one from [`NODE_PORT_RANGE`]. Returns the
/// ports taken, to release if the create fails.
pub(crate) async fn allocate_node_ports(
    store: &dyn Store,
    rt: &ResourceType,
    service: &mut Value,
) -> ApiResult<Vec<u16>> {
    let wants = matches!(
        service.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    if !wants {
        return Ok(Vec::new());
    }
    let name = name_of(service).to_string();
    let mut taken = Vec::new();
    let count = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..count {
        let requested = service
            .pointer(&format!("/spec/ports/{i}/nodePort"))
            .and_then(Value::as_u64)
            .filter(|p| *p != 0);
        let port = match requested {
            Some(port) => {
                let port = u16::try_from(port).unwrap_or(0);
                if !NODE_PORT_RANGE.contains(&port)
                    || !claim(store, NODE_PORTS, &port.to_string()).await?
                {
                    release_node_ports(store, taken).await;
                    return Err(ApiError::invalid(
                        rt,
                        &name,
                        &[FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            port,
                            "provided port is already allocated",
                        )],
                    ));
                }
                port
            }
            None => {
                let span = u64::from(NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start()) + 1;
                let start = rand_below(span) as u16;
                let mut found = None;
                for step in 0..span as u16 {
                    let port = NODE_PORT_RANGE.start() + (start + step) % span as u16;
                    if claim(store, NODE_PORTS, &port.to_string()).await? {
                        found = Some(port);
                        break;
                    }
                }
                let Some(port) = found else {
                    release_node_ports(store, taken).await;
                    return Err(ApiError::invalid(
                        rt,
                        &name,
                        &[FieldError::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            "",
                            "failed to allocate a node port: the range 30000-32767 is full",
                        )],
                    ));
                };
                service["spec"]["ports"][i]["nodePort"] = json!(port);
                port
            }
        };
        taken.push(port);
    }
    Ok(taken)
}

/// Releases node ports.
pub(crate) async fn release_node_ports(store: &dyn Store, ports: impl IntoIterator<Item = u16>) {
    for port in ports {
        release(store, NODE_PORTS, &port.to_string()).await;
    }
}

/// The node ports a stored Service holds.
pub(crate) fn node_ports_of(service: &Value) -> Vec<u16> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Releases the ClusterIPs of a Service that left the store (or was never stored).
pub(crate) async fn release_cluster_ips(store: &dyn Store, ips: impl IntoIterator<Item = String>) {
    for ip in ips {
        release(store, SERVICE_IPS, &ip).await;
    }
}

/// The ClusterIPs a stored Service holds.
pub(crate) fn cluster_ips_of(service: &Value) -> Vec<String> {
    service
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(Value::as_str)
                .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Gives a Node without a pod range the next free one. Returns the range taken, to
/// release if the write fails; `None` if the node has one or the cluster hands none out.
pub(crate) async fn allocate_pod_cidr(
    store: &dyn Store,
    ranges: &Ranges,
    rt: &ResourceType,
    node: &mut Value,
) -> ApiResult<Option<Ipv4Net>> {
    let Some(cluster) = ranges.cluster_cidr else {
        return Ok(None);
    };
    let has_one = node
        .pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
        || node
            .pointer("/spec/podCIDRs/0")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty());
    if has_one {
        return Ok(None);
    }
    let blocks = cluster
        .subnets(ranges.node_cidr_mask_size)
        .map_err(|e| ApiError::internal("splitting the pod range", e))?;
    for block in blocks {
        if claim(store, POD_CIDRS, &block.to_string().replace('/', "_")).await? {
            let spec = node
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("a Node must be a JSON object"))?
                .entry("spec")
                .or_insert_with(|| json!({}));
            spec["podCIDR"] = json!(block.to_string());
            spec["podCIDRs"] = json!([block.to_string()]);
            return Ok(Some(block));
        }
    }
    let name = name_of(node);
    Err(ApiError::invalid(
        rt,
        name,
        &[FieldError::invalid(
            "spec.podCIDR",
            "",
            format!(
                "no free /{} left in the pod range {cluster}: give the server a larger --pod-cidr or a longer --node-cidr-mask-size",
                ranges.node_cidr_mask_size
            ),
        )],
    ))
}

/// Releases the pod range of a Node that left the store (or was never stored).
pub(crate) async fn release_pod_cidr(store: &dyn Store, node: &Value) {
    if let Some(cidr) = node.pointer("/spec/podCIDR").and_then(Value::as_str)
        && cidr.parse::<Ipv4Net>().is_ok()
    {
        release(store, POD_CIDRS, &cidr.replace('/', "_")).await;
    }
}

/// Whether `ip` may be handed out: in the range, not its network or broadcast address, and
/// not its first address (kept for the cluster's own `kubernetes` Service, as Kubernetes).
fn usable(range: Ipv4Net, ip: Ipv4Addr) -> bool {
    range.contains(&ip)
        && ip != range.network()
        && ip != range.broadcast()
        && u32::from(ip) != u32::from(range.network()) + 1
}

fn nth_host(range: Ipv4Net, n: u64) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::from(range.network())
            .wrapping_add(1)
            .wrapping_add(n as u32),
    )
}

/// A random number below `bound` (not for secrets: spreading allocations only).
fn rand_below(bound: u64) -> u64 {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    random % bound.max(1)
}

/// Takes `name` under `prefix`; false if it was taken already.
async fn claim(store: &dyn Store, prefix: &str, name: &str) -> ApiResult<bool> {
    match store.create(&format!("{prefix}{name}"), Bytes::new()).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(error) => Err(ApiError::internal("recording an address allocation", error)),
    }
}

async fn release(store: &dyn Store, prefix: &str, name: &str) {
    match store.delete(&format!("{prefix}{name}"), None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(error) => {
            tracing::warn!(%error, allocation = %format!("{prefix}{name}"), "releasing an address failed; it stays taken")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ranges_work_together_and_bad_ones_are_named() {
        Ranges::default().validate().unwrap();
        let overlapping = Ranges {
            service_cidr: "10.244.0.0/20".parse().unwrap(),
            ..Ranges::default()
        };
        assert!(overlapping.validate().unwrap_err().contains("overlap"));
        let too_wide = Ranges {
            node_cidr_mask_size: 8,
            ..Ranges::default()
        };
        assert!(too_wide.validate().unwrap_err().contains("mask size 8"));
    }

    #[test]
    fn network_broadcast_and_the_first_address_are_never_handed_out() {
        let range: Ipv4Net = "10.96.0.0/29".parse().unwrap();
        let usable: Vec<Ipv4Addr> = range.hosts().filter(|ip| usable(range, *ip)).collect();
        assert_eq!(
            usable,
            (2..=6)
                .map(|n| Ipv4Addr::new(10, 96, 0, n))
                .collect::<Vec<_>>()
        );
    }
}
