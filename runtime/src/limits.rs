//! Resource limits of one instance: memory through a [`wasmtime::ResourceLimiter`], CPU
//! through epoch deadlines that yield (and, under a CPU limit, sleep).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, UpdateDeadline};

/// Bytes charged per table element against the memory limit (one pointer-sized slot).
const TABLE_ELEMENT_BYTES: u64 = 8;

/// The bytes of linear memory and tables every live instance of one container holds: what
/// its limiters have granted, less what instances that ended gave back. Read by the node
/// for `kubectl top` with one atomic load, never touching a running guest.
#[derive(Debug, Default)]
pub(crate) struct MemoryGauge(AtomicU64);

impl MemoryGauge {
    /// The bytes held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Caps the bytes of all linear memories and tables of one store, and remembers whether a
/// growth was refused so a guest that then fails is reported as out of memory. What it
/// grants is added to its container's [`MemoryGauge`], and given back when the store (and
/// with it the limiter) is dropped.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: Option<u64>,
    used: u64,
    refused: bool,
    gauge: Arc<MemoryGauge>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: Option<u64>, gauge: Arc<MemoryGauge>) -> Self {
        Self {
            limit,
            used: 0,
            refused: false,
            gauge,
        }
    }

    /// Whether a growth (or the initial allocation) was refused for exceeding the limit.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    fn charge(&mut self, bytes: u64) -> bool {
        let total = self.used.saturating_add(bytes);
        if self.limit.is_some_and(|limit| total > limit) {
            self.refused = true;
            return false;
        }
        self.used = total;
        self.gauge.0.fetch_add(bytes, Ordering::Relaxed);
        true
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.gauge.0.fetch_sub(self.used, Ordering::Relaxed);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refusing (rather than trapping) lets `memory.grow` return -1 as the spec says; a
        // guest that cannot cope then fails, and the refusal makes that out of memory.
        Ok(self.charge(desired.saturating_sub(current) as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self
            .charge((desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES)))
    }
}

/// Set by [`Cpu::kill`]; the error a killed guest's next time slice ends with.
#[derive(Debug)]
pub(crate) struct KilledError;

impl std::fmt::Display for KilledError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("killed by the runtime")
    }
}

impl std::error::Error for KilledError {}

/// CPU accounting and throttling shared by every instance of one container.
#[derive(Debug)]
pub(crate) struct Cpu {
    /// Millicores, or `None` for unlimited.
    millis: Option<u32>,
    /// Length of one time slice: how long a guest runs before it yields.
    slice: Duration,
    /// The slice in epoch ticks.
    slice_ticks: u64,
    /// Guest running time so far, in nanoseconds, as measured between yields.
    consumed_nanos: AtomicU64,
    killed: AtomicBool,
}

impl Cpu {
    pub(crate) fn new(millis: Option<u32>, tick: Duration, slice_ticks: u64) -> Arc<Self> {
        let millis = millis.map(|millis| millis.clamp(1, 1_000_000));
        let slice_ticks = slice_ticks.max(1);
        let slice = tick * u32::try_from(slice_ticks).unwrap_or(u32::MAX);
        Arc::new(Self {
            millis,
            slice,
            slice_ticks,
            consumed_nanos: AtomicU64::new(0),
            killed: AtomicBool::new(false),
        })
    }

    /// How long the container's guests have run so far.
    pub(crate) fn consumed(&self) -> Duration {
        Duration::from_nanos(self.consumed_nanos.load(Ordering::Relaxed))
    }

    /// Makes every instance trap with [`KilledError`] at its next time slice.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Installs the deadline and callback on a new store.
    pub(crate) fn install<T: 'static>(self: &Arc<Self>, store: &mut wasmtime::Store<T>) {
        let slice = SliceClock::new(self.clone());
        store.set_epoch_deadline(self.slice_ticks);
        store.epoch_deadline_callback(move |_| slice.on_deadline());
    }

    /// How long a guest that just ran for `ran` must pause to stay within its limit.
    pub(crate) fn pause_after(&self, ran: Duration) -> Duration {
        match self.millis {
            Some(millis) if millis < 1000 => ran * (1000 - millis) / millis,
            // A limit of a core or more cannot be exceeded by one single-threaded guest.
            _ => Duration::ZERO,
        }
    }
}

