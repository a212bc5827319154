//! The Job controller (`batch/v1`): runs pods of a Job's template until `completions`
//! of them have succeeded, or the Job fails.
//!
//! For one Job, level-triggered as Kubernetes' job controller: claim its pods (owner
//! reference and selector; matching orphans are adopted), count them — active (neither finished nor being deleted),
//! succeeded, failed — and take one [`Step`]:
//!
//! - more failed pods than `backoffLimit` (default 6) or, under `restartPolicy:
//!   OnFailure`, as many container restarts as it; or `activeDeadlineSeconds` past
//!   `startTime`: the Job fails (conditions `FailureTarget` and `Failed`, reason
//!   `BackoffLimitExceeded` or `DeadlineExceeded`) and its active pods are deleted and
//!   counted as failed;
//! - `completions` pods succeeded (without `completions`: one did and none is left
//!   running): conditions `SuccessCriteriaMet` and `Complete`, and `completionTime`;
//! - `suspend`: the active pods are deleted and `Suspended` is true; resuming sets
//!   `startTime` again, so the deadline counts only time spent running;
//! - otherwise: create or delete pods so that `min(parallelism, completions -
//!   succeeded)` are active.
//!
//! A finished Job runs nothing more, and `ttlSecondsAfterFinished` after it finished it
//! is deleted with background propagation (the garbage collector then takes its pods).
//! [`Expectations`] keep a lagging pod cache from making it create or delete twice.
//!
//! Counts are read from the pods, which are kept when they finish: a pod counts once
//! however often the Job is reconciled. A finished pod deleted while its Job still runs
//! is no longer counted, and its work is done again (as in Kubernetes before it tracked
//! pods with finalizers, 1.26). A pod being deleted counts neither as active nor as
//! finished: its end is the deleter's doing, not its own. Failed pods are replaced at
//! once, without Kubernetes' growing delay between replacements; `backoffLimit` still
//! bounds how many run. `completionMode: Indexed` is not supported: such a Job fails at
//! once with reason `UnsupportedCompletionMode`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use skiff_api::Resource;
use skiff_api::batch::{CONTROLLER_UID_LABEL, JOB_NAME_LABEL, Job, JobCondition, JobSpec};
use skiff_api::core::Pod;
use skiff_api::meta::{ObjectMeta, OwnerReference, Preconditions};
use skiff_client::{
    Action, Api, Client, DeleteParams, ObjectRef, PropagationPolicy, Store, WorkQueue,
};

use super::claim;
use super::events::EventRecorder;
use super::expectations::Expectations;
use super::replicaset::{BURST_REPLICAS, deletion_rank, is_active};
use super::{ControllerConfig, Informers, Result, api_error, drive, feed, parse_time, resync};

/// The label carrying the Job's uid on its pods, as Kubernetes before 1.27 named it.
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The label carrying the Job's name on its pods, as Kubernetes before 1.27 named it.
const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// `backoffLimit` when the Job gives none (the API server defaults it too).
const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// Added to waits for a time (deadline, TTL), so the reconcile lands after it, not on it.
const TIME_SLACK: Duration = Duration::from_millis(100);
/// How soon to look again when a status write lost to a newer version of the Job.
const STALE_RETRY: Duration = Duration::from_millis(200);

/// The Job controller. Share it behind an `Arc`.
pub struct JobController {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: EventRecorder,
    /// The last Job controlling each pod seen, to wake it when the pod goes (the store
    /// no longer has a deleted pod to ask).
    owners: Mutex<HashMap<ObjectRef, ObjectRef>>,
}

/// What a Job that has not finished needs next: decided by [`next_step`] from its spec
/// and its pods, carried out by [`JobController::reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// It has failed for good: its active pods are stopped.
    Fail {
        reason: &'static str,
        message: &'static str,
    },
    /// Enough pods succeeded: any pod still active is stopped.
    Complete,
    /// Suspended: no pod runs.
    Suspend,
    /// Keep this many pods active.
    Run { want: usize },
}

