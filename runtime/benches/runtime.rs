//! skiff-runtime benchmarks: `cargo bench -p skiff-runtime --bench runtime`.
//!
//! 1. Instantiate-to-exit of `hello` (p1 command, warm cache), through `Runtime::start` +
//!    `Container::wait`, beside the same work done with bare wasmtime + wasmtime-wasi.
//! 2. `http-hello` served the way `skiff run --listen` serves it (`serve_http` on loopback),
//!    driven by a bounded number of keep-alive HTTP/1.1 clients: latency and requests/s;
//!    plus in-process `handle_request` latency without the network.
//! 3. Memory per idle `ticker` instance with 1,000 running (RSS delta / 1000).
//! 4. TCP throughput between two `tcp-echo` guests (a client sending to a `SINK=1` server) over
//!    the pod network, beside the same guests on kernel loopback sockets with bare wasmtime +
//!    wasmtime-wasi; and the transports alone between two host tasks: an in-memory
//!    `PodStream` pair against a kernel loopback TCP connection.
//!
//! Set SKIFF_BENCH_QUICK=1 for a short smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use skiff_runtime::{
    ContainerSpec, ExitStatus, LogLine, LogSink, LogStream, MemorySink, PodStream, Runtime,
    RuntimeConfig, VirtualNetwork,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
        let rt = runtime.clone();
        tokio::spawn(async move { tcp_throughput(&rt).await })
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

async fn tcp_throughput(runtime: &Runtime) {
    let bytes: u64 = if quick() { 32 << 20 } else { 512 << 20 };
    let runs = if quick() { 1 } else { 3 };
    let workload = runtime.load_file(skiff_samples::TCP_ECHO).unwrap();

    // Guest to guest over the pod network: two pods of one node.
    let net = VirtualNetwork::default();
    let server_pod = net.attach("10.244.0.2".parse().unwrap()).unwrap();
    let client_pod = net.attach("10.244.0.3".parse().unwrap()).unwrap();
    let log = MemorySink::new();
    let mut spec = ContainerSpec::new("sink", log.clone());
    spec.env = vec![("SINK".into(), "1".into()), ("PORT".into(), "9000".into())];
    spec.network = Some(server_pod);
    let server = runtime.start(&workload, spec).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        log.wait_for(|line| line.line.starts_with("listening on")),
    )
    .await
    .expect("the sink did not listen within 30s: likely deadlocked");
    let mut pod_network = Vec::new();
    for _ in 0..runs {
        let out = MemorySink::new();
        let mut spec = ContainerSpec::new("source", out.clone());
        spec.env = vec![
            ("CONNECT".into(), "10.244.0.2:9000".into()),
            ("SEND_BYTES".into(), bytes.to_string()),
        ];
        spec.network = Some(client_pod.clone());
        let started = Instant::now();
        let client = runtime.start(&workload, spec).unwrap();
        assert_eq!(
            client.wait().await,
            ExitStatus::Exited(0),
            "{:?}",
            out.lines()
        );
        pod_network.push(started.elapsed());
        assert_eq!(out.text(LogStream::Stdout), [format!("received {bytes}")]);
    }
    server.stop(Duration::ZERO).await;

    let kernel_guests = bare_guests_over_loopback(bytes, runs).await;

    let mut pair = Vec::new();
    let mut loopback = Vec::new();
    for _ in 0..runs {
        // 256 KiB each way, as the pod network's own pipes.
        let (a, b) = PodStream::pair(256 * 1024);
        pair.push(pump(a, b, bytes).await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        loopback.push(pump(client.unwrap(), accepted.unwrap().0, bytes).await);
    }

    let rate = |samples: &[Duration]| {
        let best = samples.iter().min().unwrap().as_secs_f64();
        let mut sorted = samples.to_vec();
        sorted.sort();
        let median = sorted[sorted.len() / 2].as_secs_f64();
        let mib = bytes as f64 / 1048576.0;
        format!(
            "{:>7.0} MiB/s median, {:>7.0} MiB/s best",
            mib / median,
            mib / best
        )
    };
    println!(
        "4. TCP throughput, {} MiB one way, {runs} runs each",
        bytes >> 20
    );
    for (what, samples) in [
        ("guest -> guest, pod network (in-memory)", &pod_network),
        (
            "guest -> guest, kernel loopback (wasmtime-wasi)",
            &kernel_guests,
        ),
        ("host  -> host,  PodStream pair (in-memory)", &pair),
        ("host  -> host,  kernel loopback TCP", &loopback),
    ] {
        println!("   {what:<48} {}", rate(samples));
    }
    println!(
        "   (guest figures include starting the client, ~0.1 ms; 64 KiB writes, std::net in the guests)"
    );
    println!();
}

/// Writes `bytes` into `writer` in 64 KiB chunks while a task reads them all from `reader`;
/// the time until the reader has seen the end.
async fn pump<W, R>(mut writer: W, mut reader: R, bytes: u64) -> Duration
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin + Send + 'static,
{
    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buffer).await.unwrap() {
                0 => break total,
                n => total += n as u64,
            }
        }
    });
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        writer.write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    writer.shutdown().await.unwrap();
    assert_eq!(reading.await.unwrap(), bytes);
    started.elapsed()
}

/// Store data for the bare wasmtime baseline.
struct Bare {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Bare {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The same two tcp-echo guests with bare wasmtime + wasmtime-wasi's own sockets: kernel TCP
/// on 127.0.0.1. The time of each client run.
async fn bare_guests_over_loopback(bytes: u64, runs: usize) -> Vec<Duration> {
    use wasmtime_wasi::p2::bindings::CommandPre;

    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).unwrap();
    let component =
        wasmtime::component::Component::from_file(&engine, skiff_samples::TCP_ECHO).unwrap();
    let mut linker = wasmtime::component::Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let pre = CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = move |pre: CommandPre<Bare>, env: Vec<(String, String)>| async move {
        let mut wasi = WasiCtxBuilder::new();
        wasi.arg("tcp-echo")
            .envs(&env)
            .allow_tcp(true)
            .inherit_network();
        let mut store = wasmtime::Store::new(
            pre.engine(),
            Bare {
                wasi: wasi.build(),
                table: wasmtime::component::ResourceTable::new(),
            },
        );
        let command = pre.instantiate_async(&mut store).await.unwrap();
        command.wasi_cli_run().call_run(&mut store).await.unwrap()
    };
    let server = tokio::spawn(run(
        pre.clone(),
        vec![
            ("SINK".into(), "1".into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string()),
        ],
    ));
    // Wait for the server to listen (the probe connection is counted and answered, harmlessly).
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the bare sink did not listen: likely deadlocked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let client = run(
            pre.clone(),
            vec![
                ("CONNECT".into(), format!("127.0.0.1:{port}")),
                ("SEND_BYTES".into(), bytes.to_string()),
            ],
        )
        .await;
        assert_eq!(client, Ok(()));
        times.push(started.elapsed());
    }
    server.abort();
    times
}
