//! The API server: Kubernetes' REST API over the [`Store`], served by axum.
//!
//! Paths, verbs, list and watch shapes, `Status` errors and resourceVersion
//! concurrency follow Kubernetes, so kubectl and the client libraries work unchanged.
//! One middleware layer authenticates every request (see [`auth`]), another authorizes
//! it against the RBAC objects (see [`authz`], [`rbac`]); handlers work on
//! JSON values and route each write through the kind's typed defaults and validation.

pub mod allocator;
mod apply;
pub mod auth;
pub mod authz;
pub mod bounded;
pub mod certificates;
pub mod credentials;
mod discovery;
pub mod error;
mod escalation;
mod fields;
mod handlers;
mod logs;
mod metrics;
mod metrics_api;
pub mod modules;
pub mod node_graph;
mod object;
pub mod openapi;
pub mod portforward;
mod protobuf;
pub mod rbac;
pub mod registry;
mod request;
mod reviews;
mod spdy;
mod strategic;
mod table;
pub mod throttle;
pub mod tokens;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use self::apply::{Applier, Ownership, Writer};
use self::auth::Authenticator;
use self::error::{ApiError, ApiResult};
use self::handlers::{
    ApplyRequest, Desired, Part, apply_patch, patch_precondition, put_desired, success_status,
};
use self::registry::Registry;
use self::request::{
    BodyFormat, Params, ResourcePath, Target, WriteOptions, decode_body, read_body,
};
use crate::store::Store;

pub use self::handlers::{INITIAL_NAMESPACES, PROTECTED_NAMESPACES};

/// Settings of the API server; `Default` gives Kubernetes-like values.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// Request bodies larger than this are refused with 413. Default 3 MiB, as Kubernetes.
    /// It also bounds what a body may decode to (see [`bounded`]), what a JSON patch may
    /// copy, and how large a patch may make an object.
    pub max_body_bytes: usize,
    /// A watch without `timeoutSeconds` ends after this long. Default 30 minutes.
    pub watch_timeout: Duration,
    /// How often a watch that allows bookmarks gets one. Default 60 s.
    pub bookmark_interval: Duration,
    /// How much history the periodic compaction keeps, in revisions. Default 100,000.
    pub history_revisions: u64,
    /// How often compaction runs. Default 5 minutes.
    pub compaction_interval: Duration,
    /// Where pushed wasm modules are kept; `None` turns the module store off.
    pub modules: Option<modules::ModuleStorage>,
    /// What each node's API token (for logs and port-forward) and the fabric token
    /// derive from (see [`credentials`]). Default none: node APIs are unavailable.
    pub node_key: Option<credentials::NodeKey>,
    /// Where ClusterIPs and nodes' pod ranges come from.
    pub ranges: allocator::Ranges,
    /// Signs nodes' certificates (`nodes/NAME/certificate`); `None`: no node gets one.
    pub node_signer: Option<Arc<certificates::NodeSigner>>,
    /// How the API server connects to node APIs (logs, port-forward): TLS trusting the
    /// cluster CA, presenting the API server's client certificate. `None`: plain HTTP, for
    /// clusters whose nodes have no certificates (tests, benchmarks in one process).
    pub node_client_tls: Option<Arc<rustls::ClientConfig>>,
    /// Per-user request rate, requests in flight and open watches (429 beyond them).
    pub client_limits: throttle::ClientLimits,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            max_body_bytes: 3 * 1024 * 1024,
            watch_timeout: Duration::from_secs(30 * 60),
            bookmark_interval: Duration::from_secs(60),
            history_revisions: 100_000,
            compaction_interval: Duration::from_secs(5 * 60),
            node_key: None,
            modules: None,
            ranges: allocator::Ranges::default(),
            node_signer: None,
            node_client_tls: None,
            client_limits: throttle::ClientLimits::default(),
        }
    }
}

