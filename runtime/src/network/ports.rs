//! A pod's port spaces: which (address, port) pairs its sockets have bound, and where what
//! arrives at each is queued. Shared by all containers of the pod, as one network namespace is
//! in Kubernetes. TCP and UDP each have their own ([`PortSpace`] over their queue type): a pod
//! may bind TCP 53 and UDP 53 at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// Ports handed out for a bind to port 0 and for the implicit bind of a `connect`: Linux's
/// default `ip_local_port_range`.
const EPHEMERAL: RangeInclusive<u16> = 32768..=60999;

/// Why an address could not be bound in a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Another socket of the pod holds an overlapping (address, port).
    #[error("address in use")]
    AddressInUse,
    /// Every ephemeral port is taken.
    #[error("no ephemeral port left")]
    NoEphemeralPort,
    /// The address is not one of the pod's: its IP, its loopback or the wildcard.
    #[error("address not available in this pod")]
    NotBindable,
}

/// The bound addresses of one pod for one protocol. `Q` is where what arrives at a binding is
/// queued: a TCP listener's accept queue, a UDP socket's receive queue.
pub(crate) struct PortSpace<Q> {
    ports: HashMap<u16, Vec<Binding<Q>>>,
    next_id: u64,
    next_ephemeral: u16,
}

struct Binding<Q> {
    id: u64,
    ip: IpAddr,
    /// Where what arrives is queued: for TCP once the socket listens, for UDP from the bind.
    listener: Option<Q>,
}

impl<Q: Clone> PortSpace<Q> {
    pub(crate) fn new() -> Self {
        Self {
            ports: HashMap::new(),
            next_id: 0,
            next_ephemeral: *EPHEMERAL.start(),
        }
    }

    /// Binds `addr`, choosing an ephemeral port for port 0. Returns the binding's id and the
    /// address bound.
    pub(crate) fn bind(&mut self, addr: SocketAddr) -> Result<(u64, SocketAddr), BindError> {
        let port = match addr.port() {
            0 => self.ephemeral(addr.ip())?,
            port if self.taken(addr.ip(), port) => return Err(BindError::AddressInUse),
            port => port,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.ports.entry(port).or_default().push(Binding {
            id,
            ip: addr.ip(),
            listener: None,
        });
        Ok((id, SocketAddr::new(addr.ip(), port)))
    }

    /// Makes a binding listen: what arrives at it is queued on `queue`.
    pub(crate) fn listen(&mut self, id: u64, port: u16, queue: Q) {
        if let Some(binding) = self
            .ports
            .get_mut(&port)
            .and_then(|bindings| bindings.iter_mut().find(|binding| binding.id == id))
        {
            binding.listener = Some(queue);
        }
    }

    /// Frees a binding (its socket is gone).
    pub(crate) fn release(&mut self, id: u64, port: u16) {
        if let Some(bindings) = self.ports.get_mut(&port) {
            bindings.retain(|binding| binding.id != id);
            if bindings.is_empty() {
                self.ports.remove(&port);
            }
        }
    }

    /// The queue of the listener a connection (or datagram) to `to` reaches: one bound to
    /// exactly that address or to the wildcard of its family (never both: they would overlap).
    pub(crate) fn listener(&self, to: SocketAddr) -> Option<Q> {
        self.ports
            .get(&to.port())?
            .iter()
            .filter(|binding| {
                binding.ip == to.ip()
                    || (binding.ip.is_unspecified() && binding.ip.is_ipv4() == to.ip().is_ipv4())
            })
            .find_map(|binding| binding.listener.clone())
    }

    fn taken(&self, ip: IpAddr, port: u16) -> bool {
        self.ports
            .get(&port)
            .is_some_and(|bindings| bindings.iter().any(|binding| overlap(binding.ip, ip)))
    }

    fn ephemeral(&mut self, ip: IpAddr) -> Result<u16, BindError> {
        for _ in EPHEMERAL {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            if !self.taken(ip, port) {
                return Ok(port);
            }
        }
        Err(BindError::NoEphemeralPort)
    }
}

/// Whether two bindings of one port collide. IPv4 and IPv6 are separate port spaces (WASI 0.2
/// sockets are IPv6-only); within a family the wildcard collides with every address.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    type Tcp = PortSpace<mpsc::Sender<()>>;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_port_is_bound_once_per_address_and_family() {
        let mut ports = Tcp::new();
        ports.bind(addr("10.244.1.7:8080")).unwrap();
        ports.bind(addr("127.0.0.1:8080")).unwrap();
        assert_eq!(
            ports.bind(addr("10.244.1.7:8080")),
            Err(BindError::AddressInUse)
        );
        assert_eq!(
            ports.bind(addr("0.0.0.0:8080")),
            Err(BindError::AddressInUse)
        );
        // IPv6 is a port space of its own.
        ports.bind(addr("[::]:8080")).unwrap();
        assert_eq!(ports.bind(addr("[::1]:8080")), Err(BindError::AddressInUse));
    }

    #[test]
    fn the_wildcard_takes_the_port_for_every_address() {
        let mut ports = Tcp::new();
        let (id, _) = ports.bind(addr("0.0.0.0:80")).unwrap();
        assert_eq!(
            ports.bind(addr("127.0.0.1:80")),
            Err(BindError::AddressInUse)
        );
        ports.release(id, 80);
        ports.bind(addr("127.0.0.1:80")).unwrap();
    }

    #[test]
    fn port_zero_gets_a_free_ephemeral_port() {
        let mut ports = Tcp::new();
        ports.bind(addr("0.0.0.0:32768")).unwrap();
        let (_, first) = ports.bind(addr("127.0.0.1:0")).unwrap();
        let (_, second) = ports.bind(addr("127.0.0.1:0")).unwrap();
        assert_eq!(first.port(), 32769, "skips the port the wildcard holds");
        assert_eq!(second.port(), 32770);
        assert!(first.ip().is_loopback());
    }

    #[test]
    fn connections_reach_listeners_on_their_address_or_the_wildcard() {
        let mut ports = Tcp::new();
        let (loopback, _) = ports.bind(addr("127.0.0.1:80")).unwrap();
        ports.listen(loopback, 80, mpsc::channel(1).0);
        assert!(ports.listener(addr("127.0.0.1:80")).is_some());
        assert!(
            ports.listener(addr("10.244.1.7:80")).is_none(),
            "a loopback listener is reachable only on loopback"
        );
        ports.release(loopback, 80);
        assert!(ports.listener(addr("127.0.0.1:80")).is_none());

        let (any, _) = ports.bind(addr("0.0.0.0:80")).unwrap();
        ports.listen(any, 80, mpsc::channel(1).0);
        assert!(ports.listener(addr("10.244.1.7:80")).is_some());
        assert!(ports.listener(addr("127.0.0.1:80")).is_some());
        assert!(
            ports.listener(addr("[::1]:80")).is_none(),
            "IPv6 is separate"
        );
        assert!(ports.listener(addr("10.244.1.7:81")).is_none());
        // A bound socket that does not listen takes no connections.
        ports.bind(addr("127.0.0.1:90")).unwrap();
        assert!(ports.listener(addr("127.0.0.1:90")).is_none());
    }
}
