//! The etcd store: the way to outgrow one machine. Several API servers share one etcd
//! cluster, the store Kubernetes itself runs on.
//!
//! Layout: the object at `key` is the etcd key `PREFIX` + `key` (`/skiff/api/v1/...`
//! under the default prefix `/skiff`), its value stored as it is. Store keys start with
//! `/`, so a cluster under `/skiff` never sees the keys of one under `/skiff2`.
//!
//! Revisions are etcd's own: an object's `mod_revision` is etcd's, and creates,
//! compare-and-swap updates and deletes are etcd transactions comparing the key's
//! `create_revision` or `mod_revision`. etcd's revision counter belongs to the whole
//! etcd cluster: when other clients write to it (another skiff under another prefix),
//! the revisions under this prefix still only grow, but with gaps; and a compaction
//! forgets the history of every prefix at once.
//!
//! Durability is etcd's: it answers a write once a quorum of its members has it on disk,
//! and only then does this store acknowledge it or a watch deliver it.
//!
//! Compaction: `compact(r)` is etcd's compaction at `r`. A watch may start after `r` and
//! not before, the line the sled store draws too: etcd would still replay the event of
//! revision `r` itself, but without the value before it, which filtered watches need.
//! etcd does not tell its compaction revision directly; a read at a revision below it
//! fails, and [`Store::compacted_revision`] searches for it that way.
//!
//! TLS: `https://` endpoints are reached over TLS, checking etcd's certificate against
//! the CA of [`EtcdTls`] and presenting its client certificate (etcd's
//! `--client-cert-auth`), as kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and
//! `--etcd-keyfile`. An etcd reachable beyond loopback must be: whoever can write to it
//! owns the cluster.
//!
//! Losing a member: the store talks to every client URL it was given through one
//! etcd-client `Client`, whose tonic channel spreads requests over the endpoints (power of
//! two choices, every endpoint equally loaded) and never drops one: a dead member stays in
//! the set, and a request sent its way fails on connecting (connection refused) and again
//! tries to connect the next time. So the store sends requests again, with a short
//! back-off, for at most [`RETRY_DEADLINE`]: reads, compaction and opening a watch after
//! any failure to reach etcd (or a member without a leader); writes only where etcd cannot
//! have received them, because the connection was refused or a member without a leader
//! turned the request away. A write lost on the way, its outcome unknown, fails naming
//! the endpoints; the next one goes through the members left. A watch whose etcd stream
//! fails or ends opens it again, through another member, from the revision after the last
//! event it delivered, so its events stay complete, in order and each delivered once; it
//! fails once no member took it back within [`RETRY_DEADLINE`], or with `Compacted` if
//! that history is gone meanwhile.

use std::collections::VecDeque;
use std::fmt::Display;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    GetResponse, Identity, KvClient, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchClient, WatchOptions,
};
use tokio::time::Instant;

use super::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream,
};

/// The prefix `skiff server --etcd` keeps its keys under unless told otherwise.
pub const DEFAULT_PREFIX: &str = "/skiff";
/// How long connecting to an etcd member may take before it counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may wait for its answer (a watch: for its start). etcd answers
/// far sooner, or fails, unless it is partitioned away from its quorum.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings while a watch is open find a dead etcd that never closed the connection;
/// etcd refuses pings more often than every 5 s, and on connections with no stream.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys read per request while listing: bounds each answer's size.
const LIST_PAGE: usize = 500;
/// The largest answer taken: a page of large objects, or a watch response. etcd itself
/// refuses values over 1.5 MiB by default.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Times a listing starts again when a compaction overtakes it between two pages.
const LIST_RETRIES: usize = 3;
/// How long a request is sent again after failures to reach etcd, and how long a failed
/// watch tries to open again: long enough for etcd to elect a new leader when one dies
/// (one to two seconds with its default election timeout) and for the client to find the
/// members left, short enough that callers hear of an etcd that is really gone.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(10);
/// The first pause between two tries; it doubles up to `RETRY_BACKOFF_MAX`.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(25);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The etcd-backed [`Store`]; cheap to share, every request goes to the etcd cluster.
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    kv: KvClient,
    watch: WatchClient,
    /// The prefix without a trailing `/`.
    root: String,
    /// The client URLs, comma-separated: every error names them.
    endpoints: String,
    /// etcd's compaction revision as last learnt: it only grows, so it is where the
    /// search for the current one starts.
    compacted: AtomicU64,
}