/// What the pods of a Job say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Neither finished nor being deleted.
    active: usize,
    /// Active and ready.
    ready: usize,
    /// Succeeded, not being deleted.
    succeeded: i32,
    /// Failed, not being deleted.
    failed: i32,
    /// Container restarts of pods still running (what `OnFailure` spends).
    restarts: i32,
}

impl Counts {
    fn of(pods: &[Arc<Pod>]) -> Counts {
        let mut counts = Counts::default();
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match pod.status.phase.as_deref() {
                Some("Succeeded") => counts.succeeded += 1,
                Some("Failed") => counts.failed += 1,
                // Pending, Running or Unknown.
                _ => {
                    counts.active += 1;
                    counts.ready += usize::from(pod.is_ready());
                    counts.restarts += pod
                        .status
                        .init_container_statuses
                        .iter()
                        .chain(&pod.status.container_statuses)
                        .map(|c| c.restart_count)
                        .sum::<i32>();
                }
            }
        }
        counts
    }
}

/// When the Job's `activeDeadlineSeconds` runs out, if it has one and has started.
fn deadline(spec: &JobSpec, start: Option<SystemTime>) -> Option<SystemTime> {
    let seconds = spec.active_deadline_seconds?;
    Some(start? + Duration::from_secs(seconds.max(0) as u64))
}

/// The step of a Job that has not finished, started at `start` (unset while
/// suspended), whose pods give `counts`. As Kubernetes: failure before completion,
/// the backoff limit before the deadline, and no deadline while suspended.
fn next_step(spec: &JobSpec, start: Option<SystemTime>, counts: Counts, now: SystemTime) -> Step {
    if spec.completion_mode.as_deref() == Some("Indexed") {
        return Step::Fail {
            reason: "UnsupportedCompletionMode",
            message: "completionMode Indexed is not supported by skiff; use NonIndexed",
        };
    }
    let limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0);
    let on_failure = spec.template.spec.restart_policy.as_deref() == Some("OnFailure");
    // Under OnFailure the node restarts a failed container in place: its restarts are
    // the failures (Kubernetes' `pastBackoffLimitOnFailure`).
    let restarts_exceed = on_failure
        && if limit == 0 {
            counts.restarts > 0
        } else {
            counts.restarts >= limit
        };
    if counts.failed > limit || restarts_exceed {
        return Step::Fail {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
        };
    }
    let suspended = spec.suspend == Some(true);
    if !suspended && deadline(spec, start).is_some_and(|at| at <= now) {
        return Step::Fail {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline",
        };
    }
    match spec.completions {
        Some(completions) if counts.succeeded >= completions => return Step::Complete,
        // A work-queue Job: one success says the work is done; it is complete once
        // the others have stopped.
        None if counts.succeeded > 0 && counts.active == 0 => return Step::Complete,
        _ => {}
    }
    if suspended {
        return Step::Suspend;
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let want = match spec.completions {
        // Never more than the completions still missing.
        Some(completions) => ((completions - counts.succeeded).max(0) as usize).min(parallelism),
        // A work-queue Job that saw a success starts nothing new.
        None if counts.succeeded > 0 => counts.active,
        None => parallelism,
    };
    Step::Run { want }
}

/// Sets condition `type_` to `status` as Kubernetes' `ensureJobConditionStatus`: a
/// missing condition is added only when true. Returns whether anything changed.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => false,
        Some(c) => {
            c.status = status.to_string();
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
            c.last_probe_time = Some(now.to_string());
            c.last_transition_time = Some(now.to_string());
            true
        }
        None if status == "True" => {
            conditions.push(JobCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                last_probe_time: Some(now.to_string()),
                last_transition_time: Some(now.to_string()),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
            });
            true
        }
        None => false,
    }
}

/// When the Job finished: its `Complete` or `Failed` condition's transition, else its
/// `completionTime`.
fn finish_time(job: &Job) -> Option<SystemTime> {
    job.status
        .conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_deref())
        .or(job.status.completion_time.as_deref())
        .and_then(parse_time)
}

