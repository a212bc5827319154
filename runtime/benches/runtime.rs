//! skiff-runtime benchmarks: `cargo bench -p skiff-runtime --bench runtime`.
//!
//! 1. Instantiate-to-exit of `hello` (p1 command, warm cache), through `Runtime::start` +
//!    `Container::wait`, beside the same work done with bare wasmtime + wasmtime-wasi.
//! 2. `http-hello` served the way `skiff run --listen` serves it (`serve_http` on loopback),
//!    driven by a bounded number of keep-alive HTTP/1.1 clients: latency and requests/s;
//!    plus in-process `handle_request` latency without the network.
//! 3. Memory per idle `ticker` instance with 1,000 running (RSS delta / 1000).
//!
//! Set SKIFF_BENCH_QUICK=1 for a short smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use skiff_runtime::{ContainerSpec, ExitStatus, LogLine, LogSink, Runtime, RuntimeConfig};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Discards guest output, so the figures are the runtime's, not a sink's.
struct NullSink;

impl LogSink for NullSink {
    fn write_line(&self, _line: LogLine) {}
}

fn quick() -> bool {
    std::env::var_os("SKIFF_BENCH_QUICK").is_some()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "p50 {:>9.1?}  p99 {:>9.1?}  mean {:>9.1?}  (n={})",
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        mean,
        samples.len()
    )
}

/// Resident set size of this process, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let threads = 2;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        max_instances: 1100,
        ..RuntimeConfig::default()
    })
    .unwrap();
    println!("skiff-runtime benchmark");
    println!(
        "conditions: {} logical CPUs, tokio multi-thread runtime with {threads} workers, pooling allocator: {}, profile: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        runtime.is_pooling(),
        if cfg!(debug_assertions) {
            "debug (figures not representative)"
        } else {
            "release"
        },
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        // Other processes on the machine share its cores; their load skews every figure.
        println!("load average before the run: {}", load.trim());
    }
    println!();
    // Each part runs as a task on a worker thread, as a node's pod workers would.
    tokio.block_on(async {
        let rt = runtime.clone();
        tokio::spawn(async move { instantiate_to_exit(&rt).await })
            .await
            .unwrap();
        let rt = runtime.clone();
        tokio::spawn(async move { http(&rt).await }).await.unwrap();
        let rt = runtime.clone();
        tokio::spawn(async move { idle_memory(&rt).await })
            .await
            .unwrap();
    });
}

async fn instantiate_to_exit(runtime: &Runtime) {
    let iterations = if quick() { 200 } else { 5000 };
    let hello = runtime.load_file(skiff_samples::HELLO).unwrap();
    // Warm up: code paged in, pool slots touched.
    for _ in 0..100 {
        let container = runtime
            .start(&hello, ContainerSpec::new("hello", Arc::new(NullSink)))
            .unwrap();
        assert_eq!(container.wait().await, ExitStatus::Exited(0));
    }
    let mut skiff = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let container = runtime
            .start(&hello, ContainerSpec::new("hello", Arc::new(NullSink)))
            .unwrap();
        let status = container.wait().await;
        skiff.push(started.elapsed());
        assert_eq!(status, ExitStatus::Exited(0));
    }

    // Baseline: the same module with bare wasmtime + wasmtime-wasi, same engine settings
    // (pooling, epoch interruption), output discarded, on the current task.
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_memories(100)
        .total_core_instances(100)
        .total_tables(100)
        .total_stacks(100)
        .total_component_instances(100);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    let engine = wasmtime::Engine::new(&config).unwrap();
    let module = wasmtime::Module::from_file(&engine, skiff_samples::HELLO).unwrap();
    let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx| ctx).unwrap();
    let pre = linker.instantiate_pre(&module).unwrap();
    let run_bare = || async {
        let wasi = WasiCtxBuilder::new().arg("hello").build_p1();
        let mut store = wasmtime::Store::new(&engine, wasi);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = pre.instantiate_async(&mut store).await.unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        start.call_async(&mut store, ()).await.unwrap();
    };
    for _ in 0..100 {
        run_bare().await;
    }
    let mut bare = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        run_bare().await;
        bare.push(started.elapsed());
    }
    println!("1. hello (p1 command) instantiate-to-exit, warm cache, one at a time");
    println!("   skiff  Runtime::start + wait   {}", summary(&mut skiff));
    println!("   bare   wasmtime + wasmtime-wasi {}", summary(&mut bare));
    println!(
        "   ratio  skiff / bare (p50)       {:.2}x",
        percentile(&skiff, 0.5).as_secs_f64() / percentile(&bare, 0.5).as_secs_f64()
    );
    println!();
}