/// The client for node APIs: over TLS (HTTP/1.1, which upgrades need) when `tls` is given.
fn node_http_client(tls: Option<&Arc<rustls::ClientConfig>>) -> ApiResult<reqwest::Client> {
    let builder = reqwest::Client::builder();
    let builder = match tls {
        Some(tls) => {
            let mut tls = (**tls).clone();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.use_preconfigured_tls(tls)
        }
        None => builder,
    };
    builder
        .build()
        .map_err(|error| ApiError::internal("building the client for node APIs", error))
}

/// The API server's shared state.
pub struct ApiServer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) config: ApiServerConfig,
    pub(crate) auth: Authenticator,
    pub(crate) metrics: metrics::Metrics,
    /// What each user has used of `config.client_limits`.
    pub(crate) throttle: throttle::Throttle,
    /// Set to `true` to end every open watch (graceful shutdown).
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// Who may do what, and the tokens made at runtime (see [`rbac`]).
    pub(crate) access: Arc<rbac::AccessIndex>,
    /// Keeps `access` current from the store's watch while the server lives.
    _access_follower: rbac::Follower,
    /// Which ConfigMaps and Secrets each node's pods use (the node authorizer's).
    pub(crate) node_graph: Arc<node_graph::NodeGraph>,
    _node_graph_follower: rbac::Follower,
    /// Calls node APIs (logs, port-forward); see [`ApiServerConfig::node_client_tls`].
    pub(crate) http: reqwest::Client,
}

impl ApiServer {
    /// An API server over `store`, creating the initial namespaces if they are missing.
    pub async fn new(
        store: Arc<dyn Store>,
        auth: Authenticator,
        config: ApiServerConfig,
    ) -> ApiResult<Arc<ApiServer>> {
        let http = node_http_client(config.node_client_tls.as_ref())?;
        let access = Arc::new(rbac::AccessIndex::default());
        let access_follower = rbac::Follower::new(access.clone().follow(store.clone()));
        let node_graph = Arc::new(node_graph::NodeGraph::default());
        let node_graph_follower = rbac::Follower::new(node_graph.clone().follow(store.clone()));
        let server = Arc::new(ApiServer {
            store,
            registry: Registry::builtin(),
            config,
            auth,
            metrics: metrics::Metrics::default(),
            throttle: throttle::Throttle::default(),
            shutdown: tokio::sync::watch::Sender::new(false),
            http,
            access,
            _access_follower: access_follower,
            node_graph,
            _node_graph_follower: node_graph_follower,
        });
        server.bootstrap().await?;
        server.bootstrap_access().await?;
        Ok(server)
    }

    /// The axum router serving the whole API.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route(
                "/version",
                get(|| async { axum::Json(discovery::version()) }),
            )
            .route("/metrics", get(metrics_text))
            .route("/openapi/v3", get(openapi_v3))
            .route("/openapi/v3/{*rest}", get(openapi_v3))
            .route("/api", any(core_api))
            .route("/api/{*rest}", any(core_api))
            .route("/apis", any(named_api))
            .route("/apis/{*rest}", any(named_api))
            .route("/skiff/v1/modules", any(modules::serve))
            .route("/skiff/v1/modules/{*reference}", any(modules::serve))
            .fallback(
                |request: Request| async move { ApiError::path_not_found(request.uri().path()) },
            )
            // Innermost, as in Kubernetes: after authentication and the per-user limits.
            .layer(middleware::from_fn_with_state(
                self.clone(),
                authz::authorize,
            ))
            // Inside authentication: limits are per user.
            .layer(middleware::from_fn_with_state(
                self.clone(),
                throttle::limit,
            ))
            .layer(middleware::from_fn_with_state(
                self.clone(),
                auth::authenticate,
            ))
            .layer(middleware::from_fn_with_state(self.clone(), observe))
            .with_state(self.clone())
    }

    /// Ends every open watch, so a graceful shutdown does not wait for them.
    pub fn close_watches(&self) {
        self.shutdown.send_replace(true);
    }

    /// Compacts the store's history now, keeping `history_revisions` revisions.
    pub async fn compact_once(&self) -> Result<(), crate::store::StoreError> {
        let current = self.store.current_revision().await?;
        let keep = self.config.history_revisions;
        if current > keep {
            self.store.compact(current - keep).await?;
        }
        Ok(())
    }

    /// Runs compaction every `compaction_interval`, until dropped.
    pub async fn run_compaction(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.compaction_interval);
        loop {
            tick.tick().await;
            if let Err(error) = self.compact_once().await {
                tracing::warn!(%error, "store compaction failed");
            }
        }
    }
}