/// How the store reaches an etcd served over TLS: the CA that signs etcd's serving
/// certificates, and the client certificate etcd asks for (PEM, all of them).
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    /// This client's certificate and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (client URLs such as
    /// `http://127.0.0.1:2379`), with keys under `prefix` (such as [`DEFAULT_PREFIX`]),
    /// and checks that etcd answers.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        Self::connect_with(endpoints, prefix, None).await
    }

    /// [`EtcdStore::connect`], over TLS with `tls` (which `https://` endpoints need, and
    /// `http://` ones refuse).
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        tls: Option<&EtcdTls>,
    ) -> Result<EtcdStore, StoreError> {
        let named = endpoints.join(",");
        if endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoint given".into()));
        }
        for endpoint in endpoints {
            match (endpoint.starts_with("https://"), tls.is_some()) {
                (true, false) => {
                    return Err(StoreError::Backend(format!(
                        "etcd at {endpoint}: an https endpoint needs the CA that signs etcd's \
                         certificate (--etcd-cafile)"
                    )));
                }
                (false, true) => {
                    return Err(StoreError::Backend(format!(
                        "etcd at {endpoint}: TLS is set (--etcd-cafile), so every endpoint \
                         must be an https:// URL"
                    )));
                }
                _ => {}
            }
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member cut off from its quorum fails requests (and ends watches) instead
            // of serving what it had when it lost its leader.
            .with_require_leader(true);
        if let Some(tls) = tls {
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Backend(format!("etcd at {named}: connecting: {e}")))?;
        let store = EtcdStore {
            shared: Arc::new(Shared {
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
                root: prefix.trim_end_matches('/').to_string(),
                endpoints: named,
                compacted: AtomicU64::new(0),
            }),
        };
        // Fail now, naming etcd, rather than at the first request.
        store
            .shared
            .current_revision(Instant::now() + RETRY_DEADLINE)
            .await?;
        Ok(store)
    }

    /// The etcd key prefix this store's keys live under, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.shared.root
    }
}

impl Shared {
    fn failed(&self, step: impl Display, error: etcd_client::Error) -> StoreError {
        StoreError::Backend(format!(
            "etcd at {}: {step}: {}",
            self.endpoints,
            describe(&error)
        ))
    }

    fn etcd_key(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        if !key.starts_with('/') {
            return Err(StoreError::Backend(format!(
                "etcd at {}: key {key:?} does not start with '/'",
                self.endpoints
            )));
        }
        Ok(format!("{}{key}", self.root).into_bytes())
    }