/// When a finished Job is to be deleted, if it has a TTL.
fn expiry(job: &Job) -> Option<SystemTime> {
    let ttl = job.spec.ttl_seconds_after_finished?;
    Some(finish_time(job)? + Duration::from_secs(ttl.max(0) as u64))
}

/// An event to record once the status that tells the same is written.
struct Note {
    warning: bool,
    reason: &'static str,
    message: String,
}

impl JobController {
    /// A controller over the shared informers' caches. `expectations_timeout`: how long
    /// it waits for its informer to show its own creates and deletes before it acts
    /// regardless.
    pub fn new(
        client: Client,
        informers: &Informers,
        recorder: EventRecorder,
        expectations_timeout: Duration,
    ) -> Self {
        Self::with_stores(
            client,
            informers.jobs.store(),
            informers.pods.store(),
            recorder,
            expectations_timeout,
        )
    }

    /// A controller over the given caches (tests feed them by hand to make them lag).
    pub fn with_stores(
        client: Client,
        jobs: Store<Job>,
        pods: Store<Pod>,
        recorder: EventRecorder,
        expectations_timeout: Duration,
    ) -> Self {
        JobController {
            client,
            jobs,
            pods,
            expectations: Expectations::new(expectations_timeout),
            recorder,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The expectations of this controller (for tests and diagnostics).
    pub fn expectations(&self) -> &Expectations {
        &self.expectations
    }

    /// Runs the controller until dropped: Job and pod changes feed the queue.
    pub async fn run(self: &Arc<Self>, informers: &Informers, config: &ControllerConfig) {
        let queue = WorkQueue::new();
        let jobs = self.jobs.clone();
        let q = queue.clone();
        let feeders = async move {
            let queue = q;
            futures::join!(
                feed(informers.jobs.subscribe(), queue.clone(), |k| vec![k]),
                feed(informers.pods.subscribe(), queue.clone(), |k| self
                    .pod_changed(&k)),
                resync(queue.clone(), config.resync_period, || jobs.keys()),
            );
        };
        let this = self.clone();
        drive("job", queue, config.workers, feeders, move |key| {
            let this = this.clone();
            async move { this.reconcile(&key).await }
        })
        .await;
    }

    /// The Jobs to reconcile after a change of the pod `pod_key`: its controlling Job
    /// (now and before), or, for an orphan, every Job of its namespace selecting it.
    pub fn pod_changed(&self, pod_key: &ObjectRef) -> Vec<ObjectRef> {
        self.expectations.observed(pod_key);
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake: Vec<ObjectRef> = owners.remove(pod_key).into_iter().collect();
        if let Some(pod) = self.pods.get(pod_key) {
            let (controller, candidates) = claim::owners_of_pod(&pod, &self.jobs, selects);
            if let Some(job) = controller {
                owners.insert(pod_key.clone(), job.clone());
                wake.push(job);
            }
            wake.extend(candidates);
        }
        wake.dedup();
        wake
    }

    /// Brings the pods of one Job to what its spec asks, and its status to its pods.
    pub async fn reconcile(&self, job_key: &ObjectRef) -> Result<Action> {
        let Some(job) = self.jobs.get(job_key) else {
            self.expectations.forget(job_key);
            return Ok(Action::await_change());
        };
        if job.metadata.deletion_timestamp.is_some() {
            // Its pods go with it, through the garbage collector.
            return Ok(Action::await_change());
        }
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), job.metadata.namespace());
        // Checked before claiming, so a pod seen after this check waits for the next round.
        let satisfied = self.expectations.satisfied(job_key, &self.pods);
        let pods = self.claim_pods(&job, &pods_api).await?;
        let active: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
        let now = SystemTime::now();

        if job.is_finished() {
            // A finished Job runs nothing: not a pod created from a lagging cache, nor
            // one whose delete failed when it finished.
            if satisfied && !active.is_empty() {
                self.delete_pods(&job, job_key, &active, &pods_api).await?;
            }
            return self.delete_after_ttl(&job, now).await;
        }

        let now_text = humantime::format_rfc3339_seconds(now).to_string();
        let mut status = job.status.clone();
        let mut notes = Vec::new();
        let suspended = job.spec.suspend == Some(true);
        if suspended {
            if set_condition(
                &mut status.conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                &now_text,
            ) {
                notes.push(Note::normal("Suspended", "Job suspended"));
            }
        } else {
            if set_condition(
                &mut status.conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &now_text,
            ) {
                notes.push(Note::normal("Resumed", "Job resumed"));
                // The deadline counts time spent running, as for a Job created suspended.
                status.start_time = Some(now_text.clone());
            }
            status.start_time.get_or_insert_with(|| now_text.clone());
        }
        let start = status.start_time.as_deref().and_then(parse_time);
        let counts = Counts::of(&pods);
        status.succeeded = counts.succeeded;
        status.failed = counts.failed;

        let step = next_step(&job.spec, start, counts, now);
        if let Step::Run { want } = step {
            let mut failure = None;
            let (mut created, mut deleted) = (0, 0);
            if satisfied {
                match self.manage(&job, job_key, &active, want, &pods_api).await {
                    Ok(done) => (created, deleted) = done,
                    Err((done, error)) => {
                        (created, deleted) = done;
                        failure = Some(error);
                    }
                }
            }
            status.active = (active.len() + created - deleted) as i32;
            status.ready = Some(counts.ready.min(active.len() - deleted) as i32);
            if !self.write_status(&job, status).await? {
                return Ok(Action::requeue_after(STALE_RETRY));
            }
            self.record(&job, notes).await;
            if let Some(error) = failure {
                return Err(error);
            }
            // Look again when the deadline passes, even if no pod changes by then.
            let wait = deadline(&job.spec, start)
                .and_then(|at| at.duration_since(now).ok())
                .map(|wait| wait + TIME_SLACK);
            return Ok(wait.map_or_else(Action::await_change, Action::requeue_after));
        }

        if !satisfied {
            // Finish (or stop) only on a cache that shows every pod the Job made, so
            // the counts it freezes are those of all its pods. Its pods' coming wakes it.
            return Ok(Action::await_change());
        }
        status.active = 0;
        status.ready = Some(0);
        match step {
            Step::Fail { reason, message } => {
                // Its active pods are stopped now: they count as failed, as in Kubernetes.
                status.failed += active.len() as i32;
                set_condition(
                    &mut status.conditions,
                    "FailureTarget",
                    "True",
                    reason,
                    message,
                    &now_text,
                );
                set_condition(
                    &mut status.conditions,
                    "Failed",
                    "True",
                    reason,
                    message,
                    &now_text,
                );
                notes.push(Note {
                    warning: true,
                    reason,
                    message: message.to_string(),
                });
            }
            Step::Complete => {
                let message = "Reached expected number of succeeded pods";
                for type_ in ["SuccessCriteriaMet", "Complete"] {
                    set_condition(
                        &mut status.conditions,
                        type_,
                        "True",
                        "CompletionsReached",
                        message,
                        &now_text,
                    );
                }
                status.completion_time = Some(now_text.clone());
                notes.push(Note::normal("Completed", "Job completed"));
            }
            Step::Suspend | Step::Run { .. } => {}
        }
        // The status first: once it says the Job is finished, a delete that fails below
        // is retried by the finished Job's reconcile.
        if !self.write_status(&job, status).await? {
            return Ok(Action::requeue_after(STALE_RETRY));
        }
        self.record(&job, notes).await;
        if !active.is_empty() {
            self.delete_pods(&job, job_key, &active, &pods_api).await?;
        }
        // The finished Job comes back through the informer, which starts its TTL.
        Ok(Action::await_change())
    }

