//! What the node's running containers use, for the metrics API (`kubectl top`).
//!
//! Each container is tracked while it runs ([`Stats::track`]). A sampler reads every tracked
//! container each [`crate::NodeConfig::stats_period`] (10 s by default) and keeps its last
//! two readings: its CPU is the rate between them (cores = Δcpu / Δt), its memory that of
//! the newer one. Until a container has been read twice, its CPU is the rate since it
//! started, and a container not yet read at all is read when asked. Reading costs two
//! atomic loads per container ([`skiff_runtime::UsageMeter`]); no guest is interrupted.
//!
//! The node API serves it at `/stats/summary` ([`Summary`]): the shape of the kubelet's
//! Summary API, cut to what the metrics API needs, plus each window's length
//! (`windowNanoSeconds`), which the kubelet leaves to its reader.
//!
//! A node's usage is the sum of its pods': a skiff node runs nothing but wasm, and its own
//! process is not counted (under `skiff server` that process is also the control plane's,
//! and reading a process's CPU time takes calls that differ by OS).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use skiff_api::core::Pod;
use skiff_runtime::UsageMeter;

/// How often running containers are read, unless the node is configured otherwise.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// Reads one container's counters; a function so tests can feed the tracker made-up ones.
type Read = Box<dyn Fn() -> skiff_runtime::Usage + Send + Sync>;

/// One reading of a container's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Instant,
    /// The wall-clock time of `at`, for the timestamps served.
    wall: SystemTime,
    cpu: Duration,
    memory: u64,
}

/// Use over a window, ending at the newer of two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rate {
    nano_cores: u64,
    window: Duration,
    end: SystemTime,
    memory: u64,
    /// CPU time at the end, since the container started.
    cpu_total: Duration,
}

/// The rate from `earlier` to `later`: CPU time used between them over the time between
/// them, in billionths of a core; the memory of `later`.
fn rate(earlier: Sample, later: Sample) -> Rate {
    let window = later.at.saturating_duration_since(earlier.at);
    let used = later.cpu.saturating_sub(earlier.cpu);
    let nano_cores = if window.is_zero() {
        0
    } else {
        u64::try_from(used.as_nanos() * 1_000_000_000 / window.as_nanos()).unwrap_or(u64::MAX)
    };
    Rate {
        nano_cores,
        window,
        end: later.wall,
        memory: later.memory,
        cpu_total: later.cpu,
    }
}

/// Which pod a container belongs to, as the metrics API names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodReference {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// One running container and its readings.
struct Tracked {
    pod: PodReference,
    container: String,
    read: Read,
    /// The reading before `latest`; the one taken when tracking began until there are two.
    previous: Sample,
    latest: Option<Sample>,
}

impl Tracked {
    fn rate(&self, at: Instant, wall: SystemTime) -> Rate {
        match self.latest {
            Some(latest) => rate(self.previous, latest),
            None => rate(self.previous, sample(&self.read, at, wall)),
        }
    }
}

fn sample(read: &Read, at: Instant, wall: SystemTime) -> Sample {
    let usage = read();
    Sample {
        at,
        wall,
        cpu: usage.cpu,
        memory: usage.memory_bytes,
    }
}

/// The containers the node runs, tracked for their usage. Cheap to clone: clones share.
#[derive(Clone, Default)]
pub struct Stats {
    tracked: Arc<Mutex<HashMap<u64, Tracked>>>,
    next_id: Arc<AtomicU64>,
}