    /// The etcd key range `[start, end)` of the store keys starting with `prefix`.
    fn etcd_range(&self, prefix: &str) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        // Every key starts with '/': the whole store is the range under `ROOT/`.
        let start = self.etcd_key(if prefix.is_empty() { "/" } else { prefix })?;
        let end = range_end(&start);
        Ok((start, end))
    }

    /// A key no object has (store keys never end at the root's slash); reads of it give
    /// etcd's revision and compaction without reading any object.
    fn probe_key(&self) -> Vec<u8> {
        format!("{}/", self.root).into_bytes()
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let key = kv.key().strip_prefix(self.root.as_bytes()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "etcd at {}: key {:?} is not under {}",
                self.endpoints,
                String::from_utf8_lossy(kv.key()),
                self.root
            ))
        })?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|e| StoreError::Corrupt(format!("etcd key is not UTF-8: {e}")))?;
        Ok(KeyValue {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: revision(kv.create_revision()),
            mod_revision: revision(kv.mod_revision()),
        })
    }

    /// Sends `send`'s request until it succeeds, fails in a way `resend` does not send
    /// again after, or `deadline` passes; pauses between tries, doubling from
    /// `RETRY_BACKOFF_MIN`. The balanced channel picks a member for every try, so a try
    /// after a dead member's refusal most likely reaches a live one.
    async fn with_retries<T, F>(
        &self,
        resend: Resend,
        deadline: Instant,
        mut send: impl FnMut() -> F,
    ) -> Result<T, etcd_client::Error>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut pause = RETRY_BACKOFF_MIN;
        loop {
            let error = match send().await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let again = match resend {
                Resend::Always => is_transient(&error),
                Resend::IfUnsent => is_unsent(&error),
            };
            let now = Instant::now();
            if !again || now >= deadline {
                return Err(error);
            }
            tracing::debug!(
                endpoints = %self.endpoints,
                error = %describe(&error),
                "an etcd request failed; sending it again"
            );
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(RETRY_BACKOFF_MAX);
        }
    }

    /// A read, sent again after transport failures until `deadline`.
    async fn get(
        &self,
        key: Vec<u8>,
        options: GetOptions,
        deadline: Instant,
    ) -> Result<GetResponse, etcd_client::Error> {
        self.with_retries(Resend::Always, deadline, || {
            let (mut kv, key, options) = (self.kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        })
        .await
    }

    async fn current_revision(&self, deadline: Instant) -> Result<Revision, StoreError> {
        let answer = self
            .get(
                self.probe_key(),
                GetOptions::new().with_count_only(),
                deadline,
            )
            .await
            .map_err(|e| self.failed("reading the current revision", e))?;
        self.header_revision(answer.header())
    }

    fn header_revision(
        &self,
        header: Option<&etcd_client::ResponseHeader>,
    ) -> Result<Revision, StoreError> {
        header.map(|h| revision(h.revision())).ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd at {}: an answer without a header",
                self.endpoints
            ))
        })
    }

    /// Whether etcd still has its history at `at`: false below its compaction revision.
    async fn readable_at(&self, at: Revision, deadline: Instant) -> Result<bool, StoreError> {
        let options = GetOptions::new()
            .with_revision(etcd_revision(at))
            .with_count_only();
        match self.get(self.probe_key(), options, deadline).await {
            Ok(_) => Ok(true),
            Err(error) if is_compacted(&error) => Ok(false),
            // Newer than anything written: nothing of it can be compacted.
            Err(error) if is_future_revision(&error) => Ok(true),
            Err(error) => Err(self.failed(format_args!("reading at revision {at}"), error)),
        }
    }

    fn learn_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::SeqCst);
    }

    async fn compacted_revision(&self, deadline: Instant) -> Result<Revision, StoreError> {
        let known = self.compacted.load(Ordering::SeqCst);
        // etcd's revisions start at 1, which holds no change: reads at 1 work before and
        // after a compaction at 1 alike, and both are "nothing compacted" to a watch.
        if self.readable_at(known.max(1), deadline).await? {
            return Ok(known);
        }
        // Compacted past what we knew: the first readable revision, by bisection.
        let (mut low, mut high) = (known.max(1) + 1, self.current_revision(deadline).await?);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.readable_at(middle, deadline).await? {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        self.learn_compacted(low);
        Ok(self.compacted.load(Ordering::SeqCst))
    }

    /// One transaction on `key` (`etcd_key` in etcd): `compares` hold → `then`, else
    /// a read of the key. `verb` names the step in errors. Sent again only where etcd
    /// cannot have received it: a write that may have happened is never made twice.
    async fn txn(
        &self,
        verb: &str,
        key: &str,
        etcd_key: &[u8],
        compares: Vec<Compare>,
        then: TxnOp,
    ) -> Result<TxnResponse, StoreError> {
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![then])
            .or_else(vec![TxnOp::get(etcd_key.to_vec(), None)]);
        let deadline = Instant::now() + RETRY_DEADLINE;
        let sent = self.with_retries(Resend::IfUnsent, deadline, || {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        });
        sent.await.map_err(|e| match &e {
            // etcd's own limit, or its gRPC server's (2 MiB) before it.
            etcd_client::Error::GRpcStatus(status)
                if status.message().contains("request is too large")
                    || status.message().contains("larger than max") =>
            {
                StoreError::TooLarge {
                    key: key.to_string(),
                    detail: format!("etcd at {}: {}", self.endpoints, status.message()),
                }
            }
            _ => self.failed(format_args!("{verb} {key}"), e),
        })
    }

    /// The key a failed transaction read: `NotFound`, or `Conflict` with its revision.
    fn refused(
        &self,
        key: &str,
        expected: Revision,
        answer: &TxnResponse,
    ) -> Result<StoreError, StoreError> {
        let current = answer.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| kv.mod_revision())),
            _ => None,
        });
        match current {
            Some(Some(current)) => Ok(StoreError::Conflict {
                key: key.to_string(),
                expected,
                current: revision(current),
            }),
            Some(None) => Ok(StoreError::NotFound {
                key: key.to_string(),
            }),
            None => Err(self.unexpected(key)),
        }
    }

    fn unexpected(&self, key: &str) -> StoreError {
        StoreError::Backend(format!(
            "etcd at {}: a transaction on {key} answered without the result of its operation",
            self.endpoints
        ))
    }

    /// Keys in `[start, end)` at one revision, in pages: at most `limit` of them, and
    /// whether more remain.
    async fn read_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: Option<usize>,
    ) -> Result<(Vec<etcd_client::KeyValue>, bool, Revision), etcd_client::Error> {
        let limit = limit.unwrap_or(usize::MAX);
        let deadline = Instant::now() + RETRY_DEADLINE;
        let mut items = Vec::new();
        let mut from = start.to_vec();
        // The revision of the first page, at which every later page is read.
        let mut snapshot = None;
        loop {
            let want = (limit - items.len()).min(LIST_PAGE);
            // A limit of 0 still asks whether any key is there.
            let mut options = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(want.max(1) as i64);
            if want == 0 {
                options = options.with_keys_only();
            }
            if let Some(snapshot) = snapshot {
                options = options.with_revision(snapshot);
            }
            let mut answer = self.get(from.clone(), options, deadline).await?;
            let now = answer.header().map(|h| h.revision()).unwrap_or_default();
            let at = *snapshot.get_or_insert(now);
            let more = answer.more();
            let page = answer.take_kvs();
            if want == 0 {
                return Ok((items, !page.is_empty(), revision(at)));
            }
            if let Some(last) = page.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            items.extend(page);
            if !more || items.len() >= limit {
                return Ok((items, more, revision(at)));
            }
        }
    }

    /// A store event from an etcd one, or `None` where etcd no longer has the value
    /// before the change (compacted), which the event must carry.
    fn event(&self, event: &etcd_client::Event) -> Result<Option<Event>, StoreError> {
        let kv = event.kv().ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd at {}: a watch event without its key",
                self.endpoints
            ))
        })?;
        let prev = event.prev_kv().map(|p| self.key_value(p)).transpose()?;
        Ok(match event.event_type() {
            EventType::Put => {
                let kv = self.key_value(kv)?;
                let created = kv.create_revision == kv.mod_revision;
                if prev.is_none() && !created {
                    return Ok(None);
                }
                Some(Event {
                    kind: EventKind::Put,
                    kv,
                    prev,
                })
            }
            EventType::Delete => {
                let Some(prev) = prev else {
                    return Ok(None);
                };
                Some(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: revision(kv.mod_revision()),
                        ..prev.clone()
                    },
                    prev: Some(prev),
                })
            }
        })
    }

    /// Opens etcd's watch of the store keys under `prefix` from the revision after
    /// `after`, trying members until `deadline`; `Compacted` if that history is gone.
    async fn open_watch(
        &self,
        prefix: &str,
        after: Revision,
        deadline: Instant,
    ) -> Result<etcd_client::WatchStream, StoreError> {
        let (start, end) = self.etcd_range(prefix)?;
        // Refuse compacted history now, as the trait promises; a compaction between this
        // check and the watch's start is reported by the watch itself.
        if !self.readable_at(after.max(1), deadline).await? {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted_revision(deadline).await?,
            });
        }
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(etcd_revision(after.saturating_add(1)))
            .with_prev_key()
            // Large batches of old events come in several messages, not one huge one.
            .with_fragment();
        self.with_retries(Resend::Always, deadline, || {
            let (mut watch, start, options) = (self.watch.clone(), start.clone(), options.clone());
            async move { watch.watch(start, Some(options)).await }
        })
        .await
        .map_err(|e| {
            self.failed(
                format_args!(
                    "watching {prefix} from revision {}",
                    after.saturating_add(1)
                ),
                e,
            )
        })
    }
}

