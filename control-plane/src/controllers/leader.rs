//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection`: so that of several controller managers one acts at a time.
//!
//! A candidate takes the lease when nobody holds it or when its record has not changed
//! for `leaseDurationSeconds` *as this candidate measured it* (its own clock, never a
//! comparison of clocks across machines). The holder renews every `retry_period`
//! with compare-and-swap on the resourceVersion, so of two racing writers one fails.
//! A holder that could not renew for `renew_deadline` (shorter than the lease
//! duration) stops its work before anyone else may take the lease: two candidates
//! never lead at once.

use std::future::Future;
use std::time::{Duration, SystemTime};

use skiff_api::coordination::{Lease, LeaseSpec};
use skiff_api::meta::ObjectMeta;
use skiff_client::{Api, Client};
use tokio::time::Instant;

/// Where the lease is and how it is held. `Default`: `kube-system/skiff-controller-manager`,
/// 15 s lease, 10 s renew deadline, 2 s retry period (client-go's), an identity made
/// of the host name and a random suffix.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// The lease's namespace. Default `kube-system`.
    pub namespace: String,
    /// The lease's name. Default `skiff-controller-manager`.
    pub name: String,
    /// Who this candidate is: unique among candidates.
    pub identity: String,
    /// How long a lease lasts unrenewed before others may take it. Default 15 s.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading. Must be
    /// shorter than `lease_duration`. Default 10 s.
    pub renew_deadline: Duration,
    /// How often candidates try to take the lease and the leader renews it. Default 2 s.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "skiff".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "skiff-controller-manager".into(),
            identity: format!("{host}_{}", &suffix[..8]),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt to take or renew the lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// This candidate holds the lease (took or renewed it).
    Held,
    /// Another holds it and its lease has not run out.
    HeldByOther,
    /// The call failed or raced another writer; try again.
    Failed,
}

/// A candidate for leadership. See the module documentation.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The lease record last seen and when (by this process's clock) it was first
    /// seen as it is.
    observed: tokio::sync::Mutex<Option<(LeaseSpec, Instant)>>,
}

impl LeaderElector {
    /// A candidate with `config` talking through `client`.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: tokio::sync::Mutex::new(None),
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Waits to lead, then runs `leading()` while leading; if leadership is lost the
    /// future is dropped and the candidate waits to lead again. Returns when a
    /// `leading()` future ends by itself. Dropping this future stops everything (the
    /// lease then runs out and another candidate takes over).
    pub async fn run<F, Fut>(&self, mut leading: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let acquired_at = self.acquire().await;
            tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
            tokio::select! {
                _ = leading() => return,
                _ = self.keep_renewing(acquired_at) => {
                    tracing::warn!(identity = %self.config.identity, "lost leadership; stopped leading");
                }
            }
        }
    }

    /// Tries every retry period until the lease is ours; returns when the winning
    /// attempt started.
    async fn acquire(&self) -> Instant {
        loop {
            let started = Instant::now();
            if self.try_acquire_or_renew().await == Attempt::Held {
                return started;
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews every retry period; returns when leadership is lost: another holds the
    /// lease, or no renewal succeeded within the renew deadline.
    async fn keep_renewing(&self, mut last_renewed: Instant) {
        loop {
            let deadline = last_renewed + self.config.renew_deadline;
            let next = (Instant::now() + self.config.retry_period).min(deadline);
            tokio::time::sleep_until(next).await;
            if Instant::now() >= deadline {
                return;
            }
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Attempt::Held) => last_renewed = started,
                Ok(Attempt::HeldByOther) => return,
                Ok(Attempt::Failed) | Err(_) => {}
            }
        }
    }

    async fn try_acquire_or_renew(&self) -> Attempt {
        let config = &self.config;
        let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        // Whole seconds on the wire, rounded up so others never wait less than we assume.
        let duration_seconds = config.lease_duration.as_secs_f64().ceil().max(1.0) as i32;
        let mut observed = self.observed.lock().await;
        let current = match self.api.get_opt(&config.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::debug!(%error, "reading the leader lease failed");
                return Attempt::Failed;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                },
                ..Lease::default()
            };
            return match self.api.create(&lease).await {
                Ok(created) => {
                    *observed = Some((created.spec, Instant::now()));
                    Attempt::Held
                }
                Err(error) => {
                    tracing::debug!(%error, "creating the leader lease failed");
                    Attempt::Failed
                }
            };
        };
        // The record changed since last seen: its lease runs from now, by our clock.
        if observed
            .as_ref()
            .is_none_or(|(spec, _)| *spec != lease.spec)
        {
            *observed = Some((lease.spec.clone(), Instant::now()));
        }
        let holder = lease.spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == config.identity;
        if !holder.is_empty() && !mine {
            let held_for = lease
                .spec
                .lease_duration_seconds
                .map_or(config.lease_duration, |s| {
                    Duration::from_secs(s.max(0) as u64)
                });
            let seen_at = observed.as_ref().map_or_else(Instant::now, |(_, at)| *at);
            if seen_at + held_for > Instant::now() {
                return Attempt::HeldByOther;
            }
        }
        let spec = &mut lease.spec;
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(!holder.is_empty()));
        }
        spec.holder_identity = Some(config.identity.clone());
        spec.lease_duration_seconds = Some(duration_seconds);
        spec.renew_time = Some(now);
        // Compare-and-swap: the resourceVersion read above must still be current.
        match self.api.replace(&config.name, &lease).await {
            Ok(updated) => {
                *observed = Some((updated.spec, Instant::now()));
                Attempt::Held
            }
            Err(error) => {
                tracing::debug!(%error, "updating the leader lease failed");
                Attempt::Failed
            }
        }
    }
}
