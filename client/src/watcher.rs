//! [`watcher`]: a watch that never ends — lists, watches, resumes and relists by itself.
//!
//! The stream it returns:
//!
//! 1. lists every object (page by page, `limit` + `continue`) and yields them all at
//!    once as [`Event::Restarted`];
//! 2. watches from the list's resourceVersion, yielding [`Event::Applied`] and
//!    [`Event::Deleted`];
//! 3. when the watch ends (server timeout) or its connection drops, watches again from
//!    the last resourceVersion it saw (events and bookmarks), so nothing is missed and
//!    nothing is repeated;
//! 4. when the server no longer keeps that resourceVersion (410 Gone), lists again and
//!    yields a new `Restarted`: the consumer replaces what it knew;
//! 5. on any other error yields the `Err` (for logging) and retries after an
//!    exponential back-off with jitter; the stream never ends by itself.
//!
//! It is a plain enum state machine: `State` and one `match` in `step`.

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use skiff_api::Resource;

use crate::api::{Api, ListParams, WatchEvent, WatchParams};
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// What the watcher saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A complete list: every object that exists now. Anything known before and absent
    /// here is gone. The first event of every watcher, and again after a relist.
    Restarted(Vec<K>),
    /// An object was created or changed (or began to match the selectors).
    Applied(K),
    /// An object was deleted (or stopped matching the selectors); its last state.
    Deleted(K),
}

/// What to watch and how.
#[derive(Clone, Debug)]
pub struct WatcherParams {
    /// Only objects whose labels match.
    pub label_selector: Option<String>,
    /// Only objects whose fields match.
    pub field_selector: Option<String>,
    /// Objects per list page; `None` lists in one request. Default 500.
    pub page_size: Option<u32>,
    /// How long one watch request lasts before the server ends it and the watcher
    /// opens the next. Default 290 s (under the usual 5-minute proxy timeouts).
    pub timeout_seconds: u32,
    /// The retry delays after errors. Default [`Backoff::default`].
    pub backoff: Backoff,
}

impl Default for WatcherParams {
    fn default() -> Self {
        WatcherParams {
            label_selector: None,
            field_selector: None,
            page_size: Some(500),
            timeout_seconds: 290,
            backoff: Backoff::default(),
        }
    }
}

impl WatcherParams {
    /// Only objects whose labels match `selector`.
    pub fn labels(selector: &str) -> Self {
        WatcherParams {
            label_selector: Some(selector.into()),
            ..Self::default()
        }
    }

    /// Only objects whose fields match `selector`.
    pub fn fields(selector: &str) -> Self {
        WatcherParams {
            field_selector: Some(selector.into()),
            ..Self::default()
        }
    }

    fn list_params(&self, continue_token: Option<String>) -> ListParams {
        ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            limit: self.page_size,
            continue_token,
            resource_version: None,
        }
    }

    fn watch_params(&self) -> WatchParams {
        WatchParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            timeout_seconds: Some(self.timeout_seconds),
            allow_bookmarks: true,
        }
    }
}

/// Where the watcher is.
enum State<K> {
    /// Knows nothing: list from the first page.
    Empty,
    /// In the middle of a paginated list.
    Listing {
        continue_token: String,
        objects: Vec<K>,
    },
    /// Has seen everything up to `resource_version`: open a watch from there.
    Resume { resource_version: String },
    /// A watch is open; `resource_version` is the last one it delivered.
    Watching {
        resource_version: String,
        stream: BoxStream<'static, Result<WatchEvent<K>>>,
        /// Whether this watch delivered anything (event or bookmark): one that ends
        /// having delivered nothing is retried after a back-off, not in a hot loop.
        delivered: bool,
    },
}

/// What one step produced.
enum Step<K> {
    /// Yield this, then step again.
    Yield(Result<Event<K>>),
    /// Step again at once.
    Continue,
    /// Step again after a back-off delay.
    Pause,
}