/// Which failed requests are sent again: see the module docs.
#[derive(Clone, Copy, Debug)]
enum Resend {
    /// Reads, compaction, opening a watch: whatever happened to the first, a second
    /// changes nothing more. After any failure to reach etcd or to get its answer.
    Always,
    /// Writes: only when etcd cannot have received the first.
    IfUnsent,
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let shared = &self.shared;
        let deadline = Instant::now() + RETRY_DEADLINE;
        let mut answer = shared
            .get(shared.etcd_key(key)?, GetOptions::new(), deadline)
            .await
            .map_err(|e| shared.failed(format_args!("reading {key}"), e))?;
        answer
            .take_kvs()
            .first()
            .map(|kv| shared.key_value(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let shared = &self.shared;
        let (mut start, end) = shared.etcd_range(prefix)?;
        if let Some(after) = &options.start_after {
            let mut after = format!("{}{after}", shared.root).into_bytes();
            after.push(0);
            start = start.max(after);
        }
        let mut retries = 0;
        let (items, more, revision) = loop {
            match shared.read_range(&start, &end, options.limit).await {
                Ok(listing) => break listing,
                // A compaction overtook a long listing: start again, at the newest revision.
                Err(error) if is_compacted(&error) && retries < LIST_RETRIES => retries += 1,
                Err(error) => return Err(shared.failed(format_args!("listing {prefix}"), error)),
            }
        };
        Ok(ListResult {
            items: items
                .iter()
                .map(|kv| shared.key_value(kv))
                .collect::<Result<_, _>>()?,
            revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let shared = &self.shared;
        let etcd_key = shared.etcd_key(key)?;
        let answer = shared
            .txn(
                "creating",
                key,
                &etcd_key,
                vec![Compare::create_revision(
                    etcd_key.clone(),
                    CompareOp::Equal,
                    0,
                )],
                TxnOp::put(etcd_key.clone(), value.to_vec(), None),
            )
            .await?;
        if !answer.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = shared.header_revision(answer.header())?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let shared = &self.shared;
        let etcd_key = shared.etcd_key(key)?;
        let answer = shared
            .txn(
                "updating",
                key,
                &etcd_key,
                vec![
                    // A missing key has mod_revision 0 too: it must also exist.
                    Compare::version(etcd_key.clone(), CompareOp::Greater, 0),
                    Compare::mod_revision(
                        etcd_key.clone(),
                        CompareOp::Equal,
                        etcd_revision(expected),
                    ),
                ],
                TxnOp::put(
                    etcd_key.clone(),
                    value.to_vec(),
                    Some(PutOptions::new().with_prev_key()),
                ),
            )
            .await?;
        if !answer.succeeded() {
            return Err(shared.refused(key, expected, &answer)?);
        }
        let create_revision = answer
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| shared.unexpected(key))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision(create_revision),
            mod_revision: shared.header_revision(answer.header())?,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let shared = &self.shared;
        let etcd_key = shared.etcd_key(key)?;
        let mut compares = vec![Compare::version(etcd_key.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                etcd_revision(expected),
            ));
        }
        let answer = shared
            .txn(
                "deleting",
                key,
                &etcd_key,
                compares,
                TxnOp::delete(etcd_key.clone(), Some(DeleteOptions::new().with_prev_key())),
            )
            .await?;
        if !answer.succeeded() {
            return Err(shared.refused(key, expected.unwrap_or_default(), &answer)?);
        }
        let last = answer
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| shared.unexpected(key))?;
        Ok(KeyValue {
            mod_revision: shared.header_revision(answer.header())?,
            ..shared.key_value(&last)?
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let shared = &self.shared;
        let stream = shared
            .open_watch(prefix, after, Instant::now() + RETRY_DEADLINE)
            .await?;
        let watcher = Watcher {
            shared: shared.clone(),
            prefix: prefix.to_string(),
            stream: Some(stream),
            after,
            pending: VecDeque::new(),
            ended: false,
            failing_since: None,
            reopen_pause: RETRY_BACKOFF_MIN,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            |mut w| async move {
                let item = w.next_event().await?;
                Some((item, w))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let shared = &self.shared;
        let deadline = Instant::now() + RETRY_DEADLINE;
        let revision = revision.min(shared.current_revision(deadline).await?);
        if revision == 0 || revision <= shared.compacted.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Sent again like a read: a compaction that happened answers the next try with
        // "compacted", which is success here.
        let compaction = shared.with_retries(Resend::Always, deadline, || {
            let mut kv = shared.kv.clone();
            async move { kv.compact(etcd_revision(revision), None).await }
        });
        match compaction.await {
            Ok(_) => {}
            // Another API server compacted as far or further.
            Err(error) if is_compacted(&error) => {}
            Err(error) => {
                return Err(shared.failed(format_args!("compacting at revision {revision}"), error));
            }
        }
        shared.learn_compacted(revision);
        tracing::debug!(revision, "compacted etcd's history");
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.shared
            .current_revision(Instant::now() + RETRY_DEADLINE)
            .await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.shared
            .compacted_revision(Instant::now() + RETRY_DEADLINE)
            .await
    }
}

/// One watch: the events of etcd's watch responses, one at a time, across as many of
/// etcd's watches as it takes when members fail.
struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// etcd's watch; `None` after it failed, until it is open again.
    stream: Option<etcd_client::WatchStream>,
    /// The revision of the last event taken from etcd: a new etcd watch starts after it.
    after: Revision,
    /// Taken from etcd, not yet delivered; an error ends the watch once delivered.
    pending: VecDeque<Result<Event, StoreError>>,
    /// No more is read from etcd.
    ended: bool,
    /// When etcd's watch failed with no answer from a new one since: reopening gives up
    /// `RETRY_DEADLINE` after it.
    failing_since: Option<Instant>,
    /// The pause before the next reopening; it doubles with each one and is reset by
    /// events, so a watch that etcd keeps closing does not spin.
    reopen_pause: Duration,
}

impl Watcher {
    async fn next_event(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.pending.clear();
                    self.ended = true;
                }
                return Some(item);
            }
            if self.ended {
                return None;
            }
            self.receive().await;
        }
    }

