//! One pod on this node: a worker task that makes the pod's containers run as its spec
//! says, and reports how they are doing.
//!
//! The worker is level-triggered: it holds the newest version of the pod from the API
//! and drives toward it — start what should run, restart by `restartPolicy` with
//! back-off, stop everything when the pod is deleted (within its grace period), then
//! remove the object. Each app container has a task of its own that runs it, waits for
//! it, and decides about restarts; the worker gathers their states into the pod status.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use skiff_api::core::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod,
};
use skiff_client::{Api, DeleteParams, Patch};
use skiff_runtime::{ContainerSpec, ExitStatus, PodNetwork, Workload, WorkloadKind};
use tokio::sync::{mpsc, watch};

use crate::logs::{FileSink, log_path};
use crate::probe::{self, Probes, Target};
use crate::{AbortOnDrop, NodeContext};

/// Handle of a pod's worker. Dropping it aborts the worker (and with it every container).
pub struct PodWorker {
    desired: watch::Sender<Option<Arc<Pod>>>,
    pub uid: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PodWorker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl PodWorker {
    /// Starts the worker of `pod`, which has the address `ip` (if the node has a pod range).
    pub fn spawn(ctx: Arc<NodeContext>, pod: Arc<Pod>, ip: Option<Ipv4Addr>) -> PodWorker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (desired, updates) = watch::channel(Some(pod));
        let task = tokio::spawn(run(ctx, updates, ip));
        PodWorker {
            desired,
            uid,
            task: Some(task),
        }
    }

    /// Hands the worker a newer version of its pod.
    pub fn update(&self, pod: Arc<Pod>) {
        self.desired.send_replace(Some(pod));
    }

    /// Tells the worker its pod is gone from the API, and waits while it stops
    /// everything.
    pub async fn remove(mut self) {
        self.desired.send_replace(None);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Whether the worker has finished.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// What a container task tells the worker.
struct Report {
    index: usize,
    status: ContainerStatus,
}

/// Sent to a container task to stop it, with the grace period it gets.
type StopSignal = watch::Receiver<Option<Duration>>;

async fn run(
    ctx: Arc<NodeContext>,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
    ip: Option<Ipv4Addr>,
) {
    let Some(pod) = updates.borrow_and_update().clone() else {
        return;
    };
    let mut worker = Worker::new(ctx, pod, ip);
    worker.run(&mut updates).await;
}

struct Worker {
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    dir: PathBuf,
    init_statuses: Vec<ContainerStatus>,
    statuses: Vec<ContainerStatus>,
    start_time: String,
    /// The pod's address.
    ip: Option<Ipv4Addr>,
    /// What was last written, to write only changes.
    written: Option<serde_json::Value>,
}

impl Worker {
    fn new(ctx: Arc<NodeContext>, pod: Arc<Pod>, ip: Option<Ipv4Addr>) -> Worker {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = ctx.config.data_dir.join("pods").join(&uid);
        // A node agent that restarts picks its pods up where their statuses say.
        let previous =
            |name: &str, list: &[ContainerStatus]| list.iter().find(|s| s.name == name).cloned();
        let initial = |c: &Container, list: &[ContainerStatus]| {
            let mut status = previous(&c.name, list).unwrap_or_else(|| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            });
            if status.state.running.is_some() || status.state.terminated.is_some() {
                // It ran under an earlier agent: this start counts as a restart.
                status.last_state = std::mem::take(&mut status.state);
                status.restart_count += 1;
            }
            status.state = waiting("ContainerCreating", None);
            status.ready = false;
            status.started = Some(false);
            status
        };
        let init_statuses = pod
            .spec
            .init_containers
            .iter()
            .map(|c| initial(c, &pod.status.init_container_statuses))
            .collect();
        let statuses = pod
            .spec
            .containers
            .iter()
            .map(|c| initial(c, &pod.status.container_statuses))
            .collect();
        let start_time = pod.status.start_time.clone().unwrap_or_else(now);
        Worker {
            ctx,
            pod,
            dir,
            init_statuses,
            statuses,
            start_time,
            ip,
            written: None,
        }
    }

    /// The pod as its containers see it: with its address in the status (for the downward
    /// API's `status.podIP`) even before that status is written.
    fn with_ip(&self) -> Arc<Pod> {
        match self.ip {
            Some(ip) if self.pod.status.pod_ip.is_none() => {
                let mut pod = (*self.pod).clone();
                pod.status.pod_ip = Some(ip.to_string());
                Arc::new(pod)
            }
            _ => self.pod.clone(),
        }
    }

    fn restart_policy(&self) -> &str {
        self.pod.spec.restart_policy.as_deref().unwrap_or("Always")
    }

    async fn run(&mut self, updates: &mut watch::Receiver<Option<Arc<Pod>>>) {
        let finished = matches!(
            self.pod.status.phase.as_deref(),
            Some("Succeeded" | "Failed")
        );
        if !finished {
            let network = self.attach();
            let _host_ports = match self.ip {
                Some(ip) if network.is_some() => {
                    crate::nodeports::open_host_ports(&self.ctx, &self.pod, ip)
                }
                _ => Vec::new(),
            };
            self.run_containers(updates, network).await;
            if let Some(ip) = self.ip {
                self.ctx.outside.remove_pod(IpAddr::V4(ip));
            }
        }
        // Finished or stopped: wait for the deletion that removes the object.
        loop {
            let pod = updates.borrow_and_update().clone();
            match pod {
                None => break,
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    self.pod = pod;
                    self.finish_deletion().await;
                    break;
                }
                Some(pod) => self.pod = pod,
            }
            if updates.changed().await.is_err() {
                break;
            }
        }
        let _ = tokio::fs::remove_dir_all(self.dir.join("volumes")).await;
    }

