//! Which nodes a pod fits (filters) and which it fits best (scores).

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::core::{Node, Pod};

/// The amounts the scheduler accounts: CPU in millicores, memory in bytes, pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.cpu_millis += other.cpu_millis;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    fn sub(&mut self, other: Resources) {
        self.cpu_millis -= other.cpu_millis;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

/// What a pod asks for: the sum of its containers' requests, or the largest init
/// container's if that is more (init containers run one at a time, before the rest).
pub fn requests(pod: &Pod) -> Resources {
    let of = |containers: &[skiff_api::core::Container]| {
        containers.iter().fold((0i64, 0i64), |(cpu, mem), c| {
            let cpu_req = c
                .resources
                .requests
                .get("cpu")
                .and_then(|q| q.to_millis())
                .unwrap_or(0);
            let mem_req = c
                .resources
                .requests
                .get("memory")
                .and_then(|q| q.to_bytes())
                .unwrap_or(0);
            (cpu + cpu_req, mem + mem_req)
        })
    };
    let (cpu, memory) = of(&pod.spec.containers);
    let (init_cpu, init_memory) = pod
        .spec
        .init_containers
        .iter()
        .map(|c| of(std::slice::from_ref(c)))
        .fold((0, 0), |(a, b), (c, d)| (a.max(c), b.max(d)));
    Resources {
        cpu_millis: cpu.max(init_cpu),
        memory: memory.max(init_memory),
        pods: 1,
    }
}

/// A host port a container takes on its node: protocol and port.
pub type HostPort = (String, u16);

/// The host ports `pod`'s containers ask for (`ports[].hostPort`).
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let port = u16::try_from(p.host_port?).ok().filter(|p| *p != 0)?;
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), port))
        })
        .collect()
}

/// A node as the scheduler sees it: what it offers and what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub allocatable: Resources,
    pub used: Resources,
    /// Host ports taken by the pods placed on it, with how many pods take each.
    pub ports: std::collections::HashMap<HostPort, usize>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let status = &node.status;
        let quantity = |key: &str| {
            status
                .allocatable
                .get(key)
                .or_else(|| status.capacity.get(key))
        };
        let allocatable = Resources {
            cpu_millis: quantity("cpu").and_then(|q| q.to_millis()).unwrap_or(0),
            memory: quantity("memory").and_then(|q| q.to_bytes()).unwrap_or(0),
            // Kubernetes' default when a node does not say.
            pods: quantity("pods")
                .and_then(|q| q.to_millis())
                .map(|m| m / 1000)
                .unwrap_or(110),
        };
        NodeInfo {
            node,
            allocatable,
            used: Resources::default(),
            ports: Default::default(),
        }
    }

    pub fn place(&mut self, requests: Resources, ports: &[HostPort]) {
        self.used.add(requests);
        for port in ports {
            *self.ports.entry(port.clone()).or_default() += 1;
        }
    }

    pub fn unplace(&mut self, requests: Resources, ports: &[HostPort]) {
        self.used.sub(requests);
        for port in ports {
            if let Some(count) = self.ports.get_mut(port) {
                *count -= 1;
                if *count == 0 {
                    self.ports.remove(port);
                }
            }
        }
    }
}

/// Why a node does not fit a pod; counted per reason in the pod's condition message,
/// in Kubernetes' words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    NotReady,
    Unschedulable,
    Taint,
    Selector,
    Ports,
    Cpu,
    Memory,
    Pods,
}

impl Unfit {
    pub fn describe(self) -> &'static str {
        match self {
            Unfit::NotReady => "node(s) were not ready",
            Unfit::Unschedulable => "node(s) were unschedulable",
            Unfit::Taint => "node(s) had untolerated taint",
            Unfit::Selector => "node(s) didn't match Pod's node affinity/selector",
            Unfit::Ports => "node(s) didn't have free ports for the requested pod ports",
            Unfit::Cpu => "Insufficient cpu",
            Unfit::Memory => "Insufficient memory",
            Unfit::Pods => "Too many pods",
        }
    }
}

