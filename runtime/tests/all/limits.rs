//! Memory and CPU limits; no guest starves another or blocks a host thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_runtime::{ContainerSpec, ExitStatus, LogStream};

use crate::{cpu_heavy, load, runtime, spec, within};

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_guest_over_its_memory_limit_is_out_of_memory() {
    let workload = load(skiff_samples::MEMHOG);
    let (mut spec, sink) = spec("memhog");
    spec.memory_limit_bytes = Some(32 * MIB);
    spec.env = vec![("STEP_MS".into(), "1".into())];
    let container = runtime().start(&workload, spec).unwrap();
    let status = within(60, "memhog", container.wait()).await;
    assert_eq!(status, ExitStatus::OutOfMemory);
    assert_eq!(status.code(), 137);
    let held: Vec<u64> = sink
        .text(LogStream::Stdout)
        .iter()
        .filter_map(|line| {
            line.strip_prefix("holding ")?
                .strip_suffix(" MiB")?
                .parse()
                .ok()
        })
        .collect();
    assert!(held.contains(&16), "memhog never got going: {held:?}");
    assert!(
        held.iter().all(|&mib| mib < 32),
        "memhog held more than its limit: {held:?}"
    );
}

#[tokio::test]
async fn an_unlimited_memhog_runs_until_stopped() {
    let workload = load(skiff_samples::MEMHOG);
    let (mut spec, sink) = spec("memhog");
    spec.env = vec![("STEP_MS".into(), "2".into())];
    let container = runtime().start(&workload, spec).unwrap();
    within(
        60,
        "64 MiB",
        sink.wait_for(|line| line.line == "holding 64 MiB"),
    )
    .await;
    assert_eq!(container.status(), None);
    assert_eq!(
        within(30, "stop", container.stop(Duration::ZERO)).await,
        ExitStatus::Killed
    );
}

#[tokio::test]
async fn a_memory_limit_below_the_initial_memory_fails_at_start_as_out_of_memory() {
    // A Rust guest starts with about 1 MiB of linear memory (its stack).
    let workload = load(skiff_samples::HELLO);
    let (mut spec, _sink) = spec("tiny");
    spec.memory_limit_bytes = Some(64 * 1024);
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "hello", container.wait()).await,
        ExitStatus::OutOfMemory
    );
}

/// CPU used so far by the threads whose `/proc/self/task` ids are in `tids` (user +
/// system); None where there is no /proc.
fn threads_cpu(tids: &[String]) -> Option<Duration> {
    if tids.is_empty() {
        return None;
    }
    let mut ticks = 0;
    for tid in tids {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// A 2-worker tokio runtime that records its worker threads' ids, so a test can measure the
/// CPU its guests used with the kernel's own accounting, apart from other tests' threads.
fn measured_runtime() -> (tokio::runtime::Runtime, Arc<Mutex<Vec<String>>>) {
    let tids = Arc::new(Mutex::new(Vec::new()));
    let recorder = tids.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // "/proc/thread-self" links to "<pid>/task/<tid>".
            if let Ok(link) = std::fs::read_link("/proc/thread-self")
                && let Some(tid) = link.file_name()
            {
                recorder
                    .lock()
                    .unwrap()
                    .push(tid.to_string_lossy().into_owned());
            }
        })
        .build()
        .unwrap();
    (runtime, tids)
}

async fn spin(
    name: &str,
    cpu_millis: Option<u32>,
) -> (
    skiff_runtime::Container,
    std::sync::Arc<skiff_runtime::MemorySink>,
) {
    let workload = load(skiff_samples::CPUSPIN);
    let (mut spec, sink) = spec(name);
    spec.cpu_millis = cpu_millis;
    let container = runtime().start(&workload, spec).unwrap();
    within(
        30,
        "spinning",
        sink.wait_for(|line| line.line == "spinning"),
    )
    .await;
    (container, sink)
}

