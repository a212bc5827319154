//! Liveness, readiness and startup probes of a running container, as the kubelet runs
//! them: `httpGet` and `tcpSocket` (an `exec` probe has no meaning for a wasm guest).
//!
//! A probe goes through the pod network to the pod's IP and port, from the node's own
//! address in its pod range, as the kubelet probes a pod from the host's network.
//!
//! One task per container run drives every probe and tells the container's task what
//! follows from them ([`Event`]): the startup probe gates the others; readiness flips
//! after `successThreshold`/`failureThreshold` results in a row; liveness or startup
//! failing `failureThreshold` times in a row asks for the container to be killed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use skiff_api::IntOrString;
use skiff_api::core::{Container, Probe};
use skiff_runtime::VirtualNetwork;
use tokio::sync::mpsc;

/// What a container's probes conclude.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The startup probe passed (or there is none): the container counts as started.
    Started,
    /// The container's readiness changed.
    Ready(bool),
    /// A liveness or startup probe failed for good: kill the container, within `grace`
    /// if the probe sets its own grace period.
    Kill {
        message: String,
        grace: Option<Duration>,
    },
}

/// Where a container's probes go.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The node's pod network.
    pub network: VirtualNetwork,
    /// The pod's IP; `None` if the pod has none (the node has no pod range).
    pub ip: Option<IpAddr>,
    /// Where probes come from: the node's address in its pod range.
    pub from: SocketAddr,
}

/// The running probes of one container run; dropping it stops them.
pub(crate) struct Probes {
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probes {
    /// Starts probing `container` at `target`. Without probes the container is started and
    /// ready at once, as in Kubernetes.
    pub fn start(container: &Container, target: Target) -> Probes {
        let (tx, events) = mpsc::channel(8);
        let task = tokio::spawn(run(container.clone(), target, tx));
        Probes { events, task }
    }

    /// The next conclusion; pending forever once the probes have nothing more to say.
    pub async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        }
    }
}

async fn run(container: Container, target: Target, events: mpsc::Sender<Event>) {
    if let Some(probe) = &container.startup_probe
        && let Err(message) = until_passes(&container, probe, &target, "Startup").await
    {
        let grace = probe_grace(probe);
        let _ = events.send(Event::Kill { message, grace }).await;
        return;
    }
    if events.send(Event::Started).await.is_err() {
        return;
    }
    let readiness = async {
        match &container.readiness_probe {
            None => {
                let _ = events.send(Event::Ready(true)).await;
            }
            Some(probe) => readiness(&container, probe, &target, &events).await,
        }
        std::future::pending::<()>().await
    };
    let liveness = async {
        match &container.liveness_probe {
            Some(probe) => {
                let message = until_fails(&container, probe, &target, "Liveness").await;
                let grace = probe_grace(probe);
                let _ = events.send(Event::Kill { message, grace }).await;
            }
            None => std::future::pending().await,
        }
    };
    // Only a failed liveness probe ends the probing: the container is being killed.
    tokio::select! {
        () = readiness => {}
        () = liveness => {}
    }
}

/// Probes until `successThreshold` passes in a row (Ok) or `failureThreshold` failures in
/// a row (Err with the last failure).
async fn until_passes(
    container: &Container,
    probe: &Probe,
    target: &Target,
    kind: &str,
) -> Result<(), String> {
    let mut failures = 0;
    let mut ticks = Ticks::new(probe);
    loop {
        ticks.next().await;
        match check(container, probe, target).await {
            Ok(()) => return Ok(()),
            Err(reason) => {
                failures += 1;
                tracing::debug!(container = %container.name, %reason, "{kind} probe failed");
                if failures >= threshold(probe.failure_threshold, 3) {
                    return Err(format!("{kind} probe failed: {reason}"));
                }
            }
        }
    }
}

/// Probes until `failureThreshold` failures in a row; returns the last failure.
async fn until_fails(container: &Container, probe: &Probe, target: &Target, kind: &str) -> String {
    let mut failures = 0;
    let mut ticks = Ticks::new(probe);
    loop {
        ticks.next().await;
        match check(container, probe, target).await {
            Ok(()) => failures = 0,
            Err(reason) => {
                failures += 1;
                tracing::debug!(container = %container.name, %reason, "{kind} probe failed");
                if failures >= threshold(probe.failure_threshold, 3) {
                    return format!("{kind} probe failed: {reason}");
                }
            }
        }
    }
}