/// The filters, in Kubernetes' order: the first that fails is the reason.
pub fn check(pod: &Pod, requests: Resources, info: &NodeInfo) -> Result<(), Unfit> {
    let node = &info.node;
    if !node.is_ready() {
        return Err(Unfit::NotReady);
    }
    if node.spec.unschedulable && !tolerates_unschedulable(pod) {
        return Err(Unfit::Unschedulable);
    }
    let untolerated = node
        .spec
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .any(|taint| !pod.spec.tolerations.iter().any(|t| t.tolerates(taint)));
    if untolerated {
        return Err(Unfit::Taint);
    }
    if !selector_matches(pod, node) {
        return Err(Unfit::Selector);
    }
    if host_ports(pod)
        .iter()
        .any(|port| info.ports.contains_key(port))
    {
        return Err(Unfit::Ports);
    }
    let free = |alloc: i64, used: i64| alloc - used;
    if requests.pods > free(info.allocatable.pods, info.used.pods) {
        return Err(Unfit::Pods);
    }
    if requests.cpu_millis > 0
        && requests.cpu_millis > free(info.allocatable.cpu_millis, info.used.cpu_millis)
    {
        return Err(Unfit::Cpu);
    }
    if requests.memory > 0 && requests.memory > free(info.allocatable.memory, info.used.memory) {
        return Err(Unfit::Memory);
    }
    Ok(())
}

fn tolerates_unschedulable(pod: &Pod) -> bool {
    let taint = skiff_api::core::Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    pod.spec.tolerations.iter().any(|t| t.tolerates(&taint))
}

fn selector_matches(pod: &Pod, node: &Node) -> bool {
    let labels: &BTreeMap<String, String> = &node.metadata.labels;
    if !pod
        .spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = pod
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|selector| selector.matches(labels, node.metadata.name()))
}

/// How nodes are ranked among those that fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scoring {
    /// Prefer the emptiest node: spreads load (Kubernetes' default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that still fits: bin packing, leaves whole nodes free.
    MostAllocated,
}