#[test]
fn a_spinning_guest_under_100m_uses_about_a_tenth_of_a_core() {
    let (tokio, tids) = measured_runtime();
    tokio.block_on(async {
        let _cpu = cpu_heavy().await;
        let window = Duration::from_secs(2);
        let tids = || tids.lock().unwrap().clone();

        let (throttled, _sink) = spin("throttled", Some(100)).await;
        let (guest_before, threads_before, started) = (throttled.cpu_time(), threads_cpu(&tids()), Instant::now());
        tokio::time::sleep(window).await;
        let elapsed = started.elapsed();
        let guest_share = (throttled.cpu_time() - guest_before).as_secs_f64() / elapsed.as_secs_f64();
        let threads_share = threads_cpu(&tids())
            .zip(threads_before)
            .map(|(after, before)| (after - before).as_secs_f64() / elapsed.as_secs_f64());
        throttled.stop(Duration::ZERO).await;
        eprintln!("100m spinner: {guest_share:.3} of a core by the runtime's count, {threads_share:?} by the kernel's");
        assert!((0.04..=0.2).contains(&guest_share), "a 100m guest used {guest_share:.3} of a core");
        if let Some(threads_share) = threads_share {
            // The kernel's count of the threads the guest ran on, independent of the runtime's
            // own accounting; in 10 ms ticks, hence the band.
            assert!((0.03..=0.25).contains(&threads_share), "the 100m guest's threads used {threads_share:.3} of a core");
        }

        // The same measures on an unthrottled spinner show what the limit held back.
        let (free, _sink) = spin("unthrottled", None).await;
        let (guest_before, threads_before, started) = (free.cpu_time(), threads_cpu(&tids()), Instant::now());
        tokio::time::sleep(window).await;
        let elapsed = started.elapsed();
        let free_share = (free.cpu_time() - guest_before).as_secs_f64() / elapsed.as_secs_f64();
        let threads_share = threads_cpu(&tids())
            .zip(threads_before)
            .map(|(after, before)| (after - before).as_secs_f64() / elapsed.as_secs_f64());
        free.stop(Duration::ZERO).await;
        eprintln!("unlimited spinner: {free_share:.3} of a core by the runtime's count, {threads_share:?} by the kernel's");
        assert!(free_share > 0.5, "an unlimited guest got only {free_share:.3} of a core");
        if let Some(threads_share) = threads_share {
            // Loose: the machine's other work competes for the core.
            assert!(threads_share > 0.3, "an unlimited guest's threads used only {threads_share:.3} of a core");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_spinning_guests_do_not_starve_a_ninth() {
    let _cpu = cpu_heavy().await;
    let mut spinners = Vec::new();
    for n in 0..8 {
        spinners.push(spin(&format!("spin-{n}"), None).await);
    }
    // Every spinner is running; the ninth guest must still start, work and finish.
    let started = Instant::now();
    let workload = load(skiff_samples::CRASHER);
    let (mut spec, sink) = spec("ninth");
    spec.env = vec![("CRASH_AFTER_MS".into(), "100".into())];
    let ninth = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(20, "the ninth guest among 8 spinners", ninth.wait()).await,
        ExitStatus::Exited(3)
    );
    eprintln!(
        "ninth guest finished in {:?} beside 8 spinners",
        started.elapsed()
    );
    assert_eq!(sink.text(LogStream::Stdout), ["crasher starting"]);
    // The host's own timers still fire on time.
    let timer = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        timer.elapsed() < Duration::from_secs(1),
        "a 50 ms host timer took {:?}",
        timer.elapsed()
    );
    for (spinner, _) in &spinners {
        assert_eq!(spinner.status(), None);
    }
    for (spinner, _) in &spinners {
        assert_eq!(
            within(10, "stopping a spinner", spinner.stop(Duration::ZERO)).await,
            ExitStatus::Killed
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_block_a_single_threaded_host() {
    let _cpu = cpu_heavy().await;
    let (spinner, _sink) = spin("spin-one-thread", None).await;
    let workload = load(skiff_samples::HELLO);
    let (spec, _sink) = spec("hello");
    let hello = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(20, "hello beside a spinner on one thread", hello.wait()).await,
        ExitStatus::Exited(0)
    );
    assert_eq!(
        within(10, "stop", spinner.stop(Duration::ZERO)).await,
        ExitStatus::Killed
    );
}

#[test]
fn spec_defaults_are_unlimited_and_offline() {
    let spec = ContainerSpec::new("x", skiff_runtime::MemorySink::new());
    assert_eq!(
        (
            spec.memory_limit_bytes,
            spec.cpu_millis,
            spec.network.is_none()
        ),
        (None, None, true)
    );
}
