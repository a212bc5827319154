//! `skiff run`: run one wasm workload locally, without a cluster, like `wasmtime run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use skiff_runtime::{
    ContainerSpec, ExitStatus, Runtime, RuntimeConfig, StdioSink, VolumeMount, WorkloadKind,
};

/// How long a stopped HTTP service gets to finish the requests in flight.
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// Run a wasm module or component here, as a pod's container would run on a node.
///
/// A WASI preview 1 command (core module with `_start`) or preview 2 command (component
/// exporting `wasi:cli/run`) runs to completion and `skiff run` exits with its exit code
/// (137 if it is killed or runs out of memory, 134 if it traps). An HTTP component
/// (`wasi:http/incoming-handler`) is served on `--listen` until Ctrl-C.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The .wasm file: a core module or a component.
    pub module: PathBuf,
    /// Memory limit, as a Kubernetes quantity (64Mi, 1G, ...). Default: none.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// CPU limit, as a Kubernetes quantity (500m, 1, 0.25, ...). Default: none.
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<u32>,
    /// A host directory to mount: HOSTDIR:GUESTDIR, or HOSTDIR:GUESTDIR:ro for read-only.
    /// Repeatable.
    #[arg(long = "volume", value_name = "HOSTDIR:GUESTDIR[:ro]", value_parser = parse_volume)]
    pub volumes: Vec<VolumeMount>,
    /// An environment variable for the guest, K=V. Repeatable. Nothing of skiff's own
    /// environment is passed on.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Address to serve an HTTP component on, e.g. 127.0.0.1:8080 (port 0 picks one). Its
    /// bound address is printed as `listening on http://ADDR`. Default: 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for compiled code, so a second run does not compile again. Default:
    /// $XDG_CACHE_HOME/skiff/compiled or ~/.cache/skiff/compiled.
    #[arg(long, env = "SKIFF_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Arguments for the guest (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Runs the workload and returns the exit code `skiff run` should exit with.
pub async fn run(args: RunArgs) -> Result<i32> {
    let cache_dir = args.cache_dir.clone().or_else(default_cache_dir);
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir,
        max_instances: 200,
        ..RuntimeConfig::default()
    })
    .context("starting the wasm runtime")?;
    let bytes = tokio::fs::read(&args.module)
        .await
        .with_context(|| format!("reading {}", args.module.display()))?;
    let workload = {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .context("compiling")?
    }
    .with_context(|| format!("loading {}", args.module.display()))?;

    let name = args.module.file_stem().map_or_else(
        || "main".to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let mut spec = ContainerSpec::new(name.clone(), Arc::new(StdioSink));
    spec.args = args.args;
    spec.env = args.env;
    spec.volumes = args.volumes;
    spec.memory_limit_bytes = args.memory;
    spec.cpu_millis = args.cpu;

    if workload.kind() == WorkloadKind::HttpService {
        let addr = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let container = Arc::new(
            runtime
                .start(&workload, spec)
                .context("starting the service")?,
        );
        println!(
            "listening on http://{}",
            listener.local_addr().context("reading the bound address")?
        );
        skiff_runtime::serve_http(container.clone(), listener, shutdown_signal())
            .await
            .context("serving HTTP")?;
        let status = container.stop(HTTP_GRACE).await;
        return Ok(report(&name, &status, args.memory));
    }
    if args.listen.is_some() {
        bail!(
            "--listen serves HTTP components; {} is a {}",
            args.module.display(),
            workload.kind()
        );
    }
    let container = runtime
        .start(&workload, spec)
        .context("starting the container")?;
    let status = tokio::select! {
        status = container.wait() => status,
        () = shutdown_signal() => container.stop(Duration::ZERO).await,
    };
    Ok(report(&name, &status, args.memory))
}

/// Says on stderr why a guest failed, and returns the process exit code for its status.
fn report(name: &str, status: &ExitStatus, memory: Option<u64>) -> i32 {
    match status {
        ExitStatus::Exited(_) => {}
        ExitStatus::Trapped(message) => eprintln!("error: {name} trapped: {message}"),
        ExitStatus::OutOfMemory => match memory {
            Some(limit) => eprintln!("error: {name} ran out of memory (limit {limit} bytes)"),
            None => eprintln!("error: {name} ran out of memory"),
        },
        ExitStatus::Killed => eprintln!("error: {name} was killed"),
    }
    status.code()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("skiff").join("compiled"))
}

/// A Kubernetes quantity as a number: `500m` = 0.5, `64Mi` = 67108864, `1G` = 1e9, `2` = 2.
fn parse_quantity(text: &str) -> Result<f64, String> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let text = text.trim();
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|number| (number, *factor)))
        .unwrap_or((text, 1.0));
    let valid = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.chars().filter(|&c| c == '.').count() <= 1
        && number != ".";
    let value: f64 = if valid {
        number
            .parse()
            .map_err(|_| format!("{text:?} is not a quantity"))?
    } else {
        f64::NAN
    };
    if !value.is_finite() {
        return Err(format!(
            "{text:?} is not a quantity (examples: 64Mi, 1G, 500m, 2)"
        ));
    }
    Ok(value * factor)
}

/// `--memory`: bytes, rounded up.
fn parse_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_quantity(text)?.ceil();
    if bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("memory {text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// `--cpu`: millicores, rounded up.
fn parse_cpu(text: &str) -> Result<u32, String> {
    let millis = (parse_quantity(text)? * 1000.0).ceil();
    if millis < 1.0 || millis > f64::from(u32::MAX) {
        return Err(format!("cpu {text:?} is out of range (at least 1m)"));
    }
    Ok(millis as u32)
}

/// `--volume HOSTDIR:GUESTDIR[:ro]`.
fn parse_volume(text: &str) -> Result<VolumeMount, String> {
    let mut parts = text.split(':');
    let (Some(host), Some(guest)) = (parts.next(), parts.next()) else {
        return Err(format!("volume {text:?} is not HOSTDIR:GUESTDIR[:ro]"));
    };
    let read_only = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(format!(
                "volume {text:?}: unknown mode {other:?} (ro or rw)"
            ));
        }
    };
    if host.is_empty() || !guest.starts_with('/') || parts.next().is_some() {
        return Err(format!(
            "volume {text:?} is not HOSTDIR:GUESTDIR[:ro] with an absolute GUESTDIR"
        ));
    }
    let host_path =
        std::path::absolute(host).map_err(|error| format!("volume {text:?}: {error}"))?;
    Ok(VolumeMount {
        host_path,
        guest_path: guest.to_string(),
        read_only,
    })
}

/// `--env K=V`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("env {text:?} is not K=V")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory("4096"), Ok(4096));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1Mi").is_err());
        assert!(parse_memory("Mi").is_err());
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.1"), Ok(100));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("fast").is_err());
    }

    #[test]
    fn volumes_and_env() {
        let volume = parse_volume("/srv/data:/data:ro").unwrap();
        assert_eq!(
            (
                volume.host_path,
                volume.guest_path.as_str(),
                volume.read_only
            ),
            (PathBuf::from("/srv/data"), "/data", true)
        );
        assert!(!parse_volume("/srv:/data").unwrap().read_only);
        assert!(parse_volume("/srv").is_err());
        assert!(parse_volume("/srv:data").is_err());
        assert!(parse_volume("/srv:/data:rx").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("A").is_err());
    }
}