/// Reports readiness: false until `successThreshold` passes in a row, false again after
/// `failureThreshold` failures in a row.
async fn readiness(
    container: &Container,
    probe: &Probe,
    target: &Target,
    events: &mpsc::Sender<Event>,
) {
    let (mut successes, mut failures) = (0, 0);
    let mut ready = false;
    let mut ticks = Ticks::new(probe);
    loop {
        ticks.next().await;
        let now_ready = match check(container, probe, target).await {
            Ok(()) => {
                (successes, failures) = (successes + 1, 0);
                ready || successes >= threshold(probe.success_threshold, 1)
            }
            Err(reason) => {
                (successes, failures) = (0, failures + 1);
                tracing::debug!(container = %container.name, %reason, "Readiness probe failed");
                ready && failures < threshold(probe.failure_threshold, 3)
            }
        };
        if now_ready != ready {
            ready = now_ready;
            if events.send(Event::Ready(ready)).await.is_err() {
                return;
            }
        }
    }
}

fn threshold(value: Option<i32>, default: i32) -> u32 {
    value.unwrap_or(default).max(1) as u32
}

fn probe_grace(probe: &Probe) -> Option<Duration> {
    probe
        .termination_grace_period_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

/// The probe's schedule: the first check after `initialDelaySeconds`, then one every
/// `periodSeconds`.
struct Ticks {
    interval: tokio::time::Interval,
}

impl Ticks {
    fn new(probe: &Probe) -> Ticks {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + delay, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticks { interval }
    }

    async fn next(&mut self) {
        self.interval.tick().await;
    }
}

/// One check: Ok if it passes, else why not.
async fn check(container: &Container, probe: &Probe, target: &Target) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(http) = &probe.http_get {
            if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
                return Err("httpGet.host is not supported: probes go to the pod".to_string());
            }
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
            {
                return Err("only scheme HTTP is supported".to_string());
            }
            let address = address(container, &http.port, target)?;
            let path = http.path.as_deref().unwrap_or("/");
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            let url = format!("http://{address}{path}");
            let status = http_get(target, address, &path, &http.http_headers)
                .await
                .map_err(|error| format!("Get \"{url}\": {error}"))?;
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {status}"))
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
                return Err("tcpSocket.host is not supported: probes go to the pod".to_string());
            }
            let address = address(container, &tcp.port, target)?;
            target
                .network
                .connect_to_pod(address, target.from)
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {address}: {e}"))
        } else if probe.exec.is_some() {
            Err("exec probes are not supported: a wasm container has no commands to exec".into())
        } else if probe.grpc.is_some() {
            Err("grpc probes are not supported".into())
        } else {
            Err("the probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

/// The pod address a probe of `port` (a number or a container port's name) reaches.
fn address(
    container: &Container,
    port: &IntOrString,
    target: &Target,
) -> Result<SocketAddr, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("container {} has no port named {name:?}", container.name))?,
    };
    let port = u16::try_from(number).map_err(|_| format!("{number} is not a port"))?;
    let ip = target
        .ip
        .ok_or_else(|| "the pod has no IP address (its node has no pod range)".to_string())?;
    Ok(SocketAddr::new(ip, port))
}

