//! [`Client`]: one connection pool to the API servers, with its credentials.
//!
//! A cluster may have several API servers over one store. The client sends to the
//! current one; when a request cannot reach it (nothing was sent: connection refused,
//! unreachable, connect timeout, TLS handshake failed), it moves to the next and sends
//! the request there. A request that failed after it was sent is repeated on the next
//! server only when repeating it is safe (GET, HEAD, OPTIONS); a POST, PUT, PATCH or
//! DELETE returns its error, since the server may have carried it out. The client stays
//! on the server it moved to, and the watcher resumes its watches there from the last
//! resourceVersion it saw: every server of the cluster serves the same revisions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::Upgraded;
use reqwest::header::{ACCEPT, CONNECTION, CONTENT_TYPE, UPGRADE};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::Patch;
use crate::config::Config;
use crate::error::{Error, Result, error_chain, status_from_body};

pub use reqwest::Method;

/// The longest line a JSON-lines stream (a watch) may send; a longer one is an error
/// rather than unbounded buffering.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// A client of the API server. Cheap to clone: clones share one connection pool, and
/// the server they send to.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Every server's URL without a trailing slash, the preferred one first; request
    /// paths are appended to them.
    servers: Vec<String>,
    /// Index in `servers` of the one requests go to first: the preferred one until it
    /// could not be reached, then the one that answered instead.
    current: AtomicUsize,
    token: Option<String>,
    timeout: Duration,
    default_namespace: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server())
            .field("servers", &self.inner.servers)
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A request body and its media type. Cheap to clone, to send again to another server.
pub(crate) struct Body {
    content_type: &'static str,
    bytes: Bytes,
}

impl Body {
    pub(crate) fn json(value: &impl serde::Serialize, what: &str) -> Result<Body> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::decode(format!("encoding {what}"), e))?;
        Ok(Body {
            content_type: "application/json",
            bytes: bytes.into(),
        })
    }

    pub(crate) fn patch(patch: &Patch) -> Result<Body> {
        let bytes =
            serde_json::to_vec(patch.value()).map_err(|e| Error::decode("encoding a patch", e))?;
        Ok(Body {
            content_type: patch.content_type(),
            bytes: bytes.into(),
        })
    }
}

