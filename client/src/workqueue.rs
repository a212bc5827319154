//! [`WorkQueue`]: the keys a controller has to reconcile, client-go's work queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first delay of [`WorkQueue::add_rate_limited`] for a key. Default 5 ms.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest delay of [`WorkQueue::add_rate_limited`]. Default 1000 s (client-go's).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1000);

/// A queue of keys to process, where:
///
/// - a key waiting is not queued twice (adds fold);
/// - a key is handed to one worker at a time: added again while in flight, it is
///   handed out again only after [`done`](Self::done);
/// - [`add_after`](Self::add_after) queues a key later (the earliest wins when asked
///   twice), and [`add_rate_limited`](Self::add_rate_limited) later still after every
///   failure of that key (5 ms doubling, to 1000 s), until [`forget`](Self::forget).
///
/// Its size is bounded by the number of distinct keys. Cheap to clone: clones are the
/// same queue. Delays run on tokio's clock (so tests may pause it).
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    state: Mutex<State<K>>,
    /// Wakes getters: a key became ready, an earlier delay was added, or shutdown.
    wake: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

struct State<K> {
    /// Keys ready to hand out, oldest first.
    queue: VecDeque<K>,
    /// Keys that must be handed out (again): those in `queue`, and those in flight that
    /// were added again.
    dirty: HashSet<K>,
    /// Keys a worker holds.
    processing: HashSet<K>,
    /// Keys to add later, by due time (the sequence number keeps equal times apart).
    delayed: BTreeMap<(Instant, u64), K>,
    /// When each delayed key is due, so it is delayed once.
    due: HashMap<K, (Instant, u64)>,
    next_seq: u64,
    /// Consecutive failures per key, for the rate-limited back-off.
    failures: HashMap<K, u32>,
    shut_down: bool,
}

impl<K: Hash + Eq + Clone> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> WorkQueue<K> {
    /// An empty queue with the default back-off (5 ms doubling to 1000 s).
    pub fn new() -> Self {
        Self::with_backoff(DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY)
    }

    /// An empty queue whose rate-limited back-off starts at `base` and doubles to `max`.
    pub fn with_backoff(base: Duration, max: Duration) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: BTreeMap::new(),
                    due: HashMap::new(),
                    next_seq: 0,
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                wake: Notify::new(),
                base_delay: base,
                max_delay: max,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `key` now (nothing happens if it is waiting already or the queue is
    /// shut down).
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.insert(key) {
            drop(state);
            self.inner.wake.notify_one();
        }
    }

    /// Queues `key` after `delay`. If it is already due earlier, that stays.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let due = Instant::now() + delay;
        let mut state = self.lock();
        if state.shut_down {
            return;
        }
        if let Some(&(current, seq)) = state.due.get(&key) {
            if current <= due {
                return;
            }
            state.delayed.remove(&(current, seq));
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.delayed.insert((due, seq), key.clone());
        state.due.insert(key, (due, seq));
        let earliest = state.delayed.first_key_value().map(|(&(t, _), _)| t) == Some(due);
        drop(state);
        if earliest {
            // A getter sleeping until a later time must look again.
            self.inner.wake.notify_waiters();
        }
    }

    /// Queues `key` after its back-off, and doubles the back-off: 5 ms, 10 ms, 20 ms,
    /// ... up to the maximum. For retries after a failure.
    pub fn add_rate_limited(&self, key: K) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let exponent = (*failures).min(63);
            *failures = failures.saturating_add(1);
            let factor = 1u64.checked_shl(exponent).unwrap_or(u64::MAX);
            let nanos = (self.inner.base_delay.as_nanos() as u64).saturating_mul(factor);
            Duration::from_nanos(nanos).min(self.inner.max_delay)
        };
        self.add_after(key, delay);
    }

    /// Clears the back-off of `key` (after a success); its next failure waits the
    /// base delay again.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// How many times `key` was added rate-limited since it was last forgotten.
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, waiting for one; `None` once the queue is shut down.
    /// The caller owns the key until it calls [`done`](Self::done) with it.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            let next_due = {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if state.promote_due(Instant::now()) {
                    // More than one key may have become ready: wake other getters too.
                    self.inner.wake.notify_waiters();
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    return Some(key);
                }
                // Registered before the lock is released, so no wake-up is missed.
                notified.as_mut().enable();
                state.delayed.first_key_value().map(|(&(t, _), _)| t)
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Ends the processing of `key`. If it was added while in flight, it is queued
    /// again now.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) && !state.shut_down {
            state.queue.push_back(key.clone());
            drop(state);
            self.inner.wake.notify_one();
        }
    }

    /// Stops the queue: adds are ignored, and every `get` (waiting or to come)
    /// returns `None`. Keys in flight may still be marked `done`.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        state.queue.clear();
        state.dirty.clear();
        state.delayed.clear();
        state.due.clear();
        drop(state);
        self.inner.wake.notify_waiters();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }

    /// How many keys are ready to be handed out (delayed ones that are due included).
    pub fn len(&self) -> usize {
        let mut state = self.lock();
        state.promote_due(Instant::now());
        state.queue.len()
    }

    /// Whether no key is ready to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys wait for their delay.
    pub fn delayed_len(&self) -> usize {
        self.lock().delayed.len()
    }
}

impl<K: Hash + Eq + Clone> State<K> {
    /// Marks `key` to be handed out; `true` if it went into the ready queue.
    fn insert(&mut self, key: K) -> bool {
        if self.shut_down || self.dirty.contains(&key) {
            return false;
        }
        self.dirty.insert(key.clone());
        if self.processing.contains(&key) {
            // Handed out again by `done`.
            return false;
        }
        self.queue.push_back(key);
        true
    }

    /// Moves delayed keys that are due into the ready queue; `true` if any went.
    fn promote_due(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.due.remove(&key);
            any |= self.insert(key);
        }
        any
    }
}