    /// Runs init containers, then the app containers until they are done or the pod
    /// is deleted.
    /// Attaches the pod to the node's pod network at its address: its containers share
    /// that address, a loopback and a port space. `None` when the pod has no address.
    fn attach(&self) -> Option<PodNetwork> {
        let ip = self.ip?;
        match self.ctx.network.attach(IpAddr::V4(ip)) {
            Ok(network) => {
                let deny_egress = self
                    .pod
                    .metadata
                    .annotations
                    .get(crate::network::DENY_EGRESS_ANNOTATION)
                    .is_some_and(|v| v == "true");
                self.ctx.outside.add_pod(
                    IpAddr::V4(ip),
                    crate::network::PodInfo {
                        namespace: self.pod.metadata.namespace().to_string(),
                        deny_egress,
                    },
                );
                Some(network)
            }
            Err(error) => {
                tracing::error!(pod = %self.pod.metadata.name(), %error, "attaching the pod to the pod network failed");
                None
            }
        }
    }

    async fn run_containers(
        &mut self,
        updates: &mut watch::Receiver<Option<Arc<Pod>>>,
        network: Option<PodNetwork>,
    ) {
        let mut sources = SourceChanges::new(&self.ctx, &self.pod).await;
        // A missing ConfigMap or Secret may yet be created: try again when one of the
        // pod's sources changes (or after a while, for API errors), until deleted.
        let sandbox = loop {
            match crate::volumes::prepare(&self.ctx, &self.pod, &self.dir).await {
                Ok(volumes) => {
                    break Arc::new(Sandbox {
                        volumes,
                        network: network.clone(),
                    });
                }
                Err(error) => {
                    for status in &mut self.statuses {
                        status.state =
                            waiting("CreateContainerConfigError", Some(error.to_string()));
                    }
                    self.write_status().await;
                }
            }
            tokio::select! {
                () = sources.next() => {}
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
                deleted = wait_deleted(updates) => {
                    self.pod = deleted.unwrap_or_else(|| self.pod.clone());
                    return;
                }
            }
        };
        let (stop_tx, stop_rx) = watch::channel(None);
        let (report_tx, mut reports) = mpsc::channel::<Report>(64);

        // Init containers, one after the other; each must succeed before the next.
        for index in 0..self.pod.spec.init_containers.len() {
            let container = self.pod.spec.init_containers[index].clone();
            let status = self.init_statuses[index].clone();
            let task = tokio::spawn(run_container(
                self.ctx.clone(),
                self.with_ip(),
                self.dir.clone(),
                sandbox.clone(),
                container,
                status,
                index,
                true,
                stop_rx.clone(),
                report_tx.clone(),
            ));
            let mut task = AbortOnDrop(task);
            loop {
                tokio::select! {
                    report = reports.recv() => {
                        if let Some(report) = report {
                            self.init_statuses[report.index] = report.status;
                            self.write_status().await;
                        }
                    }
                    _ = &mut task.0 => {
                        while let Ok(report) = reports.try_recv() {
                            self.init_statuses[report.index] = report.status;
                        }
                        self.write_status().await;
                        break;
                    }
                    deleted = wait_deleted(updates) => {
                        self.pod = deleted.unwrap_or_else(|| self.pod.clone());
                        stop_tx.send_replace(Some(self.grace()));
                        let _ = (&mut task.0).await;
                        while let Ok(report) = reports.try_recv() {
                            self.init_statuses[report.index] = report.status;
                        }
                        self.write_status().await;
                        return;
                    }
                }
            }
            let succeeded = self.init_statuses[index]
                .state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0);
            if !succeeded {
                // The init container failed for good (restartPolicy Never): the pod fails.
                self.write_status().await;
                return;
            }
        }