async fn http(runtime: &Runtime) {
    let workload = runtime.load_file(skiff_samples::HTTP_HELLO).unwrap();
    let mut spec = ContainerSpec::new("http-hello", Arc::new(NullSink));
    spec.env = vec![("POD_NAME".into(), "bench".into())];
    let container = Arc::new(runtime.start(&workload, spec).unwrap());

    // In process: one request at a time, no network.
    let iterations = if quick() { 200 } else { 3000 };
    let mut in_process = Vec::with_capacity(iterations);
    for i in 0..iterations + 100 {
        let request = http::Request::builder()
            .uri("http://bench/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let started = Instant::now();
        let response = container.handle_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if i >= 100 {
            in_process.push(started.elapsed());
        }
        assert_eq!(body, "hello from bench at /\n");
    }

    // Over loopback, as `skiff run --listen` serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(skiff_runtime::serve_http(
        container.clone(),
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));
    let clients = 16;
    let per_client = if quick() { 100 } else { 2500 };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            let driver = tokio::spawn(connection);
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let request = http::Request::builder()
                    .uri("/")
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let sent = Instant::now();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap();
                latencies.push(sent.elapsed());
            }
            driver.abort();
            latencies
        }));
    }
    let mut over_http = Vec::new();
    for task in tasks {
        over_http.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    container.stop(Duration::from_secs(5)).await;

    println!("2. http-hello (wasi:http component, one instance per request)");
    println!(
        "   in process  handle_request + body   {}",
        summary(&mut in_process)
    );
    println!(
        "   loopback    {clients} keep-alive HTTP/1.1 clients x {per_client} requests, client and server in this process on {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "               latency                 {}",
        summary(&mut over_http)
    );
    println!(
        "               throughput              {:.0} requests/s",
        over_http.len() as f64 / elapsed.as_secs_f64()
    );
    println!();
}

async fn idle_memory(runtime: &Runtime) {
    let count = if quick() { 100 } else { 1000 };
    let workload = runtime.load_file(skiff_samples::TICKER).unwrap();
    // One instance first, so code and shared runtime structures are already resident.
    let warm = started_ticker(runtime, &workload).await;
    let before = rss_bytes();
    let started = Instant::now();
    let mut tickers = Vec::with_capacity(count);
    for _ in 0..count {
        tickers.push(started_ticker(runtime, &workload).await);
    }
    let took = started.elapsed();
    // Let the pool's lazy work settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    println!("3. idle ticker (p1, sleeping between ticks): {count} running");
    match (before, after) {
        (Some(before), Some(after)) => {
            let per = after.saturating_sub(before) as f64 / count as f64;
            println!(
                "   RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per idle instance (started all in {took:.2?})",
                before as f64 / 1048576.0,
                after as f64 / 1048576.0,
                per / 1024.0
            );
        }
        _ => println!("   RSS unavailable on this OS"),
    }
    let stopping = Instant::now();
    for ticker in &tickers {
        ticker.stop(Duration::ZERO).await;
    }
    warm.stop(Duration::ZERO).await;
    println!("   stopped all in {:.2?}", stopping.elapsed());
}

/// Starts a ticker that prints once, then sleeps for an hour; returns once it has printed.
async fn started_ticker(
    runtime: &Runtime,
    workload: &skiff_runtime::Workload,
) -> skiff_runtime::Container {
    let sink = skiff_runtime::MemorySink::new();
    let mut spec = ContainerSpec::new("ticker", sink.clone());
    spec.env = vec![("TICK_MS".into(), "3600000".into())];
    let container = runtime.start(workload, spec).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        sink.wait_for(|line| line.line == "tick 0"),
    )
    .await
    .expect("a ticker did not tick within 30s: likely deadlocked");
    container
}