    async fn record(&self, job: &Job, notes: Vec<Note>) {
        for note in notes {
            if note.warning {
                self.recorder.warning(job, note.reason, &note.message).await;
            } else {
                self.recorder.normal(job, note.reason, &note.message).await;
            }
        }
    }

    /// Deletes a finished Job once its `ttlSecondsAfterFinished` has passed; until then
    /// asks to be woken when it does.
    async fn delete_after_ttl(&self, job: &Job, now: SystemTime) -> Result<Action> {
        let Some(due) = expiry(job) else {
            return Ok(Action::await_change());
        };
        if let Ok(wait) = due.duration_since(now)
            && !wait.is_zero()
        {
            return Ok(Action::requeue_after(wait + TIME_SLACK));
        }
        // Read it fresh, as Kubernetes' TTL controller does: its TTL may have changed
        // since the cache saw it.
        let name = job.metadata.name();
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace());
        let Some(fresh) = api.get_opt(name).await.map_err(api_error(format!(
            "reading job {name} before its TTL delete"
        )))?
        else {
            return Ok(Action::await_change());
        };
        let expired = fresh.metadata.uid == job.metadata.uid
            && fresh.metadata.deletion_timestamp.is_none()
            && fresh.is_finished()
            && expiry(&fresh).is_some_and(|due| due <= now);
        if !expired {
            // The informer brings the newer version, which says when to look again.
            return Ok(Action::await_change());
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                tracing::info!(job = %ObjectRef::from_obj(job), "deleted a finished job whose TTL passed");
                Ok(Action::await_change())
            }
            Err(error) if error.is_not_found() => Ok(Action::await_change()),
            // Changed since the read: look again with the newer version.
            Err(error) if error.is_conflict() => Ok(Action::requeue_after(STALE_RETRY)),
            Err(error) => Err(api_error(format!("deleting job {name} after its TTL"))(
                error,
            )),
        }
    }

    /// The pods this Job owns, after adopting orphans its selector matches. A pod it
    /// controls whose labels no longer match is left alone — not counted, and not
    /// released as Kubernetes would: the garbage collector then takes it with the Job,
    /// and a pod made with a Job's owner reference by hand stays the Job's.
    async fn claim_pods(&self, job: &Job, pods_api: &Api<Pod>) -> Result<Vec<Arc<Pod>>> {
        let namespace = job.metadata.namespace();
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self
            .pods
            .filter(|p| p.metadata.namespace() == namespace && selects(job, &p.metadata.labels));
        let mut owned = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for pod in candidates {
            match pod.metadata.controller() {
                Some(owner) if owner.uid == uid => owned.push(pod),
                Some(_) => {}
                None => {
                    if pod.metadata.deletion_timestamp.is_some() || job.is_finished() {
                        continue;
                    }
                    // As Kubernetes, check once with a live read that the Job is not
                    // being deleted (or replaced by a namesake) before adopting.
                    if may_adopt.is_none() {
                        may_adopt = Some(claim::owner_still_current(&self.client, job).await?);
                    }
                    if may_adopt == Some(true)
                        && let Some(adopted) = claim::adopt(
                            pods_api,
                            &pod,
                            controller_ref(job),
                            &format!("job {}", job.metadata.name()),
                        )
                        .await?
                    {
                        owned.push(Arc::new(adopted));
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Creates or deletes pods so that `want` are active; returns how many it created
    /// and deleted, with the first error if one stopped it.
    async fn manage(
        &self,
        job: &Job,
        job_key: &ObjectRef,
        active: &[Arc<Pod>],
        want: usize,
        pods_api: &Api<Pod>,
    ) -> Result<(usize, usize), ((usize, usize), super::Error)> {
        if active.len() < want {
            let missing = (want - active.len()).min(BURST_REPLICAS);
            let (created, result) = self.create_pods(job, job_key, missing, pods_api).await;
            result.map(|()| (created, 0)).map_err(|e| ((created, 0), e))
        } else if active.len() > want {
            // Fewer wanted (parallelism lowered): the least valuable go first.
            let surplus = (active.len() - want).min(BURST_REPLICAS);
            let mut ranked: Vec<Arc<Pod>> = active.to_vec();
            ranked.sort_by_cached_key(|p| deletion_rank(p));
            ranked.truncate(surplus);
            self.delete_pods(job, job_key, &ranked, pods_api)
                .await
                .map(|()| (0, surplus))
                .map_err(|e| ((0, 0), e))
        } else {
            Ok((0, 0))
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, ...: the first failure stops it, so a
    /// create that cannot succeed fails once, not `count` times. Returns how many it
    /// created.
    async fn create_pods(
        &self,
        job: &Job,
        job_key: &ObjectRef,
        count: usize,
        pods_api: &Api<Pod>,
    ) -> (usize, Result<()>) {
        let template = pod_from_template(job);
        let mut created = 0;
        let mut batch = 1;
        while created < count {
            let size = batch.min(count - created);
            let results = join_all((0..size).map(|_| pods_api.create(&template))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        self.expectations
                            .expect_creation(job_key, ObjectRef::from_obj(&pod));
                        self.recorder
                            .normal(
                                job,
                                "SuccessfulCreate",
                                &format!("Created pod: {}", pod.metadata.name()),
                            )
                            .await;
                    }
                    Err(error) => {
                        self.recorder
                            .warning(job, "FailedCreate", &format!("Error creating: {error}"))
                            .await;
                        failure.get_or_insert(error);
                    }
                }
            }
            if let Some(error) = failure {
                let skipped = count - created;
                return (
                    created,
                    Err(api_error(format!(
                        "creating pods for job {job_key} ({skipped} not created)"
                    ))(error)),
                );
            }
            batch *= 2;
        }
        (created, Ok(()))
    }

    async fn delete_pods(
        &self,
        job: &Job,
        job_key: &ObjectRef,
        victims: &[Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<()> {
        let victims: Vec<&Pod> = victims.iter().map(AsRef::as_ref).collect();
        claim::delete_pods(
            job,
            job_key,
            &victims,
            pods_api,
            &self.expectations,
            &self.recorder,
        )
        .await
    }

    /// Writes `status` over the cached Job's (nothing if unchanged). `false` when the
    /// Job changed or went since the cache saw it: the informer brings the newer
    /// version, and the reconcile must start again from it rather than overwrite it.
    async fn write_status(&self, job: &Job, status: skiff_api::batch::JobStatus) -> Result<bool> {
        if status == job.status {
            return Ok(true);
        }
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace());
        let name = job.metadata.name();
        let mut updated = job.clone();
        updated.status = status;
        match api.replace_status(name, &updated).await {
            Ok(_) => Ok(true),
            Err(error) if error.is_not_found() || error.is_conflict() => Ok(false),
            Err(error) => Err(api_error(format!("writing the status of job {name}"))(
                error,
            )),
        }
    }
}

impl Note {
    fn normal(reason: &'static str, message: &str) -> Note {
        Note {
            warning: false,
            reason,
            message: message.to_string(),
        }
    }
}

/// Whether the Job's selector selects `labels`. A Job without a selector selects
/// nothing (validation requires one).
fn selects(job: &Job, labels: &std::collections::BTreeMap<String, String>) -> bool {
    job.spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.is_empty() && s.matches(labels))
}

/// The owner reference a Job puts on its pods.
fn controller_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: Job::api_version(),
        kind: Job::KIND.into(),
        name: job.metadata.name().into(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod of the Job's template, named `<job>-<random>` by the server, labelled
/// with the Job's name and uid (also when its selector is the user's).
fn pod_from_template(job: &Job) -> Pod {
    let template = &job.spec.template;
    let name = job.metadata.name();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let mut labels = template.metadata.labels.clone();
    for label in [JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL] {
        labels
            .entry(label.to_string())
            .or_insert_with(|| name.to_string());
    }
    for label in [CONTROLLER_UID_LABEL, LEGACY_CONTROLLER_UID_LABEL] {
        labels
            .entry(label.to_string())
            .or_insert_with(|| uid.clone());
    }
    Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels,
            annotations: template.metadata.annotations.clone(),
            finalizers: template.metadata.finalizers.clone(),
            owner_references: vec![controller_ref(job)],
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> JobSpec {
        serde_json::from_value(value).unwrap()
    }

    fn counts(active: usize, succeeded: i32, failed: i32, restarts: i32) -> Counts {
        Counts {
            active,
            ready: 0,
            succeeded,
            failed,
            restarts,
        }
    }

    #[test]
    fn never_more_pods_than_parallelism_or_the_completions_left() {
        let now = SystemTime::now();
        let job = spec(json!({"completions": 20, "parallelism": 5, "backoffLimit": 6}));
        let step = |c| next_step(&job, Some(now), c, now);
        assert_eq!(step(counts(0, 0, 0, 0)), Step::Run { want: 5 });
        assert_eq!(step(counts(5, 17, 2, 0)), Step::Run { want: 3 });
        assert_eq!(step(counts(1, 20, 6, 0)), Step::Complete);
        assert_eq!(
            step(counts(3, 10, 7, 0)),
            Step::Fail {
                reason: "BackoffLimitExceeded",
                message: "Job has reached the specified backoff limit"
            },
            "the seventh failure is one too many"
        );
    }

    #[test]
    fn work_queue_jobs_stop_starting_pods_after_a_success() {
        let now = SystemTime::now();
        let job = spec(json!({"parallelism": 3}));
        let step = |c| next_step(&job, Some(now), c, now);
        assert_eq!(step(counts(0, 0, 0, 0)), Step::Run { want: 3 });
        assert_eq!(step(counts(2, 1, 0, 0)), Step::Run { want: 2 });
        assert_eq!(step(counts(0, 1, 0, 0)), Step::Complete);
    }

    #[test]
    fn restarts_count_against_the_backoff_limit_under_on_failure() {
        let now = SystemTime::now();
        let on_failure =
            spec(json!({"backoffLimit": 3, "template": {"spec": {"restartPolicy": "OnFailure"}}}));
        assert_eq!(
            next_step(&on_failure, Some(now), counts(1, 0, 0, 2), now),
            Step::Run { want: 1 }
        );
        assert!(matches!(
            next_step(&on_failure, Some(now), counts(1, 0, 0, 3), now),
            Step::Fail {
                reason: "BackoffLimitExceeded",
                ..
            }
        ));
        let never =
            spec(json!({"backoffLimit": 3, "template": {"spec": {"restartPolicy": "Never"}}}));
        assert_eq!(
            next_step(&never, Some(now), counts(1, 0, 0, 3), now),
            Step::Run { want: 1 }
        );
    }

    #[test]
    fn the_deadline_counts_only_while_not_suspended() {
        let now = SystemTime::now();
        let job = spec(json!({"activeDeadlineSeconds": 10}));
        let started = now - Duration::from_secs(11);
        assert!(matches!(
            next_step(&job, Some(started), counts(1, 0, 0, 0), now),
            Step::Fail {
                reason: "DeadlineExceeded",
                ..
            }
        ));
        assert_eq!(
            next_step(
                &job,
                Some(now - Duration::from_secs(9)),
                counts(1, 0, 0, 0),
                now
            ),
            Step::Run { want: 1 }
        );
        let suspended = spec(json!({"activeDeadlineSeconds": 10, "suspend": true}));
        assert_eq!(
            next_step(&suspended, Some(started), counts(1, 0, 0, 0), now),
            Step::Suspend
        );
    }

    #[test]
    fn conditions_are_added_when_true_and_move_on_a_change() {
        let mut conditions = Vec::new();
        assert!(!set_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "",
            "t0"
        ));
        assert!(conditions.is_empty(), "a false condition is not added");
        assert!(set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "",
            "t1"
        ));
        assert!(!set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "",
            "t2"
        ));
        assert!(set_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "",
            "t3"
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time.as_deref(), Some("t3"));
        assert_eq!(conditions[0].reason.as_deref(), Some("JobResumed"));
    }

    #[test]
    fn pods_being_deleted_count_as_nothing() {
        let pod = |phase: &str, deleting: bool| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": { "name": "p", "deletionTimestamp": deleting.then_some("2024-01-01T00:00:00Z") },
                    "status": { "phase": phase, "containerStatuses": [{ "name": "c", "restartCount": 2 }] },
                }))
                .unwrap(),
            )
        };
        let pods = [
            pod("Running", false),
            pod("Succeeded", false),
            pod("Failed", false),
            pod("Failed", true),
            pod("Running", true),
        ];
        assert_eq!(Counts::of(&pods), counts(1, 1, 1, 2));
    }
}
