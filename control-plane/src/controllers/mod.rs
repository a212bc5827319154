//! The controllers: control loops that are API clients, as in Kubernetes.
//!
//! Each controller reads what is from informer caches, compares it with what is
//! wanted and acts through the API server (level-triggered: running it twice does no
//! harm). Informer changes feed a [`WorkQueue`]; [`skiff_client::controller::run`]
//! hands each key to one reconcile at a time and retries failures with back-off; a
//! periodic resync covers what a watch missed.
//!
//! [`run`] is the controller manager: leader election, then — while leading — every
//! controller over one shared set of informers.

mod claim;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skiff_api::Resource;
use skiff_api::apps::{Deployment, ReplicaSet};
use skiff_api::batch::Job;
use skiff_api::core::{Endpoints, Namespace, Pod, Service};
use skiff_api::meta::ObjectReference;
use skiff_client::{Changes, Client, Informer, ObjectRef, WatcherParams, WorkQueue};

pub use self::deployment::{RollbackError, rollback_template};
pub use self::events::EventRecorder;
pub use self::leader::{LeaderElectionConfig, LeaderElector};

/// What went wrong in a reconcile. The key is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}")]
    Api {
        /// What was being done: `creating a pod for default/web`.
        action: String,
        #[source]
        source: skiff_client::Error,
    },
    /// The object asks for something that cannot be done (a bad percentage, ...).
    #[error("invalid spec of {object}: {message}")]
    InvalidSpec {
        /// `namespace/name` of the object.
        object: String,
        /// What is wrong.
        message: String,
    },
}

/// The result of reconciles.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a client error with what was being done.
pub(crate) fn api_error(action: impl Into<String>) -> impl FnOnce(skiff_client::Error) -> Error {
    let action = action.into();
    move |source| Error::Api { action, source }
}

/// Settings of the controller manager. `Default` gives Kubernetes-like values.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Leader election among controller managers; `None` runs the controllers at once,
    /// without a lease (a single control plane, or tests). Default: enabled, with
    /// [`LeaderElectionConfig::default`].
    pub leader_election: Option<LeaderElectionConfig>,
    /// How often every object is reconciled again even without a change. Default 5 min.
    pub resync_period: Duration,
    /// Concurrent reconciles per controller (never two of one key). Default 2.
    pub workers: usize,
    /// How long a ReplicaSet or Job waits for its informer to see its own creates and
    /// deletes before it acts again regardless. Default 5 minutes, as Kubernetes.
    pub expectations_timeout: Duration,
    /// How often a terminating namespace is looked at again while objects remain in
    /// it. Default 2 s.
    pub namespace_recheck: Duration,
    /// How often a deployment is looked at while it waits for time to pass (min ready
    /// seconds, progress deadline), at most. Default 10 s.
    pub max_requeue: Duration,
    /// The `source.component` of events. Default `skiff-controller-manager`.
    pub component: String,
    /// When nodes count as lost and their pods move.
    pub node_lifecycle: nodelifecycle::NodeLifecycleConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            leader_election: Some(LeaderElectionConfig::default()),
            resync_period: Duration::from_secs(5 * 60),
            workers: 2,
            expectations_timeout: Duration::from_secs(5 * 60),
            namespace_recheck: Duration::from_secs(2),
            max_requeue: Duration::from_secs(10),
            component: "skiff-controller-manager".into(),
            node_lifecycle: Default::default(),
        }
    }
}

/// The informers the controllers share: one watch per kind for the whole manager.
pub struct Informers {
    /// Every pod: the ReplicaSet, Deployment, endpoints and garbage collectors watch them.
    pub pods: Informer<Pod>,
    /// Every ReplicaSet.
    pub replicasets: Informer<ReplicaSet>,
    /// Every Deployment.
    pub deployments: Informer<Deployment>,
    /// Every Job: the Job controller and the garbage collector.
    pub jobs: Informer<Job>,
    /// Every Service.
    pub services: Informer<Service>,
    /// Every Endpoints object.
    pub endpoints: Informer<Endpoints>,
    /// Every Namespace.
    pub namespaces: Informer<Namespace>,
}

impl Informers {
    /// Starts one informer per kind, across all namespaces (call within a tokio
    /// runtime). They stop when this is dropped.
    pub fn new(client: &Client) -> Self {
        fn all<K: Resource>(client: &Client) -> Informer<K> {
            Informer::new(
                skiff_client::Api::all(client.clone()),
                WatcherParams::default(),
            )
        }
        Informers {
            pods: all(client),
            replicasets: all(client),
            deployments: all(client),
            jobs: all(client),
            services: all(client),
            endpoints: all(client),
            namespaces: all(client),
        }
    }