impl Client {
    /// A client for `config`. Fails on a CA certificate that is not PEM.
    pub fn new(config: Config) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout.min(config.timeout))
            .danger_accept_invalid_certs(config.accept_invalid_certs)
            .user_agent(&config.user_agent);
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::config("the CA certificate is not valid PEM", e))?;
            if certs.is_empty() {
                return Err(Error::Config {
                    message: "the CA PEM holds no certificate".into(),
                    source: None,
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::config("building the HTTP client", e))?;
        let servers = config
            .servers()
            .map(|url| url.as_str().trim_end_matches('/').to_string())
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                servers,
                current: AtomicUsize::new(0),
                token: config.token,
                timeout: config.timeout,
                default_namespace: config.default_namespace,
            }),
        })
    }

    /// The namespace [`Api::default_namespaced`](crate::Api::default_namespaced) uses.
    pub fn default_namespace(&self) -> &str {
        &self.inner.default_namespace
    }

    /// The base URL, without a trailing slash, of the server requests go to now: the
    /// preferred one, or the one the client moved to when that could not be reached.
    pub fn server(&self) -> &str {
        &self.inner.servers[self.inner.current.load(Ordering::Relaxed)]
    }

    /// Sends the request `build` makes for a server's base URL to the current server,
    /// and while it fails in a way that allows it (see the [module documentation](self)),
    /// to the next ones, each once. Returns the first answer, whatever its status, or
    /// the last error.
    async fn send_to_any(
        &self,
        method: &Method,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let servers = &self.inner.servers;
        let first = self.inner.current.load(Ordering::Relaxed);
        let mut index = first;
        loop {
            let error = match build(&servers[index]).send().await {
                Ok(response) => {
                    if index != first
                        && self
                            .inner
                            .current
                            .compare_exchange(first, index, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        tracing::warn!(
                            from = %servers[first],
                            to = %servers[index],
                            "API server unreachable; moved to another"
                        );
                    }
                    return Ok(response);
                }
                Err(error) => error,
            };
            let next = (index + 1) % servers.len();
            if next == first || !may_send_again(method, &error) {
                return Err(error);
            }
            tracing::debug!(
                server = %servers[index],
                next = %servers[next],
                error = %error_chain(&error),
                "request to the API server failed; trying the next"
            );
            index = next;
        }
    }

    /// Sends a request and checks its status: any non-2xx answer becomes
    /// [`Error::Api`]. `timeout` `None` means no limit on the whole exchange
    /// (streams), connecting stays limited by the configured timeout.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        self.send_accepting(method, path_and_query, body, timeout, "application/json")
            .await
    }

    /// [`send`](Self::send) with the given `Accept` header.
    async fn send_accepting(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        timeout: Option<Duration>,
        accept: &str,
    ) -> Result<reqwest::Response> {
        let build = |base: &str| {
            let url = format!("{base}{path_and_query}");
            let mut request = self
                .inner
                .http
                .request(method.clone(), url)
                .header(ACCEPT, accept);
            if let Some(token) = &self.inner.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, body.content_type)
                    .body(body.bytes.clone());
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            request
        };
        let response = self.send_to_any(&method, build).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(Error::Api(Box::new(status_from_body(
            status.as_u16(),
            &body,
        ))))
    }

    /// Opens a byte stream to `path_and_query` through an HTTP/1.1 upgrade to `protocol`:
    /// a POST the server answers with 101 Switching Protocols, after which the connection
    /// carries the stream both ways (what `port-forward` runs over). Any other answer is
    /// [`Error::Api`].
    pub async fn upgrade(&self, path_and_query: &str, protocol: &str) -> Result<Upgraded> {
        let build = |base: &str| {
            let mut request = self
                .inner
                .http
                .post(format!("{base}{path_and_query}"))
                .header(CONNECTION, "Upgrade")
                .header(UPGRADE, protocol);
            if let Some(token) = &self.inner.token {
                request = request.bearer_auth(token);
            }
            request
        };
        let response = self.send_to_any(&Method::POST, build).await?;
        let status = response.status();
        if status != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let body = response.bytes().await.unwrap_or_default();
            return Err(Error::Api(Box::new(status_from_body(
                status.as_u16(),
                &body,
            ))));
        }
        Ok(response.upgrade().await?)
    }

    /// Sends a request and decodes the JSON answer as `T`.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        what: &str,
    ) -> Result<T> {
        let response = self
            .send(method, path_and_query, body, Some(self.inner.timeout))
            .await?;
        let bytes = response.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode(what, e))
    }

    /// Sends a JSON request to any path (`/api/v1/namespaces/default/pods?limit=5`)
    /// and returns the JSON answer: the CLI's way to reach kinds it has no type for.
    pub async fn request_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let body = body
            .map(|b| Body::json(&b, "the request body"))
            .transpose()?;
        self.request(method, path_and_query, body, "the answer")
            .await
    }

    /// Sends a PATCH of the given kind to any path and returns the JSON answer.
    pub async fn request_patch(&self, path_and_query: &str, patch: &Patch) -> Result<Value> {
        self.request(
            Method::PATCH,
            path_and_query,
            Some(Body::patch(patch)?),
            "the answer",
        )
        .await
    }

    /// Sends a request without a body and returns the answer as text (`pods/log`).
    pub async fn request_text(&self, method: Method, path_and_query: &str) -> Result<String> {
        let timeout = Some(self.inner.timeout);
        let response = self
            .send_accepting(method, path_and_query, None, timeout, "*/*")
            .await?;
        Ok(response.text().await?)
    }

    /// Sends raw bytes (a wasm module) to any path and returns the JSON answer, or
    /// fetches raw bytes when `body` is `None`: the module store's calls.
    pub async fn request_bytes(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<(Bytes, reqwest::header::HeaderMap)> {
        let body = body.map(|(bytes, content_type)| Body {
            bytes,
            content_type,
        });
        let response = self
            .send_accepting(
                method,
                path_and_query,
                body,
                Some(self.inner.timeout),
                "*/*",
            )
            .await?;
        let headers = response.headers().clone();
        Ok((response.bytes().await?, headers))
    }

    /// Sends a request without a body and streams the answer's bytes as they come
    /// (`pods/log?follow=true`). No limit on the whole exchange: the stream ends when
    /// the server ends it or the stream is dropped.
    pub async fn request_stream(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let response = self
            .send_accepting(method, path_and_query, None, None, "*/*")
            .await?;
        Ok(response.bytes_stream().map_err(Error::from).boxed())
    }

    /// Streams a JSON-lines answer (a watch of any kind) as one JSON value per line.
    pub async fn request_json_lines(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<BoxStream<'static, Result<Value>>> {
        let lines = self.line_stream(path_and_query, method, None).await?;
        Ok(lines
            .map(|line| {
                line.and_then(|line| {
                    serde_json::from_slice(&line).map_err(|e| Error::decode("a JSON line", e))
                })
            })
            .boxed())
    }

    /// Opens a streaming request whose answer is read line by line; `timeout` limits
    /// the whole exchange.
    pub(crate) async fn line_stream(
        &self,
        path_and_query: &str,
        method: Method,
        timeout: Option<Duration>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let response = self.send(method, path_and_query, None, timeout).await?;
        Ok(lines(response.bytes_stream().map_err(Error::from).boxed()).boxed())
    }
}