/// One `GET` over a fresh connection in the pod network; the response's status code.
async fn http_get(
    target: &Target,
    address: SocketAddr,
    path: &str,
    headers: &[skiff_api::core::HttpHeader],
) -> Result<u16, String> {
    let stream = target
        .network
        .connect_to_pod(address, target.from)
        .await
        .map_err(|e| format!("dial tcp {address}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, address.to_string())
        .header(
            hyper::header::USER_AGENT,
            concat!("skiff-probe/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "*/*");
    for header in headers {
        request = request.header(&header.name, &header.value);
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::core::{ContainerPort, HttpGetAction, TcpSocketAction};

    fn container_with(probe: Probe, field: &str) -> Container {
        let mut container = Container {
            name: "web".into(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        };
        match field {
            "liveness" => container.liveness_probe = Some(probe),
            "readiness" => container.readiness_probe = Some(probe),
            _ => container.startup_probe = Some(probe),
        }
        container
    }

    fn fast(probe: Probe) -> Probe {
        Probe {
            period_seconds: Some(1),
            failure_threshold: Some(2),
            ..probe
        }
    }

    /// A pod in a pod network answering every request on port 8080 with `status`; the
    /// target to probe it at.
    fn server(status: u16) -> Target {
        let network = VirtualNetwork::default();
        let pod = network.attach("10.244.0.2".parse().unwrap()).unwrap();
        let mut listener = pod.listen("0.0.0.0:8080".parse().unwrap()).unwrap();
        tokio::spawn(async move {
            let _pod = pod;
            loop {
                let (stream, _) = listener.accept().await;
                let service = hyper::service::service_fn(move |_request| async move {
                    let mut response =
                        hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Target {
            network,
            ip: Some("10.244.0.2".parse().unwrap()),
            from: "10.244.0.1:0".parse().unwrap(),
        }
    }

    fn http_probe(port: IntOrString) -> Probe {
        fast(Probe {
            http_get: Some(HttpGetAction {
                path: Some("/healthz".into()),
                port,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn no_probes_means_started_and_ready_at_once() {
        let mut probes = Probes::start(&Container::default(), server(200));
        assert_eq!(probes.next().await, Event::Started);
        assert_eq!(probes.next().await, Event::Ready(true));
    }

    #[tokio::test]
    async fn a_failing_liveness_probe_asks_for_a_kill_after_the_threshold() {
        let target = server(500);
        let container = container_with(http_probe(IntOrString::String("http".into())), "liveness");
        let mut probes = Probes::start(&container, target.clone());
        assert_eq!(probes.next().await, Event::Started);
        assert_eq!(probes.next().await, Event::Ready(true));
        let started = tokio::time::Instant::now();
        match probes.next().await {
            Event::Kill { message, grace } => {
                assert!(message.contains("Liveness probe failed"), "{message}");
                assert!(message.contains("statuscode: 500"), "{message}");
                assert_eq!(grace, None);
            }
            other => panic!("expected a kill, got {other:?}"),
        }
        // The first check is at once, the second a period later: two failures in a row.
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn readiness_follows_the_probe() {
        let target = server(200);
        let container = container_with(http_probe(IntOrString::Int(8080)), "readiness");
        let mut probes = Probes::start(&container, target.clone());
        assert_eq!(probes.next().await, Event::Started);
        assert_eq!(probes.next().await, Event::Ready(true));

        let failing = server(503);
        let mut probes = Probes::start(&container, failing.clone());
        assert_eq!(probes.next().await, Event::Started);
        let next = tokio::time::timeout(Duration::from_millis(2500), probes.next()).await;
        assert!(
            next.is_err(),
            "a never-passing readiness probe reports nothing: {next:?}"
        );
    }

    #[tokio::test]
    async fn a_startup_probe_gates_the_others_and_kills_when_it_fails() {
        let failing = server(503);
        let container = container_with(http_probe(IntOrString::Int(8080)), "startup");
        let mut probes = Probes::start(&container, failing.clone());
        match probes.next().await {
            Event::Kill { message, .. } => assert!(message.contains("Startup probe failed")),
            other => panic!("expected a kill, got {other:?}"),
        }

        let passing = server(204);
        let mut probes = Probes::start(&container, passing);
        assert_eq!(probes.next().await, Event::Started);
    }

    #[tokio::test]
    async fn tcp_probes_connect_and_unknown_ports_fail_clearly() {
        let target = server(200);
        let probe = fast(Probe {
            tcp_socket: Some(TcpSocketAction {
                port: IntOrString::Int(8080),
                host: None,
            }),
            ..Default::default()
        });
        let container = container_with(probe.clone(), "readiness");
        assert_eq!(check(&container, &probe, &target).await, Ok(()));

        let mut named = probe.clone();
        named.tcp_socket.as_mut().unwrap().port = IntOrString::String("metrics".into());
        let error = check(&container, &named, &target).await.unwrap_err();
        assert!(error.contains("no port named \"metrics\""), "{error}");

        let mut closed = probe.clone();
        closed.tcp_socket.as_mut().unwrap().port = IntOrString::Int(9090);
        let error = check(&container, &closed, &target).await.unwrap_err();
        assert!(error.contains("refused"), "{error}");

        let no_ip = Target { ip: None, ..target };
        let error = check(&container, &probe, &no_ip).await.unwrap_err();
        assert!(error.contains("no IP address"), "{error}");
    }
}