    /// Reads one watch response from etcd into `pending`, or opens etcd's watch again.
    async fn receive(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            self.reopen().await;
            return;
        };
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            // A member's death, or its loss of the leader (with the require-leader option
            // etcd ends the watches of a member without one): where the cause is lasting,
            // opening again fails with it.
            Ok(None) => return self.lost(&"closed by etcd"),
            Err(error) if is_transient(&error) => return self.lost(&describe(&error)),
            // Such as an answer too large to take: it would come again.
            Err(error) => {
                let error = self
                    .shared
                    .failed(format_args!("watching {}", self.prefix), error);
                self.pending.push_back(Err(error));
                return;
            }
        };
        self.failing_since = None;
        if !response.events().is_empty() {
            self.reopen_pause = RETRY_BACKOFF_MIN;
        }
        let shared = &self.shared;
        if response.compact_revision() > 0 {
            let compacted = revision(response.compact_revision());
            shared.learn_compacted(compacted);
            self.pending.push_back(Err(StoreError::Compacted {
                requested: self.after,
                compacted,
            }));
            return;
        }
        if response.canceled() {
            self.pending.push_back(Err(StoreError::Backend(format!(
                "etcd at {}: the watch of {} was canceled: {}",
                shared.endpoints,
                self.prefix,
                response.cancel_reason()
            ))));
            return;
        }
        for event in response.events() {
            match shared.event(event) {
                Ok(Some(event)) => {
                    // etcd sends each revision once; never deliver one twice regardless.
                    if event.revision() > self.after {
                        self.after = event.revision();
                        self.pending.push_back(Ok(event));
                    }
                }
                Ok(None) => {
                    // The value before this change is compacted away: the watcher must
                    // start again from a listing, as after any compaction.
                    let deadline = Instant::now() + RETRY_DEADLINE;
                    let compacted = match shared.compacted_revision(deadline).await {
                        Ok(compacted) => compacted,
                        Err(error) => {
                            self.pending.push_back(Err(error));
                            return;
                        }
                    };
                    self.pending.push_back(Err(StoreError::Compacted {
                        requested: self.after,
                        compacted,
                    }));
                    return;
                }
                Err(error) => {
                    self.pending.push_back(Err(error));
                    return;
                }
            }
        }
    }

    /// etcd's watch failed or ended: the next `receive` opens it again.
    fn lost(&mut self, why: &dyn Display) {
        tracing::info!(
            endpoints = %self.shared.endpoints,
            prefix = %self.prefix,
            after = self.after,
            "etcd's watch failed ({why}); opening it again"
        );
        self.stream = None;
        self.failing_since.get_or_insert_with(Instant::now);
    }

    /// Opens etcd's watch again after the last event taken, trying members until
    /// `RETRY_DEADLINE` after it first failed; an error ends the watch.
    async fn reopen(&mut self) {
        tokio::time::sleep(self.reopen_pause).await;
        self.reopen_pause = (self.reopen_pause * 2).min(RETRY_BACKOFF_MAX);
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        match self
            .shared
            .open_watch(&self.prefix, self.after, since + RETRY_DEADLINE)
            .await
        {
            Ok(stream) => self.stream = Some(stream),
            Err(error) => self.pending.push_back(Err(error)),
        }
    }
}

