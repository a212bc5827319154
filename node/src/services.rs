//! What the node's service proxy and DNS know about Services: which ClusterIP, port and
//! protocol (TCP or UDP) lead to which ready endpoints, and which names resolve to which
//! addresses. Built from the Service and Endpoints informers; the pod network asks it on
//! every connect, every datagram to a Service and every lookup. SCTP ports are ignored: the
//! pod network has no SCTP.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skiff_api::core::{Endpoints, Service};

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The transport protocols the service proxy carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The protocol of a Service or Endpoints port (`TCP` when unset); `None` for SCTP or
    /// anything else the pod network does not carry.
    pub fn of_port(protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// Where a connection to an address goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Not a ClusterIP and port of any Service: the address is taken as it is.
    Direct,
    /// A Service port with no ready endpoint: refused, as kube-proxy rejects it.
    NoEndpoints { service: String },
    /// To this endpoint.
    To(SocketAddrV4),
}

/// One Service port's backends.
#[derive(Debug, Default)]
struct Backends {
    service: String,
    endpoints: Vec<SocketAddrV4>,
    next: AtomicUsize,
    /// `sessionAffinity: ClientIP`: how long a client stays with its endpoint.
    affinity: Option<Duration>,
}

/// A client of a Service port under ClientIP affinity: (protocol, service address, client).
type AffinityKey = (Protocol, SocketAddrV4, Ipv4Addr);

/// Services by protocol, ClusterIP and port, and names by namespace.
#[derive(Debug, Default)]
pub struct ServiceTable {
    backends: HashMap<(Protocol, SocketAddrV4), Backends>,
    /// `(namespace, name)` → the addresses the name resolves to: its ClusterIP, or for a
    /// headless Service the ready endpoints' pod IPs.
    names: HashMap<(String, String), Vec<Ipv4Addr>>,
    /// ClientIP affinity: the endpoint of each client of a Service port, and when last used.
    sticky: Mutex<HashMap<AffinityKey, (SocketAddrV4, Instant)>>,
    /// Every ClusterIP with a port: traffic to one of them never leaves the node.
    cluster_ips: HashSet<Ipv4Addr>,
}