async fn readyz(State(server): State<Arc<ApiServer>>) -> Response {
    match server.store.current_revision().await {
        Ok(_) => "ok".into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {error}")).into_response(),
    }
}

async fn metrics_text(State(server): State<Arc<ApiServer>>) -> Response {
    let revision = server.store.current_revision().await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        server.metrics.render(revision),
    )
        .into_response()
}

/// The OpenAPI v3 documents (see [`openapi`]).
async fn openapi_v3(request: Request) -> Response {
    openapi::serve(request.uri().path(), request.headers())
        .unwrap_or_else(IntoResponse::into_response)
}

/// Records every request's verb, code and latency.
async fn observe(State(server): State<Arc<ApiServer>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let is_watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=1" || p == "watch=true"));
    let response = next.run(request).await;
    let verb = if is_watch { "WATCH" } else { method.as_str() };
    server
        .metrics
        .observe(verb, response.status().as_u16(), started.elapsed());
    response
}

async fn core_api(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    serve(server, true, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn named_api(State(server): State<Arc<ApiServer>>, request: Request) -> Response {
    serve(server, false, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve(server: Arc<ApiServer>, core: bool, request: Request) -> ApiResult<Response> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.path().ends_with("/portforward") {
        return serve_port_forward(&server, core, &mut parts).await;
    }
    let path = parts.uri.path();
    let rest = path
        .strip_prefix(if core { "/api" } else { "/apis" })
        .unwrap_or("");
    if let Some(review) = reviews::parse(core, rest) {
        return reviews::serve(&server, review?, &parts, body).await;
    }
    if let Some(metrics) = metrics_api::parse(core, rest) {
        return metrics_api::serve(&server, metrics?, &parts).await;
    }
    let params = Params::parse(parts.uri.query())?;
    let target = Target::parse(&server.registry, core, rest)?;
    if !matches!(target, Target::Resource(_)) && parts.method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on discovery documents",
            parts.method
        )));
    }
    let resource = match target {
        Target::Groups { core: true } => return Ok(json_ok(discovery::core_versions())),
        Target::Groups { core: false } => return Ok(json_ok(discovery::groups(&server.registry))),
        Target::Group { group } => return Ok(json_ok(discovery::group(&server.registry, &group)?)),
        Target::Resources { group, version } => {
            return Ok(json_ok(discovery::resources(
                &server.registry,
                &group,
                &version,
            )));
        }
        Target::Resource(resource) => resource,
    };
    let rt_index = server
        .registry
        .types
        .iter()
        .position(|t| std::ptr::eq(t, resource.rt))
        .expect("the target's kind comes from the registry");
    let ResourcePath {
        rt,
        namespace,
        name,
        subresource,
    } = resource;
    let ns = namespace.as_deref();
    let method = parts.method.clone();

    match (&method, name.as_deref(), subresource.as_deref()) {
        (&Method::GET, None, None) if params.is_watch() => {
            watch::watch(
                server.clone(),
                rt_index,
                namespace.clone(),
                params,
                &parts.headers,
            )
            .await
        }
        (&Method::GET, None, None) => server.serve_list(rt, ns, &params, &parts.headers).await,
        (&Method::POST, None, None) => {
            let write = WriteOptions::parse(&params, "CreateOptions")?;
            let writer = writer(&parts, &params, "CreateOptions", Part::Main)?;
            let object = created_object(&server, &parts.headers, body).await?;
            let (object, warnings) = fields::check(rt, object, write.field_validation)?;
            escalation::check(&server.access.snapshot(), user(&parts), rt, ns, &object)?;
            let created = server
                .create_object_as(rt, ns, object, write.dry_run, &Ownership::Update(writer))
                .await?;
            let response = (StatusCode::CREATED, axum::Json(created)).into_response();
            Ok(fields::with_warnings(response, &warnings))
        }
        (&Method::DELETE, None, None) => {
            let (options, dry_run) = delete_options(&server, &parts.headers, body, &params).await?;
            let listing = server.list_objects(rt, ns, &params).await?;
            for item in listing["items"].as_array().into_iter().flatten() {
                let item_ns = object::meta_str(item, "namespace");
                match server
                    .delete_object(rt, item_ns, object::name_of(item), &options, dry_run)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == StatusCode::NOT_FOUND => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_ok(success_status(None)))
        }
        (&Method::GET, Some(name), None | Some("status"))
            if subresource.is_none() || rt.has_status =>
        {
            server
                .serve_get(rt, ns, name, &params, &parts.headers)
                .await
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize"))) => {
            let write = WriteOptions::parse(&params, "UpdateOptions")?;
            let part = part_of(rt, sub)?;
            let ownership = Ownership::Update(writer(&parts, &params, "UpdateOptions", part)?);
            let object = body_object(&server, &parts.headers, body).await?;
            let (object, warnings) = fields::check(rt, object, write.field_validation)?;
            let desired = put_desired(&object)?;
            escalation::check(&server.access.snapshot(), user(&parts), rt, ns, &object)?;
            let updated = server
                .update_object_as(rt, ns, name, part, write.dry_run, &ownership, |_| {
                    Ok(Desired {
                        object: desired.object.clone(),
                        precondition: desired.precondition,
                    })
                })
                .await?;
            Ok(fields::with_warnings(json_ok(updated), &warnings))
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let write = WriteOptions::parse(&params, "PatchOptions")?;
            let part = part_of(rt, sub)?;
            let format = BodyFormat::from_headers(&parts.headers)?;
            let writer = writer(&parts, &params, "PatchOptions", part)?;
            let bytes = read_body(body, server.config.max_body_bytes).await?;
            if format == BodyFormat::ApplyPatch {
                let mut config = decode_body(&bytes, format)?;
                let force = request::patch_force(&params, format)?;
                apply::check_config(rt, name, &mut config)?;
                let (config, warnings) = fields::check(rt, config, write.field_validation)?;
                let applier = Applier { writer, force };
                let request = ApplyRequest {
                    namespace: ns,
                    name,
                    part,
                    config: &config,
                    applier: &applier,
                    dry_run: write.dry_run,
                };
                let (object, created) = server
                    .apply_object(rt, request, |merged| {
                        escalation::check(&server.access.snapshot(), user(&parts), rt, ns, merged)
                    })
                    .await?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let response = (code, axum::Json(object)).into_response();
                return Ok(fields::with_warnings(response, &warnings));
            }
            request::patch_force(&params, format)?;
            let ownership = Ownership::Update(writer);
            // The warnings of the attempt that was written (a retried attempt has its own).
            let warnings = std::sync::Mutex::new(Vec::new());
            let updated = server
                .update_object_as(rt, ns, name, part, write.dry_run, &ownership, |current| {
                    let patched =
                        apply_patch(rt, current, &bytes, format, server.config.max_body_bytes)?;
                    let (patched, found) = fields::check(rt, patched, write.field_validation)?;
                    *warnings.lock().unwrap_or_else(|e| e.into_inner()) = found;
                    let access = server.access.snapshot();
                    escalation::check(&access, user(&parts), rt, ns, &patched)?;
                    let precondition = patch_precondition(current, &patched)?;
                    Ok(Desired {
                        object: patched,
                        precondition,
                    })
                })
                .await?;
            let warnings = warnings.into_inner().unwrap_or_else(|e| e.into_inner());
            Ok(fields::with_warnings(json_ok(updated), &warnings))
        }
        (&Method::DELETE, Some(name), None) => {
            let (options, dry_run) = delete_options(&server, &parts.headers, body, &params).await?;
            Ok(json_ok(
                server
                    .delete_object(rt, ns, name, &options, dry_run)
                    .await?,
            ))
        }
        (&Method::POST, Some(name), Some("binding")) if rt.kind == "Pod" => {
            let write = WriteOptions::parse(&params, "CreateOptions")?;
            let binding = body_object(&server, &parts.headers, body).await?;
            bind(&server, rt, ns, name, &binding, write.dry_run).await
        }
        (&Method::POST, Some(name), Some("certificate")) if rt.kind == "Node" => {
            let body = body_object(&server, &parts.headers, body).await?;
            let request = serde_json::from_value(body).map_err(|error| {
                ApiError::bad_request(format!(
                    "request: a PEM certificate request is needed ({error})"
                ))
            })?;
            let user = parts.extensions.get::<auth::User>();
            certificates::sign(&server, rt, name, user, request).await
        }
        (&Method::POST, Some(name), Some("credential")) if rt.kind == "Node" => {
            let Some(user) = parts.extensions.get::<auth::User>() else {
                return Err(ApiError::unauthorized());
            };
            credentials::exchange(&server, name, user).await
        }
        (_, Some(name), Some(sub @ ("exec" | "attach"))) if rt.kind == "Pod" => {
            Err(ApiError::bad_request(format!(
                "pods {name:?}: {sub} is not supported: a skiff pod runs WebAssembly modules, \
                 with no shell or process to {sub} to; read its output with `kubectl logs`, \
                 reach its ports with `kubectl port-forward`, and run a one-off module as a Job \
                 (`skiff create job NAME --image MODULE -- ARGS`)"
            )))
        }
        (&Method::GET, Some(name), Some("log")) if rt.kind == "Pod" => {
            let params = logs::LogParams::parse(parts.uri.query())?;
            logs::pod_log(&server, rt, ns, name, params).await
        }
        (method, Some(name), Some("scale")) if rt.scalable => {
            let options_kind = match *method {
                Method::PUT => "UpdateOptions",
                _ => "PatchOptions",
            };
            let write = match *method {
                Method::PUT | Method::PATCH => WriteOptions::parse(&params, options_kind)?,
                _ => WriteOptions::default(),
            };
            let mut writer = writer(&parts, &params, options_kind, Part::Main)?;
            writer.subresource = Some("scale");
            let request = ScaleRequest {
                method,
                headers: &parts.headers,
                dry_run: write.dry_run,
                ownership: Ownership::Update(writer),
            };
            scale(&server, rt, ns, name, request, body).await
        }
        (_, Some(_), Some(sub)) if !known_subresource(rt, sub) => {
            Err(ApiError::path_not_found(path))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ))),
    }
}