/// A node's score for a pod, 0–100 per resource, averaged over CPU and memory (and the
/// pod count, so pods without requests still spread or pack), plus preferred affinity.
pub fn score(pod: &Pod, requests: Resources, info: &NodeInfo, scoring: Scoring) -> i64 {
    let fraction = |used: i64, add: i64, alloc: i64| -> i64 {
        if alloc <= 0 {
            return 0;
        }
        ((used + add) * 100 / alloc).clamp(0, 100)
    };
    let allocated = [
        fraction(
            info.used.cpu_millis,
            requests.cpu_millis,
            info.allocatable.cpu_millis,
        ),
        fraction(info.used.memory, requests.memory, info.allocatable.memory),
        fraction(info.used.pods, requests.pods, info.allocatable.pods),
    ];
    let base: i64 = match scoring {
        Scoring::LeastAllocated => allocated.iter().map(|a| 100 - a).sum::<i64>() / 3,
        Scoring::MostAllocated => allocated.iter().sum::<i64>() / 3,
    };
    let preferred: i64 = pod
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .map(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .iter()
                .filter(|p| {
                    p.preference
                        .matches(&info.node.metadata.labels, info.node.metadata.name())
                })
                .map(|p| p.weight as i64)
                .sum()
        })
        .unwrap_or(0);
    base + preferred
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> NodeInfo {
        let mut value = json!({
            "metadata": { "name": name, "labels": { "zone": "a" } },
            "status": {
                "allocatable": { "cpu": cpu, "memory": memory, "pods": "10" },
                "conditions": [{ "type": "Ready", "status": "True" }],
            },
        });
        json_merge(&mut value, &extra);
        NodeInfo::new(Arc::new(serde_json::from_value(value).unwrap()))
    }

    fn pod(cpu: &str, memory: &str, extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [{ "name": "c", "image": "x", "resources": { "requests": { "cpu": cpu, "memory": memory } } }] },
        });
        json_merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    fn json_merge(a: &mut serde_json::Value, b: &serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    #[test]
    fn filters_say_why_a_node_does_not_fit() {
        let p = pod("500m", "64Mi", json!({}));
        let r = requests(&p);
        assert_eq!(check(&p, r, &node("n", "1", "1Gi", json!({}))), Ok(()));
        assert_eq!(
            check(&p, r, &node("n", "250m", "1Gi", json!({}))),
            Err(Unfit::Cpu)
        );
        assert_eq!(
            check(&p, r, &node("n", "1", "32Mi", json!({}))),
            Err(Unfit::Memory)
        );
        let not_ready = node(
            "n",
            "1",
            "1Gi",
            json!({ "status": { "conditions": [{ "type": "Ready", "status": "False" }] } }),
        );
        assert_eq!(check(&p, r, &not_ready), Err(Unfit::NotReady));
        let cordoned = node(
            "n",
            "1",
            "1Gi",
            json!({ "spec": { "unschedulable": true } }),
        );
        assert_eq!(check(&p, r, &cordoned), Err(Unfit::Unschedulable));
        let tainted = node(
            "n",
            "1",
            "1Gi",
            json!({ "spec": { "taints": [{ "key": "gpu", "value": "yes", "effect": "NoSchedule" }] } }),
        );
        assert_eq!(check(&p, r, &tainted), Err(Unfit::Taint));
        let tolerant = pod(
            "500m",
            "64Mi",
            json!({ "spec": { "tolerations": [{ "key": "gpu", "operator": "Exists" }] } }),
        );
        assert_eq!(check(&tolerant, r, &tainted), Ok(()));
        let picky = pod(
            "500m",
            "64Mi",
            json!({ "spec": { "nodeSelector": { "zone": "b" } } }),
        );
        assert_eq!(
            check(&picky, r, &node("n", "1", "1Gi", json!({}))),
            Err(Unfit::Selector)
        );
        let affine = pod(
            "500m",
            "64Mi",
            json!({ "spec": { "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a", "c"] }] }] } } } } }),
        );
        assert_eq!(check(&affine, r, &node("n", "1", "1Gi", json!({}))), Ok(()));
        assert_eq!(
            check(
                &affine,
                r,
                &node(
                    "n",
                    "1",
                    "1Gi",
                    json!({ "metadata": { "labels": { "zone": "b" } } })
                )
            ),
            Err(Unfit::Selector)
        );
    }

    #[test]
    fn used_resources_count_and_pod_slots_run_out() {
        let p = pod("400m", "0", json!({}));
        let r = requests(&p);
        let mut n = node("n", "1", "1Gi", json!({}));
        n.place(r, &[]);
        n.place(r, &[]);
        assert_eq!(
            check(&p, r, &n),
            Err(Unfit::Cpu),
            "two of 400m used, 200m left"
        );
        n.unplace(r, &[]);
        assert_eq!(check(&p, r, &n), Ok(()));
        let tiny = pod("0", "0", json!({}));
        let mut full = node("n", "1", "1Gi", json!({}));
        for _ in 0..10 {
            full.place(requests(&tiny), &[]);
        }
        assert_eq!(check(&tiny, requests(&tiny), &full), Err(Unfit::Pods));
    }

    #[test]
    fn init_containers_count_by_their_largest() {
        let p = pod(
            "100m",
            "10Mi",
            json!({ "spec": { "initContainers": [{ "name": "i", "image": "x", "resources": { "requests": { "cpu": "2", "memory": "1Mi" } } }] } }),
        );
        assert_eq!(
            requests(&p),
            Resources {
                cpu_millis: 2000,
                memory: 10 * 1024 * 1024,
                pods: 1
            }
        );
    }

    #[test]
    fn scoring_spreads_or_packs() {
        let p = pod("100m", "0", json!({}));
        let r = requests(&p);
        let empty = node("empty", "2", "1Gi", json!({}));
        let mut busy = node("busy", "2", "1Gi", json!({}));
        busy.place(
            Resources {
                cpu_millis: 1000,
                memory: 0,
                pods: 3,
            },
            &[],
        );
        assert!(
            score(&p, r, &empty, Scoring::LeastAllocated)
                > score(&p, r, &busy, Scoring::LeastAllocated)
        );
        assert!(
            score(&p, r, &empty, Scoring::MostAllocated)
                < score(&p, r, &busy, Scoring::MostAllocated)
        );
    }

    #[test]
    fn a_host_port_is_taken_once_per_node() {
        let web = pod(
            "100m",
            "64Mi",
            json!({ "spec": { "containers": [{
            "name": "c", "ports": [{ "containerPort": 8080, "hostPort": 30080 }],
        }] } }),
        );
        assert_eq!(host_ports(&web), vec![("TCP".to_string(), 30080)]);
        let mut info = node("n", "4", "8Gi", json!({}));
        assert_eq!(check(&web, requests(&web), &info), Ok(()));
        info.place(requests(&web), &host_ports(&web));
        assert_eq!(check(&web, requests(&web), &info), Err(Unfit::Ports));
        let other = pod("100m", "64Mi", json!({}));
        assert_eq!(
            check(&other, requests(&other), &info),
            Ok(()),
            "pods without host ports still fit"
        );
        info.unplace(requests(&web), &host_ports(&web));
        assert_eq!(check(&web, requests(&web), &info), Ok(()));
    }
}