impl ServiceTable {
    /// The table for these Services and their Endpoints.
    pub fn build(
        services: &[std::sync::Arc<Service>],
        endpoints: &[std::sync::Arc<Endpoints>],
    ) -> Self {
        let endpoints_of: HashMap<(String, String), &Endpoints> = endpoints
            .iter()
            .map(|e| {
                (
                    (
                        e.metadata.namespace().to_string(),
                        e.metadata.name().to_string(),
                    ),
                    e.as_ref(),
                )
            })
            .collect();
        let mut table = ServiceTable::default();
        for service in services {
            let namespace = service.metadata.namespace().to_string();
            let name = service.metadata.name().to_string();
            let key = (namespace.clone(), name.clone());
            let found = endpoints_of.get(&key).copied();
            let cluster_ip = service
                .spec
                .cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let Some(cluster_ip) = cluster_ip else {
                // Headless (or an ExternalName): the name is the ready pods' addresses.
                let ips = found
                    .map(|e| {
                        e.subsets
                            .iter()
                            .flat_map(|s| &s.addresses)
                            .filter_map(|a| a.ip.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                table.names.insert(key, ips);
                continue;
            };
            table.names.insert(key, vec![cluster_ip]);
            let affinity = (service.spec.session_affinity.as_deref() == Some("ClientIP"))
                .then_some(Duration::from_secs(10_800));
            for port in &service.spec.ports {
                let Some(protocol) = Protocol::of_port(port.protocol.as_deref()) else {
                    continue;
                };
                // The Endpoints controller resolved the target port per subset; its ports
                // carry the service port's name and protocol.
                let mut backends = Vec::new();
                for subset in found.map(|e| e.subsets.as_slice()).unwrap_or_default() {
                    let Some(target) = subset.ports.iter().find(|p| {
                        p.name == port.name
                            && Protocol::of_port(p.protocol.as_deref()) == Some(protocol)
                    }) else {
                        continue;
                    };
                    for address in &subset.addresses {
                        if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                            backends.push(SocketAddrV4::new(ip, target.port as u16));
                        }
                    }
                }
                backends.sort();
                table.cluster_ips.insert(cluster_ip);
                table.backends.insert(
                    (protocol, SocketAddrV4::new(cluster_ip, port.port as u16)),
                    Backends {
                        service: format!("{namespace}/{name}"),
                        endpoints: backends,
                        next: AtomicUsize::new(0),
                        affinity,
                    },
                );
            }
        }
        table
    }

    /// Where a connection (or a new UDP flow) of `protocol` from `client` to `destination`
    /// goes: round robin over the ready endpoints, or the client's last one under ClientIP
    /// affinity.
    pub fn route(&self, protocol: Protocol, client: Ipv4Addr, destination: SocketAddrV4) -> Route {
        let Some(backends) = self.backends.get(&(protocol, destination)) else {
            return Route::Direct;
        };
        if backends.endpoints.is_empty() {
            return Route::NoEndpoints {
                service: backends.service.clone(),
            };
        }
        let pick = || {
            let n = backends.next.fetch_add(1, Ordering::Relaxed);
            backends.endpoints[n % backends.endpoints.len()]
        };
        let Some(timeout) = backends.affinity else {
            return Route::To(pick());
        };
        let mut sticky = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let endpoint = match sticky.get(&(protocol, destination, client)) {
            Some((endpoint, used))
                if now.duration_since(*used) < timeout && backends.endpoints.contains(endpoint) =>
            {
                *endpoint
            }
            _ => pick(),
        };
        sticky.insert((protocol, destination, client), (endpoint, now));
        Route::To(endpoint)
    }

    /// Whether `endpoint` is still a ready endpoint of the Service port `destination`: a UDP
    /// flow keeps its endpoint only while it is.
    pub fn has_endpoint(
        &self,
        protocol: Protocol,
        destination: SocketAddrV4,
        endpoint: SocketAddrV4,
    ) -> bool {
        self.backends
            .get(&(protocol, destination))
            .is_some_and(|backends| backends.endpoints.contains(&endpoint))
    }

    /// Whether `ip` is the ClusterIP of a Service with ports.
    pub fn is_cluster_ip(&self, ip: Ipv4Addr) -> bool {
        self.cluster_ips.contains(&ip)
    }

    /// The addresses `name` resolves to for a pod in `namespace`: `NAME`,
    /// `NAME.NAMESPACE`, `NAME.NAMESPACE.svc` and `NAME.NAMESPACE.svc.cluster.local`
    /// (with or without a final dot). `None`: not a Service name.
    pub fn resolve(&self, name: &str, namespace: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let name = name
            .strip_suffix(CLUSTER_DOMAIN)
            .and_then(|n| n.strip_suffix('.'))
            .unwrap_or(&name);
        let name = name.strip_suffix(".svc").unwrap_or(name);
        let (service, namespace) = match name.split_once('.') {
            Some((service, ns)) if !ns.contains('.') => (service, ns),
            Some(_) => return None,
            None => (name, namespace),
        };
        self.names
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn service(name: &str, spec: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "default" }, "spec": spec,
            }))
            .unwrap(),
        )
    }

    fn endpoints(name: &str, ips: &[&str], port: i32, port_name: Option<&str>) -> Arc<Endpoints> {
        let addresses: Vec<_> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "default" },
                "subsets": [{
                    "addresses": addresses,
                    "notReadyAddresses": [{ "ip": "10.244.9.9" }],
                    "ports": [{ "name": port_name, "port": port }],
                }],
            }))
            .unwrap(),
        )
    }

    fn addr(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn connections_to_a_cluster_ip_are_spread_over_ready_endpoints() {
        let table = ServiceTable::build(
            &[service(
                "web",
                json!({ "clusterIP": "10.96.0.10", "ports": [{ "port": 80, "targetPort": 8080 }] }),
            )],
            &[endpoints(
                "web",
                &["10.244.0.2", "10.244.1.2", "10.244.2.2"],
                8080,
                None,
            )],
        );
        let client = Ipv4Addr::new(10, 244, 0, 5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            match table.route(Protocol::Tcp, client, addr("10.96.0.10:80")) {
                Route::To(endpoint) => {
                    assert_eq!(endpoint.port(), 8080);
                    assert_ne!(
                        endpoint.ip(),
                        &Ipv4Addr::new(10, 244, 9, 9),
                        "never a not-ready one"
                    );
                    seen.insert(endpoint);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 3, "round robin reaches every endpoint");
        assert_eq!(
            table.route(Protocol::Tcp, client, addr("10.96.0.10:81")),
            Route::Direct
        );
        assert_eq!(
            table.route(Protocol::Tcp, client, addr("10.244.0.2:8080")),
            Route::Direct
        );
    }

    #[test]
    fn client_ip_affinity_sticks_and_empty_services_refuse() {
        let table = ServiceTable::build(
            &[
                service(
                    "sticky",
                    json!({ "clusterIP": "10.96.0.11", "sessionAffinity": "ClientIP", "ports": [{ "name": "http", "port": 80 }] }),
                ),
                service(
                    "empty",
                    json!({ "clusterIP": "10.96.0.12", "ports": [{ "port": 80 }] }),
                ),
            ],
            &[endpoints(
                "sticky",
                &["10.244.0.2", "10.244.1.2"],
                8080,
                Some("http"),
            )],
        );
        let first = table.route(
            Protocol::Tcp,
            Ipv4Addr::new(10, 244, 0, 5),
            addr("10.96.0.11:80"),
        );
        for _ in 0..5 {
            assert_eq!(
                table.route(
                    Protocol::Tcp,
                    Ipv4Addr::new(10, 244, 0, 5),
                    addr("10.96.0.11:80")
                ),
                first
            );
        }
        assert_eq!(
            table.route(
                Protocol::Tcp,
                Ipv4Addr::new(10, 244, 0, 5),
                addr("10.96.0.12:80")
            ),
            Route::NoEndpoints {
                service: "default/empty".into()
            }
        );
    }

    #[test]
    fn tcp_and_udp_ports_of_one_number_lead_to_their_own_endpoints() {
        let dns = Arc::new(
            serde_json::from_value::<Service>(json!({
                "metadata": { "name": "dns", "namespace": "default" },
                "spec": { "clusterIP": "10.96.0.10", "ports": [
                    { "name": "dns-udp", "protocol": "UDP", "port": 53, "targetPort": "dns" },
                    { "name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 8053 },
                    { "name": "sctp", "protocol": "SCTP", "port": 9 },
                ] },
            }))
            .unwrap(),
        );
        let endpoints = Arc::new(
            serde_json::from_value::<Endpoints>(json!({
                "metadata": { "name": "dns", "namespace": "default" },
                "subsets": [{
                    "addresses": [{ "ip": "10.244.1.2" }],
                    "ports": [
                        { "name": "dns-udp", "port": 5353, "protocol": "UDP" },
                        { "name": "dns-tcp", "port": 8053, "protocol": "TCP" },
                        { "name": "sctp", "port": 9, "protocol": "SCTP" },
                    ],
                }],
            }))
            .unwrap(),
        );
        let table = ServiceTable::build(&[dns], &[endpoints]);
        let client = Ipv4Addr::new(10, 244, 0, 5);
        let service = addr("10.96.0.10:53");
        assert_eq!(
            table.route(Protocol::Udp, client, service),
            Route::To(addr("10.244.1.2:5353"))
        );
        assert_eq!(
            table.route(Protocol::Tcp, client, service),
            Route::To(addr("10.244.1.2:8053"))
        );
        assert!(table.has_endpoint(Protocol::Udp, service, addr("10.244.1.2:5353")));
        assert!(!table.has_endpoint(Protocol::Udp, service, addr("10.244.1.2:8053")));
        assert!(table.is_cluster_ip(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(
            table.route(Protocol::Udp, client, addr("10.96.0.10:9")),
            Route::Direct,
            "SCTP is not carried"
        );
        assert_eq!(Protocol::of_port(None), Some(Protocol::Tcp));
    }

    #[test]
    fn names_resolve_in_every_form_and_headless_services_to_pods() {
        let table = ServiceTable::build(
            &[
                service(
                    "web",
                    json!({ "clusterIP": "10.96.0.10", "ports": [{ "port": 80 }] }),
                ),
                service(
                    "db",
                    json!({ "clusterIP": "None", "ports": [{ "port": 5432 }] }),
                ),
            ],
            &[endpoints("db", &["10.244.0.7", "10.244.1.7"], 5432, None)],
        );
        let web = Some(vec![Ipv4Addr::new(10, 96, 0, 10)]);
        for name in [
            "web",
            "web.default",
            "web.default.svc",
            "web.default.svc.cluster.local",
            "WEB.default.svc.cluster.local.",
        ] {
            assert_eq!(table.resolve(name, "default"), web, "{name}");
        }
        assert_eq!(
            table.resolve("web", "other"),
            None,
            "a short name is the pod's namespace"
        );
        assert_eq!(table.resolve("web.default", "other"), web);
        assert_eq!(table.resolve("example.com", "default"), None);
        assert_eq!(
            table.resolve("db.default.svc.cluster.local", "default"),
            Some(vec![
                Ipv4Addr::new(10, 244, 0, 7),
                Ipv4Addr::new(10, 244, 1, 7)
            ])
        );
    }
}