/// Tracks one container until dropped.
pub struct Tracking {
    tracked: Arc<Mutex<HashMap<u64, Tracked>>>,
    id: u64,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Stats {
    /// Tracks container `container` of `pod`, read through `meter`, until the returned
    /// guard is dropped (when the container has ended).
    pub fn track(&self, pod: &Pod, container: &str, meter: UsageMeter) -> Tracking {
        let pod = PodReference {
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name().to_string(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        self.track_with(
            pod,
            container,
            Box::new(move || meter.read()),
            Instant::now(),
            SystemTime::now(),
        )
    }

    fn track_with(
        &self,
        pod: PodReference,
        container: &str,
        read: Read,
        at: Instant,
        wall: SystemTime,
    ) -> Tracking {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let previous = sample(&read, at, wall);
        let tracked = Tracked {
            pod,
            container: container.to_string(),
            read,
            previous,
            latest: None,
        };
        self.tracked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tracked);
        Tracking {
            tracked: self.tracked.clone(),
            id,
        }
    }

    /// Reads every tracked container once.
    fn sample_at(&self, at: Instant, wall: SystemTime) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        for container in tracked.values_mut() {
            if let Some(latest) = container.latest {
                container.previous = latest;
            }
            container.latest = Some(sample(&container.read, at, wall));
        }
    }

    /// Reads every tracked container each `period`, until dropped.
    pub async fn run_sampler(self, period: Duration) {
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: tracking began moments ago, a reading now says little.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.sample_at(Instant::now(), SystemTime::now());
        }
    }

    /// What node `node` and its pods use, as the node API serves it. `period` is the
    /// sampling period, the window reported for a node that runs nothing.
    pub fn summary(&self, node: &str, period: Duration) -> Summary {
        self.summary_at(node, period, Instant::now(), SystemTime::now())
    }

    fn summary_at(&self, node: &str, period: Duration, at: Instant, wall: SystemTime) -> Summary {
        let mut pods: BTreeMap<PodReference, Vec<ContainerStats>> = BTreeMap::new();
        {
            let tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
            for container in tracked.values() {
                pods.entry(container.pod.clone())
                    .or_default()
                    .push(ContainerStats::new(
                        &container.container,
                        container.rate(at, wall),
                    ));
            }
        }
        let pods: Vec<PodStats> = pods
            .into_iter()
            .map(|(pod_ref, mut containers)| {
                containers.sort_by(|a, b| a.name.cmp(&b.name));
                let (cpu, memory) = total(containers.iter().map(|c| (&c.cpu, &c.memory)));
                PodStats {
                    pod_ref,
                    cpu,
                    memory,
                    containers,
                }
            })
            .collect();
        let (mut cpu, mut memory) = total(pods.iter().map(|p| (&p.cpu, &p.memory)));
        if pods.is_empty() {
            let time = rfc3339(wall);
            cpu.time.clone_from(&time);
            cpu.window_nano_seconds = nanos(period);
            memory.time = time;
        }
        Summary {
            node: NodeStats {
                node_name: node.to_string(),
                cpu,
                memory,
            },
            pods,
        }
    }
}

/// The sum of several parts' use: CPU and memory added up, the window the shortest of
/// theirs and the time the latest (their samples are taken at the same ticks, so the
/// windows differ only for containers that started within the last one).
fn total<'a>(
    parts: impl Iterator<Item = (&'a CpuStats, &'a MemoryStats)>,
) -> (CpuStats, MemoryStats) {
    let mut cpu = CpuStats::default();
    let mut memory = MemoryStats::default();
    let mut window: Option<u64> = None;
    for (part_cpu, part_memory) in parts {
        cpu.usage_nano_cores = cpu
            .usage_nano_cores
            .saturating_add(part_cpu.usage_nano_cores);
        cpu.usage_core_nano_seconds = cpu
            .usage_core_nano_seconds
            .saturating_add(part_cpu.usage_core_nano_seconds);
        memory.working_set_bytes = memory
            .working_set_bytes
            .saturating_add(part_memory.working_set_bytes);
        // RFC 3339 times of one format and zone order as strings do.
        if part_cpu.time > cpu.time {
            cpu.time.clone_from(&part_cpu.time);
        }
        window = Some(window.map_or(part_cpu.window_nano_seconds, |w| {
            w.min(part_cpu.window_nano_seconds)
        }));
    }
    cpu.window_nano_seconds = window.unwrap_or_default();
    memory.time.clone_from(&cpu.time);
    (cpu, memory)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `GET /stats/summary` of the node API: the kubelet's Summary API, cut to what the metrics
/// API needs, with each window's length added.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// The node's use: the sum of its pods'.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

/// A pod's use: the sum of its running containers'.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub containers: Vec<ContainerStats>,
}