/// An etcd client error in one line: gRPC's message and the root cause under it (such
/// as "connection refused"), without the client's debug dump.
fn describe(error: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return error.to_string();
    };
    let mut text = status.message().to_string();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    let mut root = None;
    while let Some(error) = cause {
        root = Some(error);
        cause = error.source();
    }
    if let Some(root) = root.map(|e| e.to_string())
        && !text.contains(&root)
    {
        text = format!("{text}: {root}");
    }
    text
}

/// gRPC's status codes that matter here, by their numbers in the gRPC spec (etcd-client
/// does not re-export tonic's `Code`).
mod grpc {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// A failure that another try, maybe through another member, may not have: etcd not
/// reached, its answer lost, a member without a leader, etcd's own time-out.
fn is_transient(error: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match error {
        Error::TransportError(_) | Error::IoError(_) => true,
        Error::GRpcStatus(status) => matches!(
            status.code() as i32,
            // Connections refused or lost, HTTP/2 errors, members without a leader,
            // etcd's "request timed out"; not its refusals of the request itself.
            grpc::UNAVAILABLE
                | grpc::UNKNOWN
                | grpc::INTERNAL
                | grpc::CANCELLED
                | grpc::DEADLINE_EXCEEDED
        ),
        _ => false,
    }
}

/// A failure of a request that etcd cannot have received: connecting to the member
/// failed (refused, reset, timed out: tonic reports these as `Unavailable` with
/// hyper-util's "tcp connect error"; a refusal shows only when connecting); hyper
/// cancelled the request before handing it to HTTP/2 (its HTTP/2 client cancels only
/// requests it never sent: "connection closed", "connection was not ready"); or the
/// member turned it away before handling it because it has no leader (etcd's
/// require-leader check comes before anything else). Any other failure, a connection
/// lost mid-request included, may come after etcd applied a write.
fn is_unsent(error: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return false;
    };
    let code = status.code() as i32;
    if code == grpc::UNAVAILABLE
        && (status.message() == "etcdserver: no leader"
            || status.message().starts_with("tcp connect error"))
    {
        return true;
    }
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(error) = cause {
        let refused = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
        let never_sent = error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled);
        if refused || never_sent {
            return true;
        }
        cause = error.source();
    }
    false
}

/// etcd's answer to a read or compaction below its compaction revision.
fn is_compacted(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("required revision has been compacted"))
}

/// etcd's answer to a read at a revision it has not reached.
fn is_future_revision(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("required revision is a future revision"))
}

fn revision(etcd: i64) -> Revision {
    etcd.max(0) as Revision
}

fn etcd_revision(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// The first key after every key starting with `prefix`.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: etcd's "to the end of the key space".
    vec![0]
}

/// A throwaway single-member etcd on free loopback ports, for tests and benchmarks: the
/// `etcd` binary from PATH (Debian: `apt-get install etcd-server`), its data and log in a
/// directory the caller owns. Killed, by its pid, when dropped (a process that is itself
/// killed with SIGKILL leaves it running).
pub struct LocalEtcd {
    cluster: LocalEtcdCluster,
    url: String,
}

impl LocalEtcd {
    /// Starts `etcd` from PATH with its data in `dir`, and waits until it is healthy.
    pub fn start(dir: &Path) -> Result<LocalEtcd, StoreError> {
        Self::start_binary(Path::new("etcd"), dir)
    }

    /// Starts the etcd binary at `binary` (a path, or a name looked up in PATH).
    pub fn start_binary(binary: &Path, dir: &Path) -> Result<LocalEtcd, StoreError> {
        let cluster = LocalEtcdCluster::start_binary(binary, dir, 1)?;
        let url = cluster.url(0);
        Ok(LocalEtcd { cluster, url })
    }

    /// Its client URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.cluster.pid(0).expect("a LocalEtcd runs until dropped")
    }
}

/// A throwaway etcd cluster of one or more members on free loopback ports, for tests of
/// what the store does when members die: like [`LocalEtcd`], and each member can be
/// killed (SIGKILL) and started again on its data and ports. Every member still running
/// is killed, by its pid, when dropped.
pub struct LocalEtcdCluster {
    binary: PathBuf,
    members: Vec<LocalMember>,
    /// With [`LocalEtcdCluster::start_tls`]: the files of its TLS.
    tls: Option<LocalTls>,
}