/// `pods/NAME/portforward`, which takes over the connection rather than answering it.
async fn serve_port_forward(
    server: &ApiServer,
    core: bool,
    parts: &mut axum::http::request::Parts,
) -> ApiResult<Response> {
    let path = parts.uri.path().to_string();
    let rest = path.strip_prefix("/api").filter(|_| core).unwrap_or("");
    let Target::Resource(resource) = Target::parse(&server.registry, core, rest)? else {
        return Err(ApiError::path_not_found(&path));
    };
    let rt = resource.rt;
    let name = resource.name.as_deref();
    match (&parts.method, name, resource.subresource.as_deref()) {
        (&Method::GET | &Method::POST, Some(name), Some("portforward")) if rt.kind == "Pod" => {
            let query = parts.uri.query().map(str::to_string);
            let namespace = resource.namespace.clone();
            portforward::port_forward(
                server,
                rt,
                namespace.as_deref(),
                name,
                query.as_deref(),
                parts,
            )
            .await
        }
        _ => Err(ApiError::path_not_found(&path)),
    }
}

/// Who makes a write through `part`, for the managed fields (see [`apply`]).
fn writer(
    parts: &axum::http::request::Parts,
    params: &Params,
    options_kind: &str,
    part: Part,
) -> ApiResult<Writer> {
    Ok(Writer {
        manager: request::field_manager(params, &parts.headers, options_kind)?,
        subresource: match part {
            Part::Main => None,
            Part::Status => Some("status"),
            Part::Finalize => Some("finalize"),
        },
    })
}