/// One transition of the state machine.
async fn step<K: Resource>(
    api: &Api<K>,
    params: &WatcherParams,
    state: State<K>,
) -> (Step<K>, State<K>) {
    match state {
        State::Empty => list_page(api, params, None, Vec::new()).await,
        State::Listing {
            continue_token,
            objects,
        } => list_page(api, params, Some(continue_token), objects).await,
        State::Resume { resource_version } => {
            match api.watch(&params.watch_params(), &resource_version).await {
                Ok(stream) => (
                    Step::Continue,
                    State::Watching {
                        resource_version,
                        stream,
                        delivered: false,
                    },
                ),
                Err(error) if error.is_gone() => {
                    tracing::debug!(kind = K::KIND, %resource_version, "watch too old, relisting");
                    (Step::Continue, State::Empty)
                }
                Err(error) => (Step::Yield(Err(error)), State::Resume { resource_version }),
            }
        }
        State::Watching {
            resource_version,
            mut stream,
            delivered,
        } => match stream.next().await {
            Some(Ok(event)) => {
                let resource_version = event
                    .resource_version()
                    .map(str::to_string)
                    .unwrap_or(resource_version);
                let step = match event {
                    WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                        Step::Yield(Ok(Event::Applied(object)))
                    }
                    WatchEvent::Deleted(object) => Step::Yield(Ok(Event::Deleted(object))),
                    WatchEvent::Bookmark { .. } => Step::Continue,
                };
                (
                    step,
                    State::Watching {
                        resource_version,
                        stream,
                        delivered: true,
                    },
                )
            }
            Some(Err(error)) if error.is_gone() => {
                tracing::debug!(kind = K::KIND, %resource_version, "watch expired, relisting");
                (Step::Continue, State::Empty)
            }
            // One undecodable event: report it, the watch itself is fine.
            Some(Err(error @ Error::Decode { .. })) => (
                Step::Yield(Err(error)),
                State::Watching {
                    resource_version,
                    stream,
                    delivered,
                },
            ),
            // A dropped connection or an ERROR event: resume from what was seen.
            Some(Err(error)) => (Step::Yield(Err(error)), State::Resume { resource_version }),
            None if delivered => (Step::Continue, State::Resume { resource_version }),
            None => (Step::Pause, State::Resume { resource_version }),
        },
    }
}

/// Lists one page; after the last, yields everything as `Restarted`.
async fn list_page<K: Resource>(
    api: &Api<K>,
    params: &WatcherParams,
    continue_token: Option<String>,
    mut objects: Vec<K>,
) -> (Step<K>, State<K>) {
    let resuming = continue_token.is_some();
    match api.list(&params.list_params(continue_token.clone())).await {
        Ok(page) => {
            objects.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(continue_token) => (
                    Step::Continue,
                    State::Listing {
                        continue_token,
                        objects,
                    },
                ),
                None => {
                    let resource_version = page.metadata.resource_version.unwrap_or_default();
                    (
                        Step::Yield(Ok(Event::Restarted(objects))),
                        State::Resume { resource_version },
                    )
                }
            }
        }
        // The continue token expired: the list starts over.
        Err(error) if resuming && error.is_gone() => (Step::Continue, State::Empty),
        Err(error) => {
            let state = match continue_token {
                Some(continue_token) => State::Listing {
                    continue_token,
                    objects,
                },
                None => State::Empty,
            };
            (Step::Yield(Err(error)), state)
        }
    }
}

/// Watches `api` for ever: see the [module documentation](self). Errors are yielded
/// for the consumer to log; the watcher itself goes on after a back-off.
pub fn watcher<K: Resource>(
    api: Api<K>,
    params: WatcherParams,
) -> impl Stream<Item = Result<Event<K>>> + Send + 'static {
    struct Driver<K> {
        api: Api<K>,
        backoff: Backoff,
        params: WatcherParams,
        /// `None` only while a step runs.
        state: Option<State<K>>,
        /// A back-off owed before the next step (after an error was yielded).
        delay: Option<std::time::Duration>,
    }
    let driver = Driver {
        api,
        backoff: params.backoff.clone(),
        params,
        state: Some(State::Empty),
        delay: None,
    };
    futures::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(delay) = d.delay.take() {
                tokio::time::sleep(delay).await;
            }
            let state = d.state.take().unwrap_or(State::Empty);
            let (step, state) = step(&d.api, &d.params, state).await;
            d.state = Some(state);
            match step {
                Step::Yield(Ok(event)) => {
                    d.backoff.reset();
                    return Some((Ok(event), d));
                }
                Step::Yield(Err(error)) => {
                    tracing::debug!(kind = K::KIND, %error, "watcher error, backing off");
                    d.delay = Some(d.backoff.next_delay());
                    return Some((Err(error), d));
                }
                Step::Continue => {}
                Step::Pause => d.delay = Some(d.backoff.next_delay()),
            }
        }
    })
}