        let mut tasks = Vec::new();
        for (index, container) in self.pod.spec.containers.iter().enumerate() {
            tasks.push(AbortOnDrop(tokio::spawn(run_container(
                self.ctx.clone(),
                self.with_ip(),
                self.dir.clone(),
                sandbox.clone(),
                container.clone(),
                self.statuses[index].clone(),
                index,
                false,
                stop_rx.clone(),
                report_tx.clone(),
            ))));
        }
        drop(report_tx);
        let mut stopping = false;
        loop {
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => {
                        self.statuses[report.index] = report.status;
                        // Write the batch of reports that arrived together at once.
                        while let Ok(report) = reports.try_recv() {
                            self.statuses[report.index] = report.status;
                        }
                        self.write_status().await;
                    }
                    // Every container task has ended: the pod is done.
                    None => break,
                },
                deleted = wait_deleted(updates), if !stopping => {
                    stopping = true;
                    self.pod = deleted.unwrap_or_else(|| self.pod.clone());
                    stop_tx.send_replace(Some(self.grace()));
                }
                () = sources.next(), if !stopping => {
                    if let Err(error) = crate::volumes::refresh(&self.ctx, &self.pod, &self.dir).await {
                        // The files keep their last content, as the kubelet leaves them.
                        tracing::warn!(pod = %self.pod.metadata.name(), %error, "updating projected volumes failed");
                    }
                }
            }
        }
        drop(tasks);
    }

    /// The grace period containers get: the deletion's, else the spec's.
    fn grace(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(self.pod.spec.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }

    /// Everything is stopped: remove the pod object, as the kubelet does once its
    /// containers are gone.
    async fn finish_deletion(&self) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.pod.metadata.namespace());
        let mut params = DeleteParams::immediate();
        params.preconditions = Some(skiff_api::meta::Preconditions {
            uid: self.pod.metadata.uid.clone(),
            resource_version: None,
        });
        match api.delete(self.pod.metadata.name(), &params).await {
            Ok(_) => tracing::info!(pod = %self.pod.metadata.name(), "pod stopped and removed"),
            Err(error) if error.is_not_found() || error.is_conflict() => {}
            Err(error) => {
                tracing::warn!(%error, pod = %self.pod.metadata.name(), "removing a stopped pod failed")
            }
        }
    }

    /// Writes the pod status if it changed since the last write.
    async fn write_status(&mut self) {
        let status = self.status();
        if self.written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.pod.metadata.namespace());
        match api
            .patch_status(
                self.pod.metadata.name(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => self.written = Some(status),
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                tracing::warn!(%error, pod = %self.pod.metadata.name(), "writing pod status failed")
            }
        }
    }

    /// The pod status as Kubernetes computes it from its containers.
    fn status(&self) -> serde_json::Value {
        let policy = self.restart_policy();
        let init_done = self.init_statuses.iter().all(|s| {
            s.state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0)
        });
        let init_failed = self.init_statuses.iter().any(|s| {
            s.state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code != 0)
        });
        let terminated: Vec<&ContainerStateTerminated> = self
            .statuses
            .iter()
            .filter_map(|s| s.state.terminated.as_ref())
            .collect();
        let all_terminated = terminated.len() == self.statuses.len();
        let phase = if init_failed && policy == "Never" {
            "Failed"
        } else if !init_done {
            "Pending"
        } else if all_terminated && policy != "Always" {
            if terminated.iter().all(|t| t.exit_code == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self.statuses.iter().any(|s| {
            s.state.running.is_some() || s.restart_count > 0 || s.state.terminated.is_some()
        }) {
            "Running"
        } else {
            "Pending"
        };
        let ready = phase == "Running" && self.statuses.iter().all(|s| s.ready);
        let transition = now();
        let condition = |type_: &str, ok: bool| {
            let previous = self.pod.condition(type_);
            let status = if ok { "True" } else { "False" };
            let since = previous
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| transition.clone());
            json!({ "type": type_, "status": status, "lastTransitionTime": since })
        };
        let conditions = vec![
            condition("PodScheduled", true),
            condition("Initialized", init_done),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ];
        let pod_ip = self.ip.map(|ip| ip.to_string());
        json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.ctx.config.address,
            "hostIPs": [{ "ip": self.ctx.config.address }],
            "podIP": pod_ip,
            "podIPs": pod_ip.iter().map(|ip| json!({ "ip": ip })).collect::<Vec<_>>(),
            "startTime": self.start_time,
            "initContainerStatuses": self.init_statuses,
            "containerStatuses": self.statuses,
            "qosClass": skiff_api::core::qos_class(&self.pod.spec),
        })
    }
}

