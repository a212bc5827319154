//! Per-client limits: how fast one user may call, how many of its calls may be in flight,
//! and how many watches it may hold open. Over a limit: 429 `TooManyRequests` with
//! `Retry-After`, as Kubernetes answers.
//!
//! Kubernetes protects its API server with API Priority and Fairness: concurrency shares
//! per priority level, queues per flow (user), and an `exempt` level for the
//! `system:masters` group. skiff keeps the idea and drops the machinery: a token bucket
//! and an in-flight count per user, a watch count per user, and exempt groups. The
//! defaults are generous (they throttle no existing test or benchmark, including
//! `skiff bench api`'s 64 clients and 100 watchers on one token) and exempt the
//! control plane's own callers: the scheduler and controllers call with the admin
//! credential (`system:masters`), and nodes (`system:nodes`) write the statuses of
//! thousands of pods in bursts when they start them.
//!
//! Users are counted by name. Only authenticated requests reach this layer, so the
//! table holds at most one entry per known credential. Requests without a valid
//! credential are counted apart, by the client's address ([`Throttle::admit_failed_auth`]),
//! so a flood of them is answered 429 instead of costing every other client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::time::Instant;

use super::ApiServer;
use super::auth::User;
use super::error::ApiError;
use super::request::Params;

/// The limits on each user; part of [`super::ApiServerConfig`].
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Requests a second one user may make, sustained; 0 turns the rate limit off.
    /// Default 10,000: a brake on a runaway client, above what any benchmark reaches.
    pub requests_per_second: f64,
    /// Requests one user may make at once after being idle (the bucket's size).
    /// Default 20,000.
    pub burst: u32,
    /// Requests of one user being handled at once, watches not counted (they are long
    /// running, as in Kubernetes' `--max-requests-inflight`); 0 means no limit.
    /// Default 400, Kubernetes' server-wide default, here per user.
    pub max_in_flight: usize,
    /// Watches one user may hold open at once; 0 means no limit. Default 1,000: every
    /// controller of a cluster needs a few dozen; each watch holds a store watcher.
    pub max_watches: usize,
    /// Users in any of these groups are never limited. Default `system:masters` (the
    /// admin credential, which the scheduler and controllers use) and `system:nodes`.
    pub exempt_groups: Vec<String>,
    /// Requests without a valid credential one client address may make a second,
    /// sustained, before getting 429 instead of 401; 0 turns this off. Default 50, with
    /// bursts of 5 times as many.
    pub failed_auth_per_second: f64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            requests_per_second: 10_000.0,
            burst: 20_000,
            max_in_flight: 400,
            max_watches: 1_000,
            exempt_groups: vec!["system:masters".into(), "system:nodes".into()],
            failed_auth_per_second: 50.0,
        }
    }
}

/// What each user has used; shared with the guards that give it back.
#[derive(Default)]
pub struct Throttle {
    users: Arc<Mutex<HashMap<String, Usage>>>,
    /// Requests without a valid credential, by client address: a token bucket each.
    failed_auth: Mutex<HashMap<std::net::IpAddr, (f64, Instant)>>,
}

/// Addresses [`Throttle::failed_auth`] remembers before it forgets those that are idle.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

struct Usage {
    /// Tokens in the bucket as of `updated`.
    tokens: f64,
    updated: Instant,
    in_flight: usize,
    watches: usize,
}

/// Which count a [`Slot`] holds.
#[derive(Clone, Copy)]
enum Kind {
    InFlight,
    Watch,
}

/// One in-flight request or open watch; given back when dropped.
struct Slot {
    users: Arc<Mutex<HashMap<String, Usage>>>,
    user: String,
    kind: Kind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(usage) = users.get_mut(&self.user) {
            match self.kind {
                Kind::InFlight => usage.in_flight = usage.in_flight.saturating_sub(1),
                Kind::Watch => usage.watches = usage.watches.saturating_sub(1),
            }
        }
    }
}