/// The certificates of a [`LocalEtcdCluster`] served over TLS, as PEM files in its
/// directory: a CA of its own, the members' serving certificate (for 127.0.0.1), and a
/// client certificate, which the members require.
#[derive(Clone, Debug)]
pub struct LocalTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl LocalTls {
    /// Makes the CA and certificates in `dir`.
    fn generate(dir: &Path) -> Result<LocalTls, StoreError> {
        let failed = |e: crate::pki::PkiError| StoreError::Backend(format!("etcd's TLS: {e}"));
        let ca = crate::pki::ClusterCa::generate().map_err(failed)?;
        let server = ca
            .issue_server("etcd", &["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(failed)?;
        let client = ca.issue_client("skiff-apiserver").map_err(failed)?;
        let tls = LocalTls {
            ca: dir.join("etcd-ca.crt"),
            server_cert: dir.join("etcd-server.crt"),
            server_key: dir.join("etcd-server.key"),
            client_cert: dir.join("etcd-client.crt"),
            client_key: dir.join("etcd-client.key"),
        };
        for (path, pem) in [
            (&tls.ca, ca.cert_pem()),
            (&tls.server_cert, &server.cert_pem),
            (&tls.server_key, &server.key_pem),
            (&tls.client_cert, &client.cert_pem),
            (&tls.client_key, &client.key_pem),
        ] {
            std::fs::write(path, pem)
                .map_err(|e| io_failed(format_args!("writing {}", path.display()), e))?;
        }
        Ok(tls)
    }

    /// What a store needs to connect: the CA and the client certificate.
    pub fn client(&self) -> Result<EtcdTls, StoreError> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| io_failed(format_args!("reading {}", path.display()), e))
        };
        Ok(EtcdTls {
            ca_pem: read(&self.ca)?,
            identity: Some((read(&self.client_cert)?, read(&self.client_key)?)),
        })
    }
}

/// One member of a [`LocalEtcdCluster`].
struct LocalMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Where etcd answers `/health` in plain HTTP, whatever its client URLs speak.
    metrics_port: u16,
    /// `https` when the cluster serves TLS.
    scheme: &'static str,
    data: PathBuf,
    /// etcd's log, appended to by every start of the member.
    log: PathBuf,
    /// The process, while it runs.
    child: Option<Child>,
}

impl LocalMember {
    fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

impl LocalEtcdCluster {
    /// How long a cluster, or a member started again, has to become healthy.
    const START_DEADLINE: Duration = Duration::from_secs(30);
    /// Tries with new ports when another process took one between our pick and etcd's bind.
    const START_TRIES: usize = 5;

    /// Starts `size` members of `etcd` from PATH with their data in `dir`, and waits until
    /// every one is healthy (has a leader and answers a quorum read).
    pub fn start(dir: &Path, size: usize) -> Result<LocalEtcdCluster, StoreError> {
        Self::start_binary(Path::new("etcd"), dir, size)
    }

    /// Starts the etcd binary at `binary` (a path, or a name looked up in PATH).
    pub fn start_binary(
        binary: &Path,
        dir: &Path,
        size: usize,
    ) -> Result<LocalEtcdCluster, StoreError> {
        Self::start_inner(binary, dir, size, false)
    }

    /// [`LocalEtcdCluster::start`], serving clients over TLS only, with certificates
    /// made for it ([`LocalEtcdCluster::tls`]) and client certificates required.
    pub fn start_tls(dir: &Path, size: usize) -> Result<LocalEtcdCluster, StoreError> {
        Self::start_inner(Path::new("etcd"), dir, size, true)
    }