/// Changes of the ConfigMaps and Secrets a pod's volumes project.
struct SourceChanges {
    subscriptions: Vec<crate::sources::Subscription>,
}

impl SourceChanges {
    /// Follows the pod's sources; returns once each is listed (or after a while, if the
    /// API does not answer), so that no change after this moment is missed.
    async fn new(ctx: &NodeContext, pod: &Pod) -> SourceChanges {
        let namespace = pod.metadata.namespace();
        let subscriptions: Vec<_> = crate::volumes::sources(pod)
            .into_iter()
            .map(|(kind, name)| ctx.sources.subscribe(kind, namespace, &name))
            .collect();
        let listed = futures::future::join_all(subscriptions.iter().map(|s| s.listed()));
        if tokio::time::timeout(Duration::from_secs(10), listed)
            .await
            .is_err()
        {
            tracing::warn!(pod = %pod.metadata.name(), "the pod's ConfigMaps and Secrets are not watched yet; going on");
        }
        SourceChanges { subscriptions }
    }

    /// Resolves when one of the sources changes (appears, changes or goes); never if
    /// the pod projects none.
    async fn next(&mut self) {
        if self.subscriptions.is_empty() {
            return std::future::pending().await;
        }
        let changes = self.subscriptions.iter_mut().map(|s| Box::pin(s.changed()));
        futures::future::select_all(changes).await;
    }
}

/// Resolves when the pod is deleted (marked or gone); the newest version if marked.
async fn wait_deleted(updates: &mut watch::Receiver<Option<Arc<Pod>>>) -> Option<Arc<Pod>> {
    loop {
        {
            let current = updates.borrow_and_update();
            match current.as_ref() {
                None => return None,
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => return Some(pod.clone()),
                Some(_) => {}
            }
        }
        if updates.changed().await.is_err() {
            return None;
        }
    }
}