impl Throttle {
    /// Counts one request without a valid credential from `address`: `Err` (429) once
    /// the address is over [`ClientLimits::failed_auth_per_second`].
    pub fn admit_failed_auth(
        &self,
        limits: &ClientLimits,
        address: std::net::IpAddr,
    ) -> Result<(), ApiError> {
        let rate = limits.failed_auth_per_second;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = rate * 5.0;
        let now = Instant::now();
        let mut buckets = self.failed_auth.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&address) {
            // Forget the addresses whose buckets have filled again: they are idle.
            buckets.retain(|_, (tokens, updated)| {
                *tokens + now.saturating_duration_since(*updated).as_secs_f64() * rate < burst
            });
        }
        let (tokens, updated) = buckets.entry(address).or_insert((burst, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*updated).as_secs_f64() * rate).min(burst);
        *updated = now;
        if *tokens < 1.0 {
            return Err(ApiError::too_many_requests(
                format!(
                    "too many requests without valid credentials from {address}: the limit is {rate} a second"
                ),
                Duration::from_secs_f64((1.0 - *tokens) / rate),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// Takes a token and a slot for one request of `user`, or says why not.
    fn admit(&self, limits: &ClientLimits, user: &str, watch: bool) -> Result<Slot, ApiError> {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let usage = users.entry(user.to_string()).or_insert_with(|| Usage {
            tokens: f64::from(limits.burst.max(1)),
            updated: now,
            in_flight: 0,
            watches: 0,
        });
        if limits.requests_per_second > 0.0 {
            let elapsed = now.saturating_duration_since(usage.updated).as_secs_f64();
            usage.tokens = (usage.tokens + elapsed * limits.requests_per_second)
                .min(f64::from(limits.burst.max(1)));
            usage.updated = now;
            if usage.tokens < 1.0 {
                let wait = (1.0 - usage.tokens) / limits.requests_per_second;
                return Err(ApiError::too_many_requests(
                    format!(
                        "too many requests from user {user:?}: the limit is {} a second, with bursts of {}",
                        limits.requests_per_second, limits.burst
                    ),
                    Duration::from_secs_f64(wait),
                ));
            }
        }
        let (count, limit, kind, what) = if watch {
            (
                &mut usage.watches,
                limits.max_watches,
                Kind::Watch,
                "watches open",
            )
        } else {
            (
                &mut usage.in_flight,
                limits.max_in_flight,
                Kind::InFlight,
                "requests in flight",
            )
        };
        if limit > 0 && *count >= limit {
            return Err(ApiError::too_many_requests(
                format!("too many {what} for user {user:?}: the limit is {limit}"),
                Duration::from_secs(1),
            ));
        }
        *count += 1;
        if limits.requests_per_second > 0.0 {
            usage.tokens -= 1.0;
        }
        Ok(Slot {
            users: self.users.clone(),
            user: user.to_string(),
            kind,
        })
    }
}

/// The middleware, behind authentication: limits each user as [`ClientLimits`] says.
/// Unauthenticated requests never get here; public paths carry no user and pass.
pub async fn limit(State(server): State<Arc<ApiServer>>, request: Request, next: Next) -> Response {
    let limits = &server.config.client_limits;
    let Some(user) = request.extensions().get::<User>() else {
        return next.run(request).await;
    };
    if user
        .groups
        .iter()
        .any(|group| limits.exempt_groups.contains(group))
    {
        return next.run(request).await;
    }
    // The same test the handlers use, so what is counted as a watch is one.
    let watch = request.method() == Method::GET
        && Params::parse(request.uri().query()).is_ok_and(|params| params.is_watch());
    let slot = match server.throttle.admit(limits, &user.name, watch) {
        Ok(slot) => slot,
        Err(error) => return error.into_response(),
    };
    let response = next.run(request).await;
    if watch {
        // A watch is open for as long as its body streams.
        response.map(|body| {
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _open = &slot;
                chunk
            }))
        })
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, in_flight: usize, watches: usize) -> ClientLimits {
        ClientLimits {
            requests_per_second: rate,
            burst,
            max_in_flight: in_flight,
            max_watches: watches,
            exempt_groups: vec![],
            failed_auth_per_second: 0.0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_authentication_is_limited_per_address() {
        let throttle = Throttle::default();
        let limits = ClientLimits {
            failed_auth_per_second: 2.0,
            ..ClientLimits::default()
        };
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            throttle.admit_failed_auth(&limits, a).unwrap();
        }
        let refused = throttle.admit_failed_auth(&limits, a).unwrap_err();
        assert_eq!(refused.code, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.message.contains("192.0.2.1"), "{}", refused.message);
        throttle
            .admit_failed_auth(&limits, b)
            .expect("another address has its own bucket");
        tokio::time::advance(Duration::from_millis(500)).await;
        throttle
            .admit_failed_auth(&limits, a)
            .expect("refilled at the rate");
        assert!(throttle.admit_failed_auth(&limits, a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_at_the_rate_and_says_when() {
        let throttle = Throttle::default();
        let limits = limits(2.0, 3, 0, 0);
        for _ in 0..3 {
            throttle.admit(&limits, "alice", false).unwrap();
        }
        let refused = throttle.admit(&limits, "alice", false).err().unwrap();
        assert_eq!(refused.code.as_u16(), 429);
        assert_eq!(refused.reason, "TooManyRequests");
        // Half a second for one token at 2 a second: Retry-After rounds up to 1.
        assert_eq!(
            refused.status().details.unwrap().retry_after_seconds,
            Some(1)
        );
        // Another user has a bucket of its own.
        throttle.admit(&limits, "bob", false).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        throttle.admit(&limits, "alice", false).unwrap();
        assert!(throttle.admit(&limits, "alice", false).is_err());
        // Idle for long, the bucket holds no more than the burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            throttle.admit(&limits, "alice", false).unwrap();
        }
        assert!(throttle.admit(&limits, "alice", false).is_err());
    }

    #[tokio::test]
    async fn slots_are_given_back_when_dropped() {
        let throttle = Throttle::default();
        let limits = limits(0.0, 0, 2, 1);
        let a = throttle.admit(&limits, "alice", false).unwrap();
        let _b = throttle.admit(&limits, "alice", false).unwrap();
        let refused = throttle.admit(&limits, "alice", false).err().unwrap();
        assert!(refused.message.contains("requests in flight"), "{refused}");
        let watch = throttle.admit(&limits, "alice", true).unwrap();
        assert!(throttle.admit(&limits, "alice", true).is_err());
        drop(a);
        drop(watch);
        throttle.admit(&limits, "alice", false).unwrap();
        throttle.admit(&limits, "alice", true).unwrap();
    }
}
