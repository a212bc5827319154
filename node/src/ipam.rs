//! Pod IPs from the node's pod range (`spec.podCIDR`, given by the API server when the
//! node registered). The range's first host address is the node's own in the pod network;
//! pods get the others. A pod keeps its address for its life, also across a restart of the
//! agent (the address is read back from the pod's status).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The addresses of this node's pods, by pod uid.
#[derive(Debug)]
pub struct PodIps {
    range: Ipv4Net,
    by_pod: HashMap<String, Ipv4Addr>,
    used: BTreeSet<Ipv4Addr>,
    /// Where the search for a free address starts: after the last one handed out, so an
    /// address just released is not reused at once.
    next: u32,
}

impl PodIps {
    pub fn new(range: Ipv4Net) -> PodIps {
        PodIps {
            range,
            by_pod: HashMap::new(),
            used: BTreeSet::new(),
            next: 0,
        }
    }

    /// How many pods the range has addresses for.
    pub fn capacity(&self) -> u32 {
        (self.range.hosts().count() as u32).saturating_sub(1)
    }

    /// The pod's address: the one it has, else `previous` (from its status, after an agent
    /// restart) if that is free and in range, else the next free one. `None` when the
    /// range is exhausted.
    pub fn assign(&mut self, uid: &str, previous: Option<&str>) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let previous = previous
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| self.is_pod_address(*ip) && !self.used.contains(ip));
        let ip = match previous {
            Some(ip) => ip,
            None => self.next_free()?,
        };
        self.used.insert(ip);
        self.by_pod.insert(uid.to_string(), ip);
        Some(ip)
    }

    /// Gives the pod's address back.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.used.remove(&ip);
        }
    }

    fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        self.range.contains(&ip)
            && ip != self.range.network()
            && ip != self.range.broadcast()
            && ip != self.node_address()
    }

    /// The node's own address in its range: the first host.
    pub fn node_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.range.network()) + 1)
    }

    fn next_free(&mut self) -> Option<Ipv4Addr> {
        let first = u32::from(self.range.network()) + 2;
        let count = self.capacity();
        for step in 0..count {
            let offset = (self.next + step) % count;
            let ip = Ipv4Addr::from(first + offset);
            if !self.used.contains(&ip) && self.is_pod_address(ip) {
                self.next = (offset + 1) % count;
                return Some(ip);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_distinct_addresses_and_keep_them() {
        let mut ips = PodIps::new("10.244.1.0/29".parse().unwrap());
        assert_eq!(ips.capacity(), 5, "six hosts, one of them the node's");
        let a = ips.assign("a", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(
            ips.assign("a", None),
            Some(a),
            "asking again changes nothing"
        );
        let b = ips.assign("b", Some("10.244.1.6")).unwrap();
        assert_eq!(
            b,
            Ipv4Addr::new(10, 244, 1, 6),
            "a restarted agent keeps the address"
        );
        let c = ips.assign("c", Some("10.244.1.6")).unwrap();
        assert_ne!(c, b, "an address in use is not handed out twice");
        let outside = ips.assign("d", Some("10.9.9.9")).unwrap();
        assert!(ips.range.contains(&outside));
        ips.assign("e", None).unwrap();
        assert_eq!(ips.assign("f", None), None, "the range is exhausted");
        ips.release("a");
        assert_eq!(
            ips.assign("f", None),
            Some(a),
            "a released address is free again"
        );
    }
}