/// Whether a request that failed with `error` may be sent to another server: always
/// when it never reached the server (connecting failed, so nothing was sent), and when
/// it failed later (reset, timeout) only if repeating it is safe: a GET changes
/// nothing, a POST may have been carried out.
fn may_send_again(method: &Method, error: &reqwest::Error) -> bool {
    error.is_connect()
        || (matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && error.is_request())
}

/// Splits a byte stream into its non-empty lines (without the newline). A last line
/// without a newline is yielded too. The stream ends after its first error.
pub(crate) fn lines(
    chunks: BoxStream<'static, Result<Bytes>>,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    struct Lines {
        chunks: BoxStream<'static, Result<Bytes>>,
        buffer: BytesMut,
        done: bool,
    }
    let state = Lines {
        chunks,
        buffer: BytesMut::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(at) = s.buffer.iter().position(|b| *b == b'\n') {
                let line = s.buffer.split_to(at + 1).freeze().slice(..at);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(line), s));
            }
            if s.done {
                let rest = s.buffer.split().freeze();
                if rest.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                return Some((Ok(rest), s));
            }
            match s.chunks.next().await {
                Some(Ok(chunk)) => {
                    s.buffer.extend_from_slice(&chunk);
                    if s.buffer.len() > MAX_LINE && !s.buffer.contains(&b'\n') {
                        s.done = true;
                        s.buffer.clear();
                        return Some((Err(line_too_long()), s));
                    }
                }
                Some(Err(error)) => {
                    // What came before the error is complete lines or a torn one:
                    // drop the torn one, the caller resumes from what it has seen.
                    s.done = true;
                    s.buffer.clear();
                    return Some((Err(error), s));
                }
                None => s.done = true,
            }
        }
    })
}

fn line_too_long() -> Error {
    use serde::de::Error as _;
    Error::decode(
        "a stream line",
        serde_json::Error::custom(format!("line longer than {MAX_LINE} bytes")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(chunks: &[&'static str]) -> Vec<String> {
        let chunks: Vec<Result<Bytes>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        lines(futures::stream::iter(chunks).boxed())
            .map(|l| String::from_utf8(l.expect("no error").to_vec()).expect("utf8"))
            .collect()
            .await
    }

    #[tokio::test]
    async fn lines_are_split_across_and_within_chunks() {
        assert_eq!(
            split(&["{\"a\":1}\n{\"b\"", ":2}\n\n{\"c\":3}\n"]).await,
            ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
        );
        assert_eq!(split(&["x\ny"]).await, ["x", "y"]);
        assert!(split(&["", "\n", " \n"]).await.is_empty());
    }
}