/// The authenticated caller of a request.
fn user(parts: &axum::http::request::Parts) -> Option<&auth::User> {
    parts.extensions.get::<auth::User>()
}

fn known_subresource(rt: &registry::ResourceType, sub: &str) -> bool {
    match sub {
        "status" => rt.has_status,
        "scale" => rt.scalable,
        "binding" => rt.kind == "Pod",
        "finalize" => rt.kind == "Namespace",
        "certificate" | "credential" => rt.kind == "Node",
        "log" | "portforward" | "exec" | "attach" => rt.kind == "Pod",
        _ => false,
    }
}

fn part_of(rt: &registry::ResourceType, sub: Option<&str>) -> ApiResult<Part> {
    match sub {
        None => Ok(Part::Main),
        Some("status") if rt.has_status => Ok(Part::Status),
        Some("finalize") if rt.kind == "Namespace" => Ok(Part::Finalize),
        Some(other) => Err(ApiError::path_not_found(&format!("{}/{other}", rt.plural))),
    }
}

fn json_ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// The object a create's body holds: in JSON, YAML, or the Kubernetes protobuf that
/// kubectl's typed `create` generators send (and never retry as JSON), read into the
/// JSON it would be so that the same defaults and validation follow.
async fn created_object(server: &ApiServer, headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    if !protobuf::is_protobuf(content_type(headers)) {
        return body_object(server, headers, body).await;
    }
    let bytes = read_body(body, server.config.max_body_bytes).await?;
    protobuf::decode_object(&bytes).map_err(|error| protobuf::unreadable(Some(error)))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn body_object(server: &ApiServer, headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    // Protobuf is read only in creates (see `created_object`): an update or a
    // subresource's body in it would need tables for every part of the kind.
    if protobuf::is_protobuf(content_type(headers)) {
        return Err(protobuf::unreadable(None));
    }
    let format = BodyFormat::from_headers(headers)?;
    if !matches!(format, BodyFormat::Json | BodyFormat::Yaml) {
        return Err(ApiError::unsupported_media_type(
            "a patch content type on a non-patch request",
        ));
    }
    let bytes = read_body(body, server.config.max_body_bytes).await?;
    let value = decode_body(&bytes, format)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    Ok(value)
}

/// A delete's options, from its body and query, and whether it is a dry run (`dryRun`
/// in either).
async fn delete_options(
    server: &ApiServer,
    headers: &HeaderMap,
    body: Body,
    params: &Params,
) -> ApiResult<(skiff_api::meta::DeleteOptions, bool)> {
    let bytes = read_body(body, server.config.max_body_bytes).await?;
    let mut dry_run = request::dry_run(params.dry_run.as_deref(), "DeleteOptions")?;
    let mut options: skiff_api::meta::DeleteOptions = if bytes.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        let format = BodyFormat::from_headers(headers)?;
        let value = decode_body(&bytes, format)?;
        match value.get("dryRun") {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) => {
                for value in values {
                    let value = value.as_str().ok_or_else(|| {
                        ApiError::bad_request("DeleteOptions: dryRun: expected a list of strings")
                    })?;
                    dry_run |= request::dry_run(Some(value), "DeleteOptions")?;
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "DeleteOptions: dryRun: expected a list of strings",
                ));
            }
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            ApiError::bad_request(format!("DeleteOptions: {}: {}", e.path(), e.inner()))
        })?
    };
    if let Some(grace) = Params::number("gracePeriodSeconds", &params.grace_period_seconds)? {
        options.grace_period_seconds = Some(grace);
    }
    if let Some(policy) = &params.propagation_policy {
        options.propagation_policy = Some(policy.clone());
    }
    if params.orphan_dependents.as_deref() == Some("true") && options.propagation_policy.is_none() {
        options.propagation_policy = Some("Orphan".into());
    }
    Ok((options, dry_run))
}