    fn start_inner(
        binary: &Path,
        dir: &Path,
        size: usize,
        tls: bool,
    ) -> Result<LocalEtcdCluster, StoreError> {
        if size == 0 {
            return Err(StoreError::Backend("an etcd cluster needs a member".into()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| io_failed(format_args!("creating {}", dir.display()), e))?;
        let tls = if tls {
            Some(LocalTls::generate(dir)?)
        } else {
            None
        };
        let mut last_failure = String::new();
        for attempt in 0..Self::START_TRIES {
            let ports = free_ports(3 * size)?;
            let members = (0..size)
                .map(|i| LocalMember {
                    name: format!("m{i}"),
                    client_port: ports[3 * i],
                    peer_port: ports[3 * i + 1],
                    metrics_port: ports[3 * i + 2],
                    scheme: if tls.is_some() { "https" } else { "http" },
                    data: dir.join(format!("etcd-{attempt}-m{i}")),
                    log: dir.join(format!("etcd-{attempt}-m{i}.log")),
                    child: None,
                })
                .collect();
            let mut cluster = LocalEtcdCluster {
                binary: binary.to_path_buf(),
                members,
                tls: tls.clone(),
            };
            for i in 0..size {
                cluster.spawn(i, "new")?;
            }
            match cluster.wait_healthy() {
                Ok(()) => return Ok(cluster),
                Err(failure) => {
                    last_failure = format!("{failure}{}", cluster.logs());
                    let port_taken = last_failure.contains("address already in use");
                    drop(cluster);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(StoreError::Backend(format!(
            "etcd ({}) did not start: {last_failure}",
            binary.display()
        )))
    }

    /// The certificates of a cluster started with [`LocalEtcdCluster::start_tls`].
    pub fn tls(&self) -> Option<&LocalTls> {
        self.tls.as_ref()
    }

    /// Every member's client URL, in member order: what the store connects to.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(LocalMember::url).collect()
    }

    /// Member `i`'s client URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self, i: usize) -> String {
        self.members[i].url()
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Kills member `i` with SIGKILL, as a crash would, and reaps it. Its data and ports
    /// stay for [`LocalEtcdCluster::restart`]. Nothing happens if it is not running.
    pub fn kill(&mut self, i: usize) -> Result<(), StoreError> {
        let member = &mut self.members[i];
        if let Some(mut child) = member.child.take() {
            // `Child::kill` is SIGKILL on unix, sent to this pid.
            child
                .kill()
                .and_then(|()| child.wait().map(drop))
                .map_err(|e| io_failed(format_args!("killing etcd member {}", member.name), e))?;
        }
        Ok(())
    }

    /// Starts member `i` again after [`LocalEtcdCluster::kill`], on its data and ports,
    /// and waits until every running member is healthy.
    pub fn restart(&mut self, i: usize) -> Result<(), StoreError> {
        if self.members[i].child.is_some() {
            return Err(StoreError::Backend(format!(
                "etcd member {} is running",
                self.members[i].name
            )));
        }
        self.spawn(i, "existing")?;
        self.wait_healthy().map_err(|failure| {
            StoreError::Backend(format!(
                "etcd member {} did not come back: {failure}{}",
                self.members[i].name,
                self.logs()
            ))
        })
    }

    /// Starts member `i`'s process; `state` is etcd's `--initial-cluster-state`.
    fn spawn(&mut self, i: usize, state: &str) -> Result<(), StoreError> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let binary = &self.binary;
        let member = &mut self.members[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(|e| io_failed(format_args!("opening {}", member.log.display()), e))?;
        let (url, peer_url) = (member.url(), member.peer_url());
        let mut command = Command::new(binary);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", member.data.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                member.metrics_port
            ))
            .args(["--logger=zap", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::Backend(format!(
                    "the etcd binary {} was not found: install it with \
                     `apt-get install etcd-server` (Debian's package; .ci/run installs it)",
                    binary.display()
                )),
                _ => io_failed(format_args!("starting {}", binary.display()), e),
            })?;
        member.child = Some(child);
        Ok(())
    }

    /// Polls each running member's `/health` until all say so; fails if a process exits
    /// first or the deadline passes. Nothing could wake us instead: etcd is another process.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Self::START_DEADLINE;
        let mut healthy = vec![false; self.members.len()];
        loop {
            for (member, healthy) in self.members.iter_mut().zip(&mut healthy) {
                let Some(child) = member.child.as_mut() else {
                    *healthy = true;
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    member.child = None;
                    return Err(format!("etcd member {} exited ({status})", member.name));
                }
                let address = SocketAddr::from((Ipv4Addr::LOCALHOST, member.metrics_port));
                *healthy = *healthy
                    || health(address).is_some_and(|body| body.contains(r#""health":"true""#));
            }
            if healthy.iter().all(|h| *h) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let names: Vec<_> = self
                    .members
                    .iter()
                    .zip(&healthy)
                    .filter(|(_, healthy)| !**healthy)
                    .map(|(member, _)| member.name.as_str())
                    .collect();
                return Err(format!(
                    "etcd members {} were not healthy within {:?}",
                    names.join(", "),
                    Self::START_DEADLINE
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of every member's log, for an error message.
    fn logs(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            text.push_str(&format!(
                "\nthe end of member {}'s log ({}):\n{}",
                member.name,
                member.log.display(),
                tail(&log, 2000)
            ));
        }
        text
    }
}

impl Drop for LocalEtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn io_failed(step: impl Display, error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{step}: {error}"))
}

/// The body of etcd's `GET /health` at `address`, if it answered.
fn health(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// `count` different loopback ports free now; the caller binds them soon after (and
/// retries if it lost one). All are held until all are found, so none comes twice.
fn free_ports(count: usize) -> Result<Vec<u16>, StoreError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_failed("finding free loopback ports", e))?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| io_failed("finding free loopback ports", e))
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh etcd for one test; the error says how to install etcd when it is missing.
    fn local_etcd() -> (LocalEtcd, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let etcd = LocalEtcd::start(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (etcd, dir)
    }

    #[tokio::test]
    async fn etcd_store_passes_the_conformance_suite() {
        let (etcd, _dir) = local_etcd();
        let url = etcd.url().to_string();
        let next = AtomicU64::new(0);
        // One etcd, a prefix of its own for each check; the checks run one at a time, so
        // each sees only its own writes advance etcd's revision.
        super::super::conformance::run_all(|| {
            let prefix = format!("/conformance-{}", next.fetch_add(1, Ordering::SeqCst));
            let url = url.clone();
            async move {
                let store = EtcdStore::connect(&[url], &prefix)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                (Box::new(store) as Box<dyn Store>, ())
            }
        })
        .await;
    }

    #[test]
    fn range_ends_past_every_key_with_the_prefix() {
        assert_eq!(range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn a_missing_etcd_binary_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = LocalEtcd::start_binary(Path::new("/nonexistent/etcd"), dir.path())
            .err()
            .expect("no etcd at that path");
        assert!(
            error.to_string().contains("apt-get install etcd-server"),
            "{error}"
        );
    }
}