    /// Waits until every informer has its first complete list.
    pub async fn wait_until_ready(&self) {
        self.pods.store().wait_until_ready().await;
        self.replicasets.store().wait_until_ready().await;
        self.deployments.store().wait_until_ready().await;
        self.jobs.store().wait_until_ready().await;
        self.services.store().wait_until_ready().await;
        self.endpoints.store().wait_until_ready().await;
        self.namespaces.store().wait_until_ready().await;
    }
}

/// The controller manager: takes part in leader election (when configured) and, while
/// leading, runs every controller. Runs until its future is dropped, which stops
/// everything it started (informers, workers, lease renewal).
pub async fn run(client: Client, config: ControllerConfig) {
    match config.leader_election.clone() {
        Some(election) => {
            let elector = LeaderElector::new(client.clone(), election);
            elector
                .run(|| run_controllers(client.clone(), config.clone()))
                .await;
        }
        None => run_controllers(client, config).await,
    }
}

/// Every controller over one set of informers, without leader election. Runs until
/// dropped.
pub async fn run_controllers(client: Client, config: ControllerConfig) {
    let informers = Informers::new(&client);
    informers.wait_until_ready().await;
    tracing::info!("controllers started");
    let recorder = EventRecorder::new(client.clone(), &config.component);
    let replicasets = Arc::new(replicaset::ReplicaSetController::new(
        client.clone(),
        &informers,
        recorder.clone(),
        config.expectations_timeout,
    ));
    let deployments = Arc::new(deployment::DeploymentController::new(
        client.clone(),
        &informers,
        recorder.clone(),
        config.max_requeue,
    ));
    let jobs = Arc::new(job::JobController::new(
        client.clone(),
        &informers,
        recorder.clone(),
        config.expectations_timeout,
    ));
    let gc = Arc::new(gc::GarbageCollector::new(client.clone(), &informers));
    let namespaces = Arc::new(namespace::NamespaceController::new(
        client.clone(),
        &informers,
        config.namespace_recheck,
    ));
    let endpoints = Arc::new(endpoints::EndpointsController::new(
        client.clone(),
        &informers,
    ));
    let node_lifecycle = nodelifecycle::NodeLifecycleController::new(
        client.clone(),
        config.node_lifecycle,
        recorder.clone(),
    );
    futures::join!(
        node_lifecycle.run(informers.pods.store()),
        replicasets.run(&informers, &config),
        deployments.run(&informers, &config),
        jobs.run(&informers, &config),
        gc.run(&informers, &config),
        namespaces.run(&informers, &config),
        endpoints.run(&informers, &config),
    );
}

/// Adds the keys `map` makes of every change of `changes` to `queue`, until the
/// informer goes.
pub(crate) async fn feed<K, Q>(
    mut changes: Changes<K>,
    queue: WorkQueue<Q>,
    map: impl Fn(ObjectRef) -> Vec<Q>,
) where
    Q: std::hash::Hash + Eq + Clone,
{
    while let Some(key) = changes.next().await {
        for q in map(key) {
            queue.add(q);
        }
    }
}

/// Adds `keys()` to `queue` every `period`: the resync that covers what a watch missed.
pub(crate) async fn resync<Q>(queue: WorkQueue<Q>, period: Duration, keys: impl Fn() -> Vec<Q>)
where
    Q: std::hash::Hash + Eq + Clone,
{
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for key in keys() {
            queue.add(key);
        }
    }
}

/// Runs `workers` reconcilers over `queue` next to `feeders`; ends when dropped.
pub(crate) async fn drive<Q, R, Fut>(
    name: &'static str,
    queue: WorkQueue<Q>,
    workers: usize,
    feeders: impl Future<Output = ()>,
    reconcile: R,
) where
    Q: std::hash::Hash + Eq + Clone + std::fmt::Debug,
    R: Fn(Q) -> Fut,
    Fut: Future<Output = Result<skiff_client::Action>>,
{
    let work = skiff_client::controller::run(queue.clone(), workers, reconcile, |key, error| {
        // Another writer went first: the retry reads the new version. Routine among
        // controllers, nodes and users writing the same objects, so not a warning.
        let routine = matches!(error, Error::Api { source, .. } if source.is_conflict());
        if routine {
            tracing::debug!(controller = name, ?key, error = %error_chain(error), "reconcile met a newer version, retrying");
        } else {
            tracing::warn!(controller = name, ?key, error = %error_chain(error), "reconcile failed, retrying");
        }
    });
    tokio::select! {
        _ = work => {}
        _ = feeders => {}
    }
    queue.shutdown();
}

pub(crate) use skiff_client::error_chain;

/// Now, as Kubernetes writes times: RFC 3339 in seconds, UTC.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// An RFC 3339 time (with or without fractions).
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// A reference to `object` for events and endpoints.
pub(crate) fn object_reference<K: Resource>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version()),
        kind: Some(K::KIND.to_string()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// The key of `name` in `namespace`.
pub(crate) fn key(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(name).within(namespace)
}
