//! [`run`]: workers that take keys from a [`WorkQueue`] and reconcile them.
//!
//! The shape of kube-runtime's controller, small: the queue guarantees one reconcile
//! per key at a time; a success forgets the key's back-off and follows the returned
//! [`Action`]; a failure goes to the error policy (to log or count) and the key is
//! retried after its back-off. Feed the queue from [`Informer`](crate::Informer)
//! changes; what to do is read from the informers' stores (level-triggered).

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use crate::workqueue::WorkQueue;

/// What to do with a key after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the key again after `delay`, even if nothing changes (to check on
    /// something that changes by itself, such as time or another system).
    pub fn requeue_after(delay: Duration) -> Self {
        Action {
            requeue_after: Some(delay),
        }
    }

    /// Reconcile the key again only when it is added to the queue again (a change).
    pub fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    /// The requeue delay, if any.
    pub fn requeue_delay(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// Runs `concurrency` workers (at least one, on the current task) over `queue` until
/// it is shut down and the reconciles in flight end.
///
/// For each key: `reconcile(key)`; on `Ok(action)` the key's back-off is forgotten and
/// `action` followed; on `Err(e)`, `error_policy(&key, &e)` is called and the key is
/// requeued with [`WorkQueue::add_rate_limited`].
pub async fn run<K, E, R, Fut, P>(
    queue: WorkQueue<K>,
    concurrency: usize,
    reconcile: R,
    error_policy: P,
) where
    K: Hash + Eq + Clone,
    R: Fn(K) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    P: Fn(&K, &E),
{
    let worker = || async {
        while let Some(key) = queue.get().await {
            match reconcile(key.clone()).await {
                Ok(action) => {
                    queue.forget(&key);
                    if let Some(delay) = action.requeue_after {
                        queue.add_after(key.clone(), delay);
                    }
                }
                Err(error) => {
                    error_policy(&key, &error);
                    queue.add_rate_limited(key.clone());
                }
            }
            queue.done(&key);
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
}