/// Runs one container until it is done for good or stopped: start, wait, decide about a
/// restart, back off, again. Reports every state change.
#[allow(clippy::too_many_arguments)]
async fn run_container(
    ctx: Arc<NodeContext>,
    pod: Arc<Pod>,
    dir: PathBuf,
    sandbox: Arc<Sandbox>,
    container: Container,
    mut status: ContainerStatus,
    index: usize,
    init: bool,
    mut stop: StopSignal,
    reports: mpsc::Sender<Report>,
) {
    let policy = pod
        .spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut backoff = ctx.config.restart_backoff;
    let report = |status: &ContainerStatus| {
        let _ = reports.try_send(Report {
            index,
            status: status.clone(),
        });
    };
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let workload = match crate::images::load(&ctx, &container).await {
            Ok(workload) => workload,
            Err(error) => {
                let reason = if status
                    .state
                    .waiting
                    .as_ref()
                    .and_then(|w| w.reason.as_deref())
                    == Some("ErrImagePull")
                {
                    "ImagePullBackOff"
                } else {
                    "ErrImagePull"
                };
                status.state = waiting(reason, Some(error.to_string()));
                report(&status);
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(ctx.config.max_restart_backoff);
                continue;
            }
        };
        status.image_id = workload.digest().to_string();
        let spec = match container_spec(
            &ctx,
            &pod,
            &dir,
            &sandbox,
            &container,
            status.restart_count as u32,
        )
        .await
        {
            Ok(spec) => spec,
            Err(message) => {
                status.state = waiting("CreateContainerConfigError", Some(message));
                report(&status);
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let Some(Run {
            exit,
            started_at,
            ran_for,
            killed_by_probe,
        }) = run_once(
            &ctx,
            &pod,
            sandbox.network.as_ref(),
            &container,
            &workload,
            spec,
            &mut status,
            &mut stop,
            &report,
        )
        .await
        else {
            return;
        };
        let (reason, message) = match &exit {
            ExitStatus::Exited(0) => ("Completed", None),
            ExitStatus::Exited(_) => ("Error", None),
            ExitStatus::Trapped(trap) => ("Error", Some(format!("wasm trap: {trap}"))),
            ExitStatus::OutOfMemory => (
                "OOMKilled",
                Some("the container exceeded its memory limit".to_string()),
            ),
            ExitStatus::Killed => ("Error", Some("killed".to_string())),
        };
        let message = killed_by_probe.or(message);
        status.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code(),
                reason: Some(reason.into()),
                message,
                started_at: Some(started_at),
                finished_at: Some(now()),
                ..Default::default()
            }),
            ..Default::default()
        };
        status.ready = false;
        status.started = Some(false);
        let restart = match policy.as_str() {
            "Always" => !init || !exit.success(),
            "OnFailure" => !exit.success(),
            _ => false,
        };
        if !restart || stop.borrow().is_some() {
            report(&status);
            return;
        }
        // Kubernetes' back-off: doubling up to the cap, reset after running long enough.
        if ran_for >= ctx.config.backoff_reset_after {
            backoff = ctx.config.restart_backoff;
        }
        status.last_state = std::mem::take(&mut status.state);
        status.state = waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {} restarting failed container={} pod={}",
                humantime::format_duration(backoff),
                container.name,
                pod.metadata.name()
            )),
        );
        report(&status);
        if sleep_or_stop(backoff, &mut stop).await {
            return;
        }
        backoff = (backoff * 2).min(ctx.config.max_restart_backoff);
        status.restart_count += 1;
    }
}

/// How one run of a container ended.
struct Run {
    exit: ExitStatus,
    started_at: String,
    ran_for: Duration,
    /// Why a probe had the container killed, if one did.
    killed_by_probe: Option<String>,
}

/// Starts the container once, serves it if it is a wasi:http service, probes it, and waits
/// for it to end (or stops it). `None` if it could not be started and the pod is stopping.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    ctx: &NodeContext,
    pod: &Pod,
    network: Option<&PodNetwork>,
    container: &Container,
    workload: &Workload,
    spec: ContainerSpec,
    status: &mut ContainerStatus,
    stop: &mut StopSignal,
    report: &impl Fn(&ContainerStatus),
) -> Option<Run> {
    let started_at = now();
    let started = Instant::now();
    let failed = |status: &mut ContainerStatus, message: String| {
        status.state = waiting("RunContainerError", Some(message.clone()));
        report(status);
        Run {
            exit: ExitStatus::Trapped(message),
            started_at: started_at.clone(),
            ran_for: started.elapsed(),
            killed_by_probe: None,
        }
    };
    let running = match ctx.runtime.start(workload, spec) {
        Ok(running) => Arc::new(running),
        Err(error) => return Some(failed(status, error.to_string())),
    };
    // Its CPU and memory, for the metrics API, while it runs.
    let _usage = ctx.stats.track(pod, &container.name, running.usage_meter());
    // A wasi:http service is served on its ports in the pod network, where Services,
    // other pods and its probes reach it like any guest listener.
    let _serving = if running.kind() == WorkloadKind::HttpService
        && let Some(network) = network
    {
        match serve_ports(network, container, running.clone()) {
            Ok(serving) => serving,
            Err(error) => {
                running.stop(Duration::ZERO).await;
                return Some(failed(status, error));
            }
        }
    } else {
        Vec::new()
    };
    let mut probes = Probes::start(
        container,
        Target {
            network: ctx.network.clone(),
            ip: network.map(PodNetwork::ip),
            from: ctx.pod_network_address(),
        },
    );
    status.state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(started_at.clone()),
        }),
        ..Default::default()
    };
    status.started = Some(false);
    status.ready = false;
    report(status);
    let mut is_started = false;
    let mut killed_by_probe = None;
    let exit = loop {
        tokio::select! {
            exit = running.wait() => break exit,
            grace = wait_stop(stop) => {
                // A WASI command has no signal to hear a stop request by: waiting out its
                // grace period would only delay the kill. An HTTP service gets the grace
                // period to finish the requests in flight.
                let grace = if running.kind() == WorkloadKind::HttpService { grace } else { Duration::ZERO };
                break running.stop(grace).await;
            }
            event = probes.next() => match event {
                probe::Event::Started => {
                    is_started = true;
                    status.started = Some(true);
                    report(status);
                }
                probe::Event::Ready(ready) => {
                    status.ready = ready && is_started;
                    report(status);
                }
                probe::Event::Kill { message, grace } => {
                    tracing::info!(pod = %pod.metadata.name(), container = %container.name, %message, "killing the container");
                    let grace = grace.unwrap_or_else(|| pod_grace(pod));
                    let grace = if running.kind() == WorkloadKind::HttpService { grace } else { Duration::ZERO };
                    killed_by_probe = Some(message);
                    // However it ends within its grace period, the container did not
                    // choose to: it counts as killed (137), a failure to restart from
                    // under Always and OnFailure, as in Kubernetes.
                    running.stop(grace).await;
                    break ExitStatus::Killed;
                }
            }
        }
    };
    Some(Run {
        exit,
        started_at,
        ran_for: started.elapsed(),
        killed_by_probe,
    })
}