/// One running container's use.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
}

impl ContainerStats {
    fn new(name: &str, rate: Rate) -> ContainerStats {
        let time = rfc3339(rate.end);
        ContainerStats {
            name: name.to_string(),
            cpu: CpuStats {
                time: time.clone(),
                window_nano_seconds: nanos(rate.window),
                usage_nano_cores: rate.nano_cores,
                usage_core_nano_seconds: nanos(rate.cpu_total),
            },
            memory: MemoryStats {
                time,
                working_set_bytes: rate.memory,
            },
        }
    }
}

/// CPU use over the window ending at `time`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When the window ended (RFC 3339).
    pub time: String,
    /// How long the window was.
    pub window_nano_seconds: u64,
    /// The average use over the window, in billionths of a core.
    pub usage_nano_cores: u64,
    /// CPU time used since the container started.
    pub usage_core_nano_seconds: u64,
}

/// Memory held at `time`: the bytes of the guests' linear memories and tables.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    pub working_set_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(base: Instant, seconds: u64) -> Sample {
        Sample {
            at: base + SECOND * seconds as u32,
            wall: SystemTime::UNIX_EPOCH + SECOND * seconds as u32,
            cpu: Duration::ZERO,
            memory: 0,
        }
    }

    #[test]
    fn the_rate_is_cpu_time_over_elapsed_time() {
        let base = Instant::now();
        let earlier = Sample {
            cpu: Duration::from_millis(500),
            ..at(base, 0)
        };
        let later = Sample {
            cpu: Duration::from_millis(3_000),
            memory: 4096,
            ..at(base, 10)
        };
        assert_eq!(
            rate(earlier, later),
            Rate {
                // 2.5 s of CPU in 10 s: a quarter of a core.
                nano_cores: 250_000_000,
                window: 10 * SECOND,
                end: later.wall,
                memory: 4096,
                cpu_total: Duration::from_secs(3),
            }
        );
        // A guest spinning on a core the whole window uses a whole core.
        let spun = Sample {
            cpu: Duration::from_millis(10_500),
            ..later
        };
        assert_eq!(rate(earlier, spun).nano_cores, 1_000_000_000);
        // No time between the samples: no rate rather than a division by zero.
        assert_eq!(rate(later, later).nano_cores, 0);
    }

    /// A made-up container whose counters the test sets.
    fn fake() -> (Arc<Mutex<skiff_runtime::Usage>>, Read) {
        let usage = Arc::new(Mutex::new(skiff_runtime::Usage::default()));
        let read = usage.clone();
        (usage, Box::new(move || *read.lock().unwrap()))
    }

    fn pod(name: &str) -> PodReference {
        PodReference {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn a_container_reports_the_rate_since_it_started_then_over_the_last_period() {
        let stats = Stats::default();
        let base = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let (usage, read) = fake();
        let _tracking = stats.track_with(pod("spin"), "main", read, base, wall);
        let set = |cpu_ms: u64, memory: u64| {
            *usage.lock().unwrap() = skiff_runtime::Usage {
                cpu: Duration::from_millis(cpu_ms),
                memory_bytes: memory,
            }
        };
        let container = |summary: &Summary| summary.pods[0].containers[0].clone();

        // Not sampled yet: read when asked, since it started.
        set(1_000, 1 << 20);
        let summary = stats.summary_at("node-0", 10 * SECOND, base + 4 * SECOND, wall);
        let first = container(&summary);
        assert_eq!(first.cpu.usage_nano_cores, 250_000_000);
        assert_eq!(first.cpu.window_nano_seconds, 4_000_000_000);
        assert_eq!(first.memory.working_set_bytes, 1 << 20);

        // One sample: still since it started, up to that sample.
        set(5_000, 2 << 20);
        stats.sample_at(base + 10 * SECOND, wall + 10 * SECOND);
        set(99_000, 99 << 20); // what happens after the sample is not seen until the next
        let summary = stats.summary_at("node-0", 10 * SECOND, base + 12 * SECOND, wall);
        let second = container(&summary);
        assert_eq!(second.cpu.usage_nano_cores, 500_000_000);
        assert_eq!(second.cpu.window_nano_seconds, 10_000_000_000);
        assert_eq!(second.cpu.time, "1970-01-01T00:00:10Z");
        assert_eq!(second.memory.working_set_bytes, 2 << 20);

        // Two samples: the last period only.
        set(7_000, 3 << 20);
        stats.sample_at(base + 20 * SECOND, wall + 20 * SECOND);
        let summary = stats.summary_at("node-0", 10 * SECOND, base + 25 * SECOND, wall);
        let third = container(&summary);
        assert_eq!(third.cpu.usage_nano_cores, 200_000_000);
        assert_eq!(third.cpu.usage_core_nano_seconds, 7_000_000_000);
        assert_eq!(third.memory.working_set_bytes, 3 << 20);
    }

    #[test]
    fn pods_and_the_node_add_up_their_containers_and_ended_ones_go() {
        let stats = Stats::default();
        let base = Instant::now();
        let wall = SystemTime::UNIX_EPOCH;
        let (web, read_web) = fake();
        let (sidecar, read_sidecar) = fake();
        let (other, read_other) = fake();
        let _web = stats.track_with(pod("a"), "web", read_web, base, wall);
        let sidecar_tracking = stats.track_with(pod("a"), "sidecar", read_sidecar, base, wall);
        let _other = stats.track_with(pod("b"), "main", read_other, base, wall);
        *web.lock().unwrap() = skiff_runtime::Usage {
            cpu: 2 * SECOND,
            memory_bytes: 100,
        };
        *sidecar.lock().unwrap() = skiff_runtime::Usage {
            cpu: SECOND,
            memory_bytes: 20,
        };
        *other.lock().unwrap() = skiff_runtime::Usage {
            cpu: 7 * SECOND,
            memory_bytes: 3,
        };
        stats.sample_at(base + 10 * SECOND, wall + 10 * SECOND);
        let summary = stats.summary_at("node-0", 10 * SECOND, base + 11 * SECOND, wall);
        assert_eq!(summary.node.node_name, "node-0");
        let names: Vec<_> = summary
            .pods
            .iter()
            .map(|p| p.pod_ref.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let a = &summary.pods[0];
        let containers: Vec<_> = a.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(containers, ["sidecar", "web"]);
        assert_eq!(a.cpu.usage_nano_cores, 300_000_000);
        assert_eq!(a.memory.working_set_bytes, 120);
        assert_eq!(a.cpu.time, "1970-01-01T00:00:10Z");
        assert_eq!(summary.node.cpu.usage_nano_cores, 1_000_000_000);
        assert_eq!(summary.node.memory.working_set_bytes, 123);
        assert_eq!(summary.node.cpu.window_nano_seconds, 10_000_000_000);

        drop(sidecar_tracking);
        let summary = stats.summary_at("node-0", 10 * SECOND, base + 11 * SECOND, wall);
        assert_eq!(summary.pods[0].containers.len(), 1);
        assert_eq!(summary.node.memory.working_set_bytes, 103);
    }

    #[test]
    fn a_node_without_pods_uses_nothing_over_the_period() {
        let summary = Stats::default().summary_at(
            "node-0",
            10 * SECOND,
            Instant::now(),
            SystemTime::UNIX_EPOCH,
        );
        assert!(summary.pods.is_empty());
        assert_eq!(summary.node.cpu.usage_nano_cores, 0);
        assert_eq!(summary.node.cpu.window_nano_seconds, 10_000_000_000);
        assert_eq!(summary.node.cpu.time, "1970-01-01T00:00:00Z");
    }
}