/// Per-store state of the deadline callback.
struct SliceClock {
    cpu: Arc<Cpu>,
    base: Instant,
    /// When the guest last got its thread back, in nanoseconds since `base`; written by the
    /// yield future at the moment it completes.
    resumed_at: Arc<AtomicU64>,
}

impl SliceClock {
    fn new(cpu: Arc<Cpu>) -> Self {
        Self {
            cpu,
            base: Instant::now(),
            resumed_at: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Called when a slice ends with the guest running: charge it, then yield the thread
    /// (after a pause under a CPU limit) so no guest blocks a host thread or starves others.
    fn on_deadline(&self) -> wasmtime::Result<UpdateDeadline> {
        if self.cpu.is_killed() {
            return Err(KilledError.into());
        }
        let now = nanos_since(self.base);
        let resumed_at = self.resumed_at.load(Ordering::Relaxed);
        // The slice may include time the guest spent waiting in host calls; cap the charge at
        // one slice so a guest that mostly sleeps is not throttled for its sleeping.
        let ran = Duration::from_nanos(now.saturating_sub(resumed_at)).min(self.cpu.slice);
        self.cpu
            .consumed_nanos
            .fetch_add(ran.as_nanos() as u64, Ordering::Relaxed);
        let pause = self.cpu.pause_after(ran);
        let resumed_at = self.resumed_at.clone();
        let base = self.base;
        let resume: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
            resumed_at.store(nanos_since(base), Ordering::Relaxed);
        });
        Ok(UpdateDeadline::YieldCustom(self.cpu.slice_ticks, resume))
    }
}

fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_refuses_growth_past_the_cap_and_remembers() {
        let mut limiter = MemoryLimiter::new(Some(10 << 20), Default::default());
        assert!(limiter.memory_growing(0, 8 << 20, None).unwrap());
        assert!(!limiter.refused());
        assert!(!limiter.memory_growing(8 << 20, 11 << 20, None).unwrap());
        assert!(limiter.refused());
        assert!(limiter.memory_growing(8 << 20, 9 << 20, None).unwrap());
    }

    #[test]
    fn tables_count_against_the_memory_limit() {
        let mut limiter = MemoryLimiter::new(Some(1024), Default::default());
        assert!(limiter.table_growing(0, 100, None).unwrap());
        assert!(!limiter.table_growing(100, 200, None).unwrap());
    }

    #[test]
    fn the_gauge_counts_what_live_limiters_granted() {
        let gauge = Arc::new(MemoryGauge::default());
        let mut first = MemoryLimiter::new(Some(1 << 20), gauge.clone());
        let mut second = MemoryLimiter::new(None, gauge.clone());
        assert!(first.memory_growing(0, 64 << 10, None).unwrap());
        assert!(first.table_growing(0, 10, None).unwrap());
        assert!(second.memory_growing(0, 128 << 10, None).unwrap());
        assert_eq!(gauge.bytes(), (64 << 10) + 80 + (128 << 10));
        // A refused growth is not counted.
        assert!(!first.memory_growing(64 << 10, 2 << 20, None).unwrap());
        assert_eq!(gauge.bytes(), (64 << 10) + 80 + (128 << 10));
        drop(first);
        assert_eq!(gauge.bytes(), 128 << 10);
        drop(second);
        assert_eq!(gauge.bytes(), 0);
    }

    #[test]
    fn throttling_pauses_in_proportion() {
        let cpu = Cpu::new(Some(100), Duration::from_millis(1), 10);
        assert_eq!(
            cpu.pause_after(Duration::from_millis(10)),
            Duration::from_millis(90)
        );
        let cpu = Cpu::new(Some(500), Duration::from_millis(1), 10);
        assert_eq!(
            cpu.pause_after(Duration::from_millis(10)),
            Duration::from_millis(10)
        );
        let cpu = Cpu::new(None, Duration::from_millis(1), 10);
        assert_eq!(cpu.pause_after(Duration::from_millis(10)), Duration::ZERO);
    }
}
