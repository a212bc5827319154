//! Start, wait, stop; every way a container can end.

use std::time::{Duration, Instant};

use skiff_runtime::{ExitStatus, LogStream};

use crate::{load, runtime, spec, within};

#[tokio::test]
async fn an_exit_code_is_reported() {
    let workload = load(skiff_samples::CRASHER);
    let (mut spec, sink) = spec("crasher");
    spec.env = vec![("EXIT_CODE".into(), "42".into())];
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(container.status(), None, "finished before its 200 ms nap");
    assert_eq!(
        within(30, "crasher", container.wait()).await,
        ExitStatus::Exited(42)
    );
    assert_eq!(container.status(), Some(ExitStatus::Exited(42)));
    assert_eq!(sink.text(LogStream::Stderr), ["crasher exiting with 42"]);
}

#[tokio::test]
async fn a_trap_is_reported_with_its_message() {
    let workload = load(skiff_samples::TRAPPER);
    let (spec, sink) = spec("trapper");
    let container = runtime().start(&workload, spec).unwrap();
    let status = within(30, "trapper", container.wait()).await;
    let ExitStatus::Trapped(message) = &status else {
        panic!("expected a trap, got {status:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(status.code(), 134);
    assert_eq!(sink.text(LogStream::Stdout), ["trapper about to trap"]);
}

#[tokio::test]
async fn stack_overflow_traps_and_the_host_survives() {
    let workload = load(skiff_samples::TRAPPER);
    let (mut spec, _sink) = spec("overflow");
    spec.args = vec!["stack-overflow".into()];
    let container = runtime().start(&workload, spec).unwrap();
    let status = within(60, "stack overflow", container.wait()).await;
    let ExitStatus::Trapped(message) = &status else {
        panic!("expected a trap, got {status:?}")
    };
    assert!(message.contains("call stack exhausted"), "{message}");

    // The runtime still runs guests afterwards.
    let (spec, _sink) = crate::spec("after-overflow");
    let container = runtime().start(&load(skiff_samples::HELLO), spec).unwrap();
    assert_eq!(
        within(30, "hello", container.wait()).await,
        ExitStatus::Exited(0)
    );
}

#[tokio::test]
async fn stop_kills_a_sleeping_guest_after_its_grace_period() {
    let workload = load(skiff_samples::TICKER);
    let (mut spec, sink) = spec("ticker");
    spec.env = vec![("TICK_MS".into(), "50".into())];
    let container = runtime().start(&workload, spec).unwrap();
    within(
        30,
        "first tick",
        sink.wait_for(|line| line.line == "tick 2"),
    )
    .await;
    let started = Instant::now();
    let status = within(30, "stop", container.stop(Duration::from_millis(300))).await;
    assert_eq!(status, ExitStatus::Killed);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "stopped before the grace period ended"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to kill",
        started.elapsed()
    );
    let ticks = sink.lines().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink.lines().len(),
        ticks,
        "the guest kept running after stop"
    );
}

#[tokio::test]
async fn stop_returns_the_real_status_of_a_guest_that_ends_within_its_grace() {
    let workload = load(skiff_samples::CRASHER);
    let (spec, _sink) = spec("crasher");
    let container = runtime().start(&workload, spec).unwrap();
    assert_eq!(
        within(30, "stop", container.stop(Duration::from_secs(20))).await,
        ExitStatus::Exited(3)
    );
}

#[tokio::test]
async fn a_spinning_guest_is_stopped_within_its_grace_period() {
    let _cpu = crate::cpu_heavy().await;
    let workload = load(skiff_samples::CPUSPIN);
    let (spec, sink) = spec("cpuspin");
    let container = runtime().start(&workload, spec).unwrap();
    within(
        30,
        "spinning",
        sink.wait_for(|line| line.line == "spinning"),
    )
    .await;
    let started = Instant::now();
    let status = within(
        30,
        "stop of a spinning guest",
        container.stop(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(status, ExitStatus::Killed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a spinning guest took {:?} to stop",
        started.elapsed()
    );
}

#[tokio::test]
async fn dropping_a_container_stops_its_guest() {
    let workload = load(skiff_samples::TICKER);
    let (mut spec, sink) = spec("ticker");
    spec.env = vec![("TICK_MS".into(), "20".into())];
    let container = runtime().start(&workload, spec).unwrap();
    within(30, "ticks", sink.wait_for(|line| line.line == "tick 1")).await;
    drop(container);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ticks = sink.lines().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sink.lines().len(),
        ticks,
        "the guest outlived its container"
    );
}

#[tokio::test]
async fn log_lines_carry_increasing_timestamps() {
    let workload = load(skiff_samples::TICKER);
    let (mut spec, sink) = spec("ticker");
    spec.env = vec![("TICK_MS".into(), "30".into())];
    let before = std::time::SystemTime::now();
    let container = runtime().start(&workload, spec).unwrap();
    within(30, "ticks", sink.wait_for(|line| line.line == "tick 3")).await;
    container.stop(Duration::ZERO).await;
    let lines = sink.lines();
    assert!(lines.windows(2).all(|pair| pair[0].time <= pair[1].time));
    assert!(lines[0].time >= before);
    let spread = lines[3].time.duration_since(lines[0].time).unwrap();
    assert!(
        spread >= Duration::from_millis(60),
        "ticks 0..3 stamped {spread:?} apart"
    );
}

#[tokio::test]
async fn start_outside_tokio_is_an_error_not_a_panic() {
    let workload = load(skiff_samples::HELLO);
    let (spec, _sink) = spec("hello");
    let result = std::thread::spawn(move || runtime().start(&workload, spec).map(|_| ()))
        .join()
        .unwrap();
    assert!(
        matches!(
            result,
            Err(skiff_runtime::StartError::NoAsyncRuntime { .. })
        ),
        "{result:?}"
    );
}