/// `POST pods/NAME/binding`: assigns an unscheduled pod to a node, once.
async fn bind(
    server: &ApiServer,
    rt: &registry::ResourceType,
    ns: Option<&str>,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> ApiResult<Response> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::invalid(
            rt,
            name,
            &[skiff_api::FieldError::required("target.name", "")],
        ));
    }
    let uid = binding
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|uid| !uid.is_empty());
    server.bind_pod(rt, ns, name, uid, node, dry_run).await?;
    Ok((StatusCode::CREATED, axum::Json(success_status(None))).into_response())
}

/// How a `scale` subresource is called: its method, headers, `dryRun` and writer.
struct ScaleRequest<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    dry_run: bool,
    ownership: Ownership,
}

/// `deployments/NAME/scale`, `replicasets/NAME/scale`: read or set `spec.replicas`.
async fn scale(
    server: &ApiServer,
    rt: &registry::ResourceType,
    ns: Option<&str>,
    name: &str,
    request: ScaleRequest<'_>,
    body: Body,
) -> ApiResult<Response> {
    let ScaleRequest {
        method,
        headers,
        dry_run,
        ownership,
    } = request;
    let to_scale = |object: &Value| {
        let selector = object
            .pointer("/spec/selector")
            .and_then(|s| {
                serde_json::from_value::<skiff_api::selector::LabelSelector>(s.clone()).ok()
            })
            .map(|s| s.to_string());
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": object::name_of(object),
                "namespace": object::meta_str(object, "namespace"),
                "uid": object::meta_str(object, "uid"),
                "resourceVersion": object::meta_str(object, "resourceVersion"),
                "creationTimestamp": object::meta_str(object, "creationTimestamp"),
            },
            "spec": { "replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
            "status": {
                "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
                "selector": selector,
            },
        })
    };
    let updated = match *method {
        Method::GET => server.get_object(rt, ns, name).await?.1,
        Method::PUT | Method::PATCH => {
            let format = BodyFormat::from_headers(headers)?;
            let bytes = read_body(body, server.config.max_body_bytes).await?;
            let is_patch = *method == Method::PATCH;
            let given = if is_patch {
                Value::Null
            } else {
                decode_body(&bytes, format)?
            };
            server
                .update_object_as(rt, ns, name, Part::Main, dry_run, &ownership, |current| {
                    let current_scale = to_scale(current);
                    let wanted = if is_patch {
                        apply_patch(
                            rt,
                            &current_scale,
                            &bytes,
                            format,
                            server.config.max_body_bytes,
                        )?
                    } else {
                        given.clone()
                    };
                    let replicas = wanted
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                rt,
                                name,
                                &[skiff_api::FieldError::required("spec.replicas", "")],
                            )
                        })?;
                    if replicas < 0 || replicas > i32::MAX as i64 {
                        return Err(ApiError::invalid(
                            rt,
                            name,
                            &[skiff_api::FieldError::invalid(
                                "spec.replicas",
                                replicas,
                                "must be greater than or equal to 0",
                            )],
                        ));
                    }
                    let precondition = match object::meta_str(&wanted, "resourceVersion") {
                        Some(rv)
                            if Some(rv) != object::meta_str(current, "resourceVersion")
                                || !is_patch =>
                        {
                            Some(object::parse_revision(rv)?)
                        }
                        _ => None,
                    };
                    let mut object = current.clone();
                    object["spec"]["replicas"] = json!(replicas);
                    Ok(Desired {
                        object,
                        precondition,
                    })
                })
                .await?
        }
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on scale"
            )));
        }
    };
    Ok(json_ok(to_scale(&updated)))
}
