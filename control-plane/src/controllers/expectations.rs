//! [`Expectations`]: what a controller has just created or deleted and its informer has
//! not seen yet, so it does not act twice on a stale cache (Kubernetes'
//! `UIDTrackingControllerExpectations`).
//!
//! A controller that creates three pods and reconciles again before its informer saw
//! them would count too few pods and create three more. So after each create it
//! records the new pod's key, after each delete the deleted pod's key; while any of
//! them is unseen it does not add or remove pods. An expectation is met when the
//! informer shows the created pod (or any change of that key) and no longer shows the
//! deleted pod as live. Expectations expire after a timeout (5 minutes in Kubernetes),
//! so a lost event never blocks a controller for good.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use skiff_api::core::Pod;
use skiff_client::{ObjectRef, Store};
use tokio::time::Instant;

/// Pending creates and deletes per controller key (a ReplicaSet). Cheap to share
/// behind an `Arc`; never held across `.await`.
#[derive(Debug)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectRef, Pending>>,
    timeout: Duration,
}

#[derive(Debug)]
struct Pending {
    /// Pods created and not yet seen by the informer.
    adds: HashSet<ObjectRef>,
    /// Pods deleted and still seen live by the informer.
    deletes: HashSet<ObjectRef>,
    /// When the last expectation was recorded: the timeout counts from here.
    since: Instant,
}

impl Expectations {
    /// No expectations; each expires `timeout` after it was recorded.
    pub fn new(timeout: Duration) -> Self {
        Expectations {
            pending: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(
        pending: &'a mut HashMap<ObjectRef, Pending>,
        owner: &ObjectRef,
    ) -> &'a mut Pending {
        let entry = pending.entry(owner.clone()).or_insert_with(|| Pending {
            adds: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        entry.since = Instant::now();
        entry
    }

    /// `owner` created `pod`; expect the informer to show it.
    pub fn expect_creation(&self, owner: &ObjectRef, pod: ObjectRef) {
        Self::entry(&mut self.lock(), owner).adds.insert(pod);
    }

    /// `owner` is about to delete `pod`; expect the informer to stop showing it live.
    pub fn expect_deletion(&self, owner: &ObjectRef, pod: ObjectRef) {
        Self::entry(&mut self.lock(), owner).deletes.insert(pod);
    }

    /// A delete of `pod` failed: it will not go, do not wait for it.
    pub fn deletion_failed(&self, owner: &ObjectRef, pod: &ObjectRef) {
        if let Some(entry) = self.lock().get_mut(owner) {
            entry.deletes.remove(pod);
        }
    }

    /// The informer reported a change of `pod` (created, changed or gone): a create of
    /// it has been seen.
    pub fn observed(&self, pod: &ObjectRef) {
        for entry in self.lock().values_mut() {
            entry.adds.remove(pod);
        }
    }

    /// Whether `owner` deleted `pod` and the informer still shows it live.
    pub fn is_expected_deletion(&self, owner: &ObjectRef, pod: &ObjectRef) -> bool {
        self.lock()
            .get(owner)
            .is_some_and(|e| e.deletes.contains(pod))
    }

    /// Forgets everything about `owner` (it was deleted).
    pub fn forget(&self, owner: &ObjectRef) {
        self.lock().remove(owner);
    }

    /// How many creates and deletes of `owner` are still unseen.
    pub fn pending(&self, owner: &ObjectRef) -> (usize, usize) {
        self.lock()
            .get(owner)
            .map(|e| (e.adds.len(), e.deletes.len()))
            .unwrap_or((0, 0))
    }

    /// Whether `owner` may act on what `pods` shows: everything it created is seen,
    /// everything it deleted is gone or marked deleted, or its expectations expired.
    pub fn satisfied(&self, owner: &ObjectRef, pods: &Store<Pod>) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(owner) else {
            return true;
        };
        entry.adds.retain(|pod| pods.get(pod).is_none());
        entry.deletes.retain(|pod| {
            pods.get(pod)
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
        if entry.adds.is_empty() && entry.deletes.is_empty() {
            pending.remove(owner);
            return true;
        }
        if entry.since.elapsed() >= self.timeout {
            tracing::warn!(
                %owner,
                adds = entry.adds.len(),
                deletes = entry.deletes.len(),
                "expectations expired; acting on the cache as it is"
            );
            pending.remove(owner);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::ObjectMeta;
    use skiff_client::watcher::Event;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn key(name: &str) -> ObjectRef {
        ObjectRef::new(name).within("default")
    }

    #[tokio::test(start_paused = true)]
    async fn creations_and_deletions_are_met_by_the_cache_or_expire() {
        let (store, mut writer) = skiff_client::reflector::store::<Pod>();
        writer.apply(&Event::Restarted(vec![pod("old")]));
        let rs = key("rs");
        let e = Expectations::new(Duration::from_secs(300));
        assert!(e.satisfied(&rs, &store));

        e.expect_creation(&rs, key("a"));
        e.expect_deletion(&rs, key("old"));
        assert!(!e.satisfied(&rs, &store), "nothing seen yet");
        writer.apply(&Event::Applied(pod("a")));
        assert!(!e.satisfied(&rs, &store), "the deletion is not seen yet");
        assert_eq!(e.pending(&rs), (0, 1));
        writer.apply(&Event::Deleted(pod("old")));
        assert!(e.satisfied(&rs, &store));

        // A pod created and gone before the controller looked: seen through `observed`.
        e.expect_creation(&rs, key("b"));
        e.observed(&key("b"));
        assert!(e.satisfied(&rs, &store));

        // A create never seen expires.
        e.expect_creation(&rs, key("never"));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(!e.satisfied(&rs, &store));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied(&rs, &store));
    }
}
