//! Watches: a chunked stream of JSON lines, one Kubernetes watch event each.
//!
//! A watch from `resourceVersion` N sends every change after N, in order, exactly
//! once; one without (or with `0`) first sends the current objects as `ADDED`. A
//! selector-filtered watch sends `DELETED` when an object stops matching and `ADDED`
//! when it starts to, as Kubernetes does. History older than the last compaction
//! answers an `ERROR` event with a 410 `Expired` status: the client relists. A watch-list
//! (`sendInitialEvents=true`) gets the current objects, then a `BOOKMARK` annotated
//! `k8s.io/initial-events-end`, then the changes. A client
//! that accepts Tables (`kubectl get -w`) gets each event's object as a one-row Table,
//! the first of them with the column definitions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::ApiServer;
use super::error::{ApiError, ApiResult};
use super::handlers::Filter;
use super::object::{decode, decode_at};
use super::registry::ResourceType;
use super::request::Params;
use super::table::{Read, Representation};
use crate::store::{Event, EventKind, ListOptions, StoreError};

/// Serves a watch request.
pub async fn watch(
    server: Arc<ApiServer>,
    rt_index: usize,
    namespace: Option<String>,
    params: Params,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let rt = &server.registry.types[rt_index];
    let representation = Representation::negotiate(headers, &params, Read::Watch)?;
    let mut present = Presenter {
        representation,
        headers_sent: false,
    };
    let filter = Filter::from_params(rt, &params)?;
    let timeout = Params::number("timeoutSeconds", &params.timeout_seconds)?
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(server.config.watch_timeout);
    let bookmarks = params.bookmarks();
    let prefix = rt.key(namespace.as_deref(), None);

    let mut initial = Vec::new();
    let resource_version = params
        .resource_version
        .as_deref()
        .filter(|rv| !rv.is_empty() && *rv != "0");
    // A watch-list (`sendInitialEvents=true`: client-go's informers, kubectl `wait` and
    // `rollout status`) starts with the current state whatever resourceVersion it names
    // (`resourceVersionMatch=NotOlderThan`) and learns where that state ends from a
    // bookmark; a watch without a resourceVersion gets the current state too, unless it
    // says `sendInitialEvents=false`.
    let watch_list = params.send_initial_events()?;
    let start = if watch_list.unwrap_or(resource_version.is_none()) {
        let listing = server
            .store
            .list(&prefix, ListOptions::default())
            .await
            .map_err(|e| ApiError::from_store(rt, "", e))?;
        for kv in &listing.items {
            let object = decode(kv)?;
            if filter.matches(rt, &object) {
                initial.push(line("ADDED", &present.object(rt, object)?));
            }
        }
        if watch_list == Some(true) {
            let end = present.representation.bookmark(rt, listing.revision, true);
            initial.push(line("BOOKMARK", &end));
        }
        listing.revision
    } else {
        match resource_version {
            Some(rv) => super::object::parse_revision(rv)?,
            None => server
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::from_store(rt, "", e))?,
        }
    };
    let changes = match server.store.watch(&prefix, start).await {
        Ok(changes) => changes,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let error = ApiError::expired(format!(
                "too old resource version: {requested} ({compacted})"
            ));
            let body = line(
                "ERROR",
                &serde_json::to_value(error.status()).unwrap_or_default(),
            );
            return Ok(stream_response(Body::from(body)));
        }
        Err(error) => return Err(ApiError::from_store(rt, "", error)),
    };

    server
        .metrics
        .watchers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let guard = WatcherGauge(server.clone());
    let mut shutdown = server.shutdown.subscribe();
    let bookmark_every = server.config.bookmark_interval;
    let server_for_events = server.clone();
    let events = async_stream(move |tx| async move {
        let _guard = guard;
        let rt = &server_for_events.registry.types[rt_index];
        for chunk in initial {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        let mut changes = changes;
        let mut last_revision = start;
        let mut bookmark = tokio::time::interval(bookmark_every);
        bookmark.tick().await;
        loop {
            let chunk = tokio::select! {
                _ = &mut deadline => return,
                _ = &mut stopped => return,
                _ = bookmark.tick(), if bookmarks => {
                    line("BOOKMARK", &present.representation.bookmark(rt, last_revision, false))
                }
                change = changes.next() => match change {
                    None => return,
                    Some(Ok(event)) => {
                        last_revision = event.revision();
                        let shown = match to_watch_event(rt, &filter, &event) {
                            Ok(Some((kind, object))) => present.object(rt, object).map(|shown| Some((kind, shown))),
                            unchanged => unchanged,
                        };
                        match shown {
                            Ok(Some((kind, object))) => line(kind, &object),
                            Ok(None) => continue,
                            Err(error) => line("ERROR", &serde_json::to_value(error.status()).unwrap_or_default()),
                        }
                    }
                    Some(Err(StoreError::Compacted { requested, compacted })) => {
                        let error = ApiError::expired(format!("too old resource version: {requested} ({compacted})"));
                        let _ = tx.send(line("ERROR", &serde_json::to_value(error.status()).unwrap_or_default())).await;
                        return;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "watch ended by the store");
                        return;
                    }
                },
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Ok(stream_response(Body::from_stream(
        events.map(Ok::<_, std::convert::Infallible>),
    )))
}

fn stream_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The watch event a store change becomes for this watcher, if any.
fn to_watch_event(
    rt: &ResourceType,
    filter: &Filter,
    event: &Event,
) -> ApiResult<Option<(&'static str, Value)>> {
    let revision = event.revision();
    let prev_matches = match &event.prev {
        Some(prev) if !filter.is_everything() => {
            filter.matches(rt, &decode_at(&prev.value, prev.mod_revision)?)
        }
        Some(_) => true,
        None => false,
    };
    Ok(match event.kind {
        EventKind::Delete => {
            let object = decode_at(&event.kv.value, revision)?;
            (filter.matches(rt, &object)).then_some(("DELETED", object))
        }
        EventKind::Put => {
            let object = decode_at(&event.kv.value, revision)?;
            match (prev_matches, filter.matches(rt, &object)) {
                (true, true) => Some(("MODIFIED", object)),
                (false, true) => Some(("ADDED", object)),
                (true, false) => Some(("DELETED", object)),
                (false, false) => None,
            }
        }
    })
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Turns the objects of one watch's events into the representation its client accepts.
struct Presenter {
    representation: Representation,
    /// Whether a Table with the column definitions went out already.
    headers_sent: bool,
}

impl Presenter {
    fn object(&mut self, rt: &ResourceType, object: Value) -> ApiResult<Value> {
        let headers = !self.headers_sent;
        let shown =
            self.representation
                .event_object(rt, object, headers, std::time::SystemTime::now())?;
        self.headers_sent = true;
        Ok(shown)
    }
}

/// Counts open watches for `/metrics` while it lives.
struct WatcherGauge(Arc<ApiServer>);

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        self.0
            .metrics
            .watchers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A stream fed by a task through a small channel; the task stops when the stream is
/// dropped (the client went away), because its sends then fail and the task is aborted.
fn async_stream<F, Fut>(producer: F) -> impl futures::Stream<Item = Bytes> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = AbortOnDrop(tokio::spawn(producer(tx)));
    futures::stream::unfold((rx, task), |(mut rx, task)| async move {
        rx.recv().await.map(|item| (item, (rx, task)))
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