/// Serves a wasi:http container on each of its TCP ports in the pod network (8080 when it
/// declares none, as `wasmtime serve`) until the returned guards are dropped.
fn serve_ports(
    network: &PodNetwork,
    container: &Container,
    running: Arc<skiff_runtime::Container>,
) -> Result<Vec<AbortOnDrop>, String> {
    let mut ports: Vec<u16> = container
        .ports
        .iter()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .map(|p| p.container_port as u16)
        .collect();
    if ports.is_empty() {
        ports.push(8080);
    }
    ports.dedup();
    let mut serving = Vec::new();
    for port in ports {
        let listener = network
            .listen(std::net::SocketAddr::from(([0, 0, 0, 0], port)))
            .map_err(|error| format!("serving the container on port {port}: {error}"))?;
        serving.push(AbortOnDrop(tokio::spawn(crate::serve::serve(
            running.clone(),
            listener,
        ))));
    }
    Ok(serving)
}

/// The pod's own grace period (`terminationGracePeriodSeconds`, default 30 s).
fn pod_grace(pod: &Pod) -> Duration {
    Duration::from_secs(
        pod.spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64,
    )
}

async fn wait_stop(stop: &mut StopSignal) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow_and_update() {
            return grace;
        }
        if stop.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

/// Sleeps for `duration` unless told to stop first; true if told to stop.
async fn sleep_or_stop(duration: Duration, stop: &mut StopSignal) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = wait_stop(stop) => true,
    }
}

/// The runtime's spec of one container run: argv, env (with the downward API and
/// ConfigMap/Secret references resolved), volumes, limits, its log file.
async fn container_spec(
    ctx: &NodeContext,
    pod: &Pod,
    dir: &std::path::Path,
    sandbox: &Sandbox,
    container: &Container,
    restart: u32,
) -> Result<ContainerSpec, String> {
    let sink = Arc::new(FileSink::new(
        log_path(dir, &container.name, restart),
        ctx.config.log_max_bytes,
        &ctx.logs,
    ));
    let mut spec = ContainerSpec::new(container.name.clone(), sink);
    spec.network = sandbox.network.clone();
    spec.args = container
        .command
        .iter()
        .chain(container.args.iter())
        .cloned()
        .collect();
    spec.env = crate::env::resolve(ctx, pod, container).await?;
    for mount in &container.volume_mounts {
        let host = sandbox
            .volumes
            .get(&mount.name)
            .ok_or_else(|| format!("volume {:?} is not defined", mount.name))?;
        spec.volumes.push(skiff_runtime::VolumeMount {
            host_path: host.path.clone(),
            guest_path: mount.mount_path.clone(),
            read_only: host.read_only || mount.read_only,
        });
    }
    spec.memory_limit_bytes = container
        .resources
        .limits
        .get("memory")
        .and_then(|q| q.to_bytes())
        .map(|b| b.max(0) as u64);
    spec.cpu_millis = container
        .resources
        .limits
        .get("cpu")
        .and_then(|q| q.to_millis())
        .map(|m| m.clamp(1, u32::MAX as i64) as u32);
    Ok(spec)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// What a pod's containers share: its volumes and its place in the pod network.
struct Sandbox {
    volumes: Arc<crate::volumes::Volumes>,
    network: Option<PodNetwork>,
}
