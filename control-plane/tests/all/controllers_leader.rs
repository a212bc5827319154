//! Leader election between candidates sharing one API server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use skiff_api::coordination::Lease;
use skiff_client::{Client, Patch};
use skiff_control_plane::controllers::{LeaderElectionConfig, LeaderElector};

use crate::controllers_support::{Cluster, Task, wait_for};

const LEASE: Duration = Duration::from_secs(1);

fn config(identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        namespace: "kube-system".into(),
        name: "skiff-controller-manager".into(),
        identity: identity.into(),
        lease_duration: LEASE,
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
    }
}

/// Who leads now: a count (must never pass 1) and the names.
#[derive(Default)]
struct Leaders {
    count: AtomicUsize,
    names: Mutex<Vec<String>>,
    max: AtomicUsize,
}

struct Leading(Arc<Leaders>, String);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.names.lock().unwrap().retain(|n| n != &self.1);
    }
}

fn candidate(client: &Client, identity: &str, leaders: &Arc<Leaders>) -> Task {
    let elector = LeaderElector::new(client.clone(), config(identity));
    let leaders = leaders.clone();
    let identity = identity.to_string();
    Task(tokio::spawn(async move {
        elector
            .run(|| {
                let leaders = leaders.clone();
                let identity = identity.clone();
                async move {
                    let now = leaders.count.fetch_add(1, Ordering::SeqCst) + 1;
                    leaders.max.fetch_max(now, Ordering::SeqCst);
                    leaders.names.lock().unwrap().push(identity.clone());
                    let _leading = Leading(leaders, identity);
                    std::future::pending::<()>().await;
                }
            })
            .await;
    }))
}

fn leader(leaders: &Leaders) -> Option<String> {
    leaders.names.lock().unwrap().first().cloned()
}

#[tokio::test]
async fn one_candidate_leads_and_another_takes_over_when_it_dies() {
    let cluster = Cluster::start().await;
    let leaders = Arc::new(Leaders::default());
    let mut a = Some(candidate(&cluster.client, "a", &leaders));
    let mut b = Some(candidate(&cluster.client, "b", &leaders));

    let first = wait_for("a leader", Duration::from_secs(10), || async {
        leader(&leaders)
    })
    .await;
    // Both keep trying for a while: still one leader.
    let until = tokio::time::Instant::now() + LEASE * 2;
    while tokio::time::Instant::now() < until {
        assert_eq!(leaders.count.load(Ordering::SeqCst), 1);
        assert_eq!(leader(&leaders).as_deref(), Some(first.as_str()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill the leader: its task (and the future it led) is dropped at once.
    let killed = tokio::time::Instant::now();
    let mut dead = if first == "a" { a.take() } else { b.take() }.unwrap();
    dead.0.abort();
    let _ = (&mut dead.0).await;
    assert_eq!(
        leaders.count.load(Ordering::SeqCst),
        0,
        "the killed leader's work is dropped"
    );
    let second = wait_for(
        "the other to take over",
        Duration::from_secs(10),
        || async {
            assert!(
                leaders.count.load(Ordering::SeqCst) <= 1,
                "two leaders at once"
            );
            leader(&leaders)
        },
    )
    .await;
    let took = killed.elapsed();
    assert_ne!(second, first);
    assert!(
        took <= LEASE + Duration::from_millis(500),
        "took over after {took:?}, lease is {LEASE:?}"
    );
    assert_eq!(
        leaders.max.load(Ordering::SeqCst),
        1,
        "never two leaders at once"
    );

    let lease: Lease = cluster
        .api::<Lease>("kube-system")
        .get("skiff-controller-manager")
        .await
        .unwrap();
    assert_eq!(lease.spec.holder_identity.as_deref(), Some(second.as_str()));
    assert_eq!(lease.spec.lease_transitions, Some(1));
    assert_eq!(lease.spec.lease_duration_seconds, Some(1));
    assert!(lease.spec.renew_time.is_some() && lease.spec.acquire_time.is_some());
    drop((a, b));
}

#[tokio::test]
async fn a_leader_that_loses_the_lease_stops_leading() {
    let cluster = Cluster::start().await;
    let leaders = Arc::new(Leaders::default());
    let _a = candidate(&cluster.client, "a", &leaders);
    wait_for("a to lead", Duration::from_secs(10), || async {
        leader(&leaders)
    })
    .await;

    // Someone else takes the lease (as a partitioned leader would find it on return).
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    cluster
        .api::<Lease>("kube-system")
        .patch(
            "skiff-controller-manager",
            &Patch::Merge(json!({ "spec": {
                "holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 30,
            } })),
        )
        .await
        .unwrap();
    wait_for("a to stop leading", Duration::from_secs(5), || async {
        (leaders.count.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_controller_manager_runs_only_while_leading() {
    use skiff_api::apps::ReplicaSet;
    use skiff_control_plane::controllers::ControllerConfig;

    let cluster = Cluster::start().await;
    let manager = |identity: &str| {
        cluster.start_controllers_with(ControllerConfig {
            leader_election: Some(config(identity)),
            ..crate::controllers_support::test_config()
        })
    };
    let mut one = Some(manager("one"));
    let mut two = Some(manager("two"));
    let leases = cluster.api::<Lease>("kube-system");
    let holder = wait_for("a manager to lead", Duration::from_secs(10), || async {
        leases
            .get_opt("skiff-controller-manager")
            .await
            .unwrap()
            .and_then(|l| l.spec.holder_identity)
    })
    .await;

    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "managed", "namespace": "default" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "managed" } },
            "template": {
                "metadata": { "labels": { "app": "managed" } },
                "spec": { "containers": [{ "name": "main", "image": "hello.wasm" }] },
            },
        },
    }))
    .unwrap();
    let rs_api = cluster.api::<ReplicaSet>("default");
    rs_api.create(&rs).await.unwrap();
    wait_for("2 pods", Duration::from_secs(10), || async {
        (cluster.pods("default", "app=managed").await.len() == 2).then_some(())
    })
    .await;

    // The leader dies; the other manager takes over and keeps the set.
    let mut dead = if holder == "one" {
        one.take()
    } else {
        two.take()
    }
    .unwrap();
    dead.0.abort();
    let _ = (&mut dead.0).await;
    rs_api
        .patch(
            "managed",
            &Patch::Merge(json!({ "spec": { "replicas": 4 } })),
        )
        .await
        .unwrap();
    wait_for(
        "4 pods under the new leader",
        Duration::from_secs(10),
        || async { (cluster.pods("default", "app=managed").await.len() == 4).then_some(()) },
    )
    .await;
    let lease = leases.get("skiff-controller-manager").await.unwrap();
    assert_ne!(lease.spec.holder_identity, Some(holder));
    drop((one, two));
}
