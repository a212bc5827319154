//! `skiff migrate`: moves a single-machine cluster (a `skiff server` data dir on sled)
//! into etcd, so that servers started with `--etcd` serve the same cluster: the same
//! objects (uids, creation timestamps, and the ClusterIP, NodePort and pod-range
//! allocations, which are store keys too) and the same credentials (the cluster CA, the
//! admin token of the kubeconfig, the key nodes' credentials derive from).
//!
//! The copy is a key-by-key copy of the store, values as they are: a stored object has no
//! `resourceVersion` (the API server sets it from the key's revision on every read), so
//! objects read from etcd carry etcd's revisions. Before copying, etcd's revision is
//! pushed past the sled store's, so every copied object gets a resourceVersion newer
//! than any the old server handed out: an update naming an old one is refused (409),
//! never mistaken for a current one. After copying, etcd's history is compacted, so a
//! watch resuming from an old resourceVersion gets 410 Gone and lists afresh instead of
//! waiting for revisions etcd has not reached, or replaying the copy.
//!
//! The sled store is only read: the old data dir still serves the cluster as it was,
//! for going back.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use skiff_control_plane::apiserver::error::ApiError;
use skiff_control_plane::apiserver::modules::Modules;
use skiff_control_plane::store::sled::SledStore;
use skiff_control_plane::store::{KeyValue, ListOptions, Revision, Store, StoreError};

use crate::secrets::{self, ClusterSecrets};

/// Options of `skiff migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The data dir of the `skiff server` to migrate (its `--data-dir`), which must not be
    /// running. Only read: it still serves the cluster as it was, to go back to.
    #[arg(long, value_name = "DIR")]
    pub from_sled: PathBuf,
    /// The client URLs of the etcd cluster to migrate into.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        required = true,
        value_delimiter = ','
    )]
    pub to_etcd: Vec<String>,
    /// The etcd key prefix to put the cluster under, which must hold no keys: the
    /// `--etcd-prefix` the servers on etcd will be started with.
    #[arg(long, value_name = "PREFIX", default_value = "/skiff")]
    pub etcd_prefix: String,
    #[command(flatten)]
    pub etcd_tls: crate::server::EtcdTlsArgs,
}

/// Keys read from a store at once.
const PAGE: usize = 500;
/// Writes to etcd in flight at once: etcd commits concurrent writes together.
const IN_FLIGHT: usize = 32;
/// How often a long step reports how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Where the writes that advance etcd's revision go; no API path reaches `/_...` keys.
const SCRATCH: &str = "/_migrate/revision";
/// Keys written to at once while advancing the revision.
const SCRATCH_KEYS: usize = 64;
/// Revisions written between two compactions while advancing the revision, which keep
/// etcd from keeping all of them.
const COMPACT_EVERY: Revision = 100_000;

pub async fn run(args: MigrateArgs) -> Result<()> {
    let started = Instant::now();
    let source = Source::open(&args.from_sled)?;
    let target = connect(&args).await?;
    let etcd = format!(
        "etcd at {} under {}",
        args.to_etcd.join(","),
        args.etcd_prefix
    );
    ensure_empty(&*target, &args).await?;

    let census = census(&source.store).await?;
    let old_revision = source
        .store
        .current_revision()
        .await
        .context("reading the sled store's revision")?;
    eprintln!(
        "migrating {} keys ({}) from {} to {etcd}",
        census.keys,
        size(census.bytes),
        source.store_dir.display()
    );
    advance_revision(&*target, old_revision).await?;
    let copied = copy(&source.store, &*target, census).await?;
    let verified = verify(&source.store, &*target)
        .await
        .with_context(|| format!("verifying the copy in {etcd}"))?;
    forget_history(&*target).await?;
    let modules = copy_modules(&args.from_sled.join("modules"), &*target).await?;
    publish(&source.secrets, &*target).await?;
    let seconds = started.elapsed().as_secs_f64();

    println!(
        "migrated {} keys ({}) from {} to {etcd} in {seconds:.1} s; etcd holds the same {verified} keys",
        copied.keys,
        size(copied.bytes),
        source.store_dir.display(),
    );
    println!(
        "the cluster's CA, admin token and node key are in etcd too: kubeconfigs and nodes keep working"
    );
    println!("next, start the cluster's servers on etcd, each with a data dir of its own:");
    let prefix = if args.etcd_prefix == "/skiff" {
        String::new()
    } else {
        format!(" --etcd-prefix {}", args.etcd_prefix)
    };
    println!(
        "  skiff server --etcd {}{prefix} --data-dir NEWDIR",
        args.to_etcd.join(",")
    );
    if modules > 0 {
        println!("{modules} pushed modules are in etcd too, with their tags");
    }
    println!(
        "{} is unchanged: `skiff server --data-dir {}` still serves the cluster as it was",
        args.from_sled.display(),
        args.from_sled.display()
    );
    Ok(())
}

/// The cluster being migrated: its sled store, opened (and so locked against a server),
/// and its secrets.
struct Source {
    store_dir: PathBuf,
    store: SledStore,
    secrets: ClusterSecrets,
}

impl Source {
    fn open(dir: &Path) -> Result<Source> {
        let store_dir = dir.join("store");
        // Opening would make an empty store where there is none.
        if !store_dir.join("db").is_file() {
            bail!(
                "--from-sled {}: no sled store there ({} is missing): name the --data-dir of a \
                 `skiff server` that ran without --etcd",
                dir.display(),
                store_dir.join("db").display()
            );
        }
        let store = SledStore::open(&store_dir).map_err(|error| {
            if error.to_string().contains("could not acquire lock") {
                anyhow!(
                    "--from-sled {}: the store is in use, most likely by a running `skiff server`: \
                     stop the server first (what it wrote after the copy would be lost)",
                    dir.display()
                )
            } else {
                anyhow!(error).context(format!(
                    "--from-sled {}: opening the store in {}",
                    dir.display(),
                    store_dir.display()
                ))
            }
        })?;
        let secrets = ClusterSecrets::read_dir(dir)
            .with_context(|| {
                format!(
                    "--from-sled {}: reading the cluster's credentials",
                    dir.display()
                )
            })?
            .ok_or_else(|| {
                anyhow!(
                    "--from-sled {}: the cluster's credentials there are incomplete (pki/ca.*, \
                     pki/apiserver-client-ca.*, pki/node.key, and kubeconfig with \
                     admin-token.sha256): start `skiff server --data-dir {}` once to complete \
                     them, stop it, and migrate again",
                    dir.display(),
                    dir.display()
                )
            })?;
        Ok(Source {
            store_dir,
            store,
            secrets,
        })
    }
}

async fn connect(args: &MigrateArgs) -> Result<Arc<dyn Store>> {
    args.etcd_tls
        .connect("--to-etcd", &args.to_etcd, &args.etcd_prefix)
        .await
}

/// Copies the modules pushed to the sled server (files in its data dir) into the store,
/// where servers on etcd keep them, tags included; returns how many blobs.
async fn copy_modules(dir: &Path, target: &dyn Store) -> Result<usize> {
    let (from, to) = (Modules::Dir(dir), Modules::Store(target));
    let failed = |step: String| move |e: ApiError| anyhow!("{step}: {}", e.message);
    let digests = from
        .blobs()
        .await
        .map_err(failed(format!("listing the modules in {}", dir.display())))?;
    for digest in &digests {
        let bytes = from
            .blob(digest)
            .await
            .map_err(failed(format!("reading module sha256:{digest}")))?
            .ok_or_else(|| anyhow!("module sha256:{digest} vanished from {}", dir.display()))?;
        let kept = to
            .keep(&bytes)
            .await
            .map_err(failed(format!("copying module sha256:{digest}")))?;
        if &kept != digest {
            bail!(
                "{}: the module file sha256:{digest} holds sha256:{kept}: it is damaged",
                dir.display()
            );
        }
    }
    for (name, tag, digest) in from.tags().await.map_err(failed(format!(
        "listing the module tags in {}",
        dir.display()
    )))? {
        let digest = digest.trim_start_matches("sha256:");
        to.tag(&name, &tag, digest)
            .await
            .map_err(failed(format!("copying the tag {name}:{tag}")))?;
    }
    if !digests.is_empty() {
        eprintln!("copied {} pushed modules with their tags", digests.len());
    }
    Ok(digests.len())
}

/// Refuses a prefix that holds keys: another cluster's, or a failed migration's.
async fn ensure_empty(target: &dyn Store, args: &MigrateArgs) -> Result<()> {
    let listing = target
        .list(
            "",
            ListOptions {
                limit: Some(1),
                ..ListOptions::default()
            },
        )
        .await
        .context("--to-etcd: listing the keys under --etcd-prefix")?;
    if let Some(kv) = listing.items.first() {
        bail!(
            "--etcd-prefix {prefix}: etcd at {urls} already holds keys under it ({key}, ...): \
             a cluster is migrated into an empty prefix. Pick another --etcd-prefix; or, if they \
             are what a failed migration left, remove them with `etcdctl --endpoints {urls} del \
             --prefix {prefix}/` and migrate again",
            prefix = args.etcd_prefix.trim_end_matches('/'),
            urls = args.to_etcd.join(","),
            key = kv.key,
        );
    }
    Ok(())
}

/// How many keys, and bytes of keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Census {
    keys: u64,
    bytes: u64,
}

impl Census {
    fn add(&mut self, key: &str, value: &[u8]) {
        self.keys += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }
}

/// A store's keys, a page at a time, in order.
struct Pages<'a> {
    store: &'a dyn Store,
    after: Option<String>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a dyn Store) -> Pages<'a> {
        Pages {
            store,
            after: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<(Vec<KeyValue>, bool)>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.list("", self.options()).await?;
        self.done = !page.more;
        self.after = page.items.last().map(|kv| kv.key.clone());
        Ok(Some((page.items, page.more)))
    }

    fn options(&self) -> ListOptions {
        ListOptions {
            start_after: self.after.clone(),
            limit: Some(PAGE),
        }
    }
}

async fn census(store: &dyn Store) -> Result<Census> {
    let mut census = Census::default();
    let mut pages = Pages::new(store);
    while let Some((page, _)) = pages.next().await.context("reading the sled store")? {
        for kv in &page {
            census.add(&kv.key, &kv.value);
        }
    }
    Ok(census)
}

/// Lines on stderr while a long step runs, at most one every [`PROGRESS_EVERY`].
struct Progress {
    started: Instant,
    shown: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            shown: Instant::now(),
        }
    }

    /// Shows `line(seconds since the start)` if the last line is old enough.
    fn tick(&mut self, line: impl FnOnce(f64) -> String) {
        if self.shown.elapsed() >= PROGRESS_EVERY {
            eprintln!("{}", line(self.started.elapsed().as_secs_f64()));
            self.shown = Instant::now();
        }
    }
}

/// Writes until `target`'s revision is past `past`, so that every key written next has a
/// revision, and so an object a resourceVersion, that `past`'s store never handed out.
/// A revision is taken per write, so this takes as many writes as the gap: spread over
/// [`SCRATCH_KEYS`] keys written at once, with compactions on the way.
async fn advance_revision(target: &dyn Store, past: Revision) -> Result<()> {
    let step = "advancing the etcd revision past the sled store's";
    let start = target.current_revision().await.context(step)?;
    if start > past {
        return Ok(());
    }
    eprintln!(
        "{step}: from {start} to {past}, so that no resourceVersion the old server handed out \
         names an object in etcd"
    );
    let progress = Mutex::new(Progress::new());
    let report = |revision: Revision| {
        progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .tick(|seconds| {
                let rate = (revision - start) as f64 / seconds;
                format!("  at revision {revision} of {past}, {rate:.0} a second")
            });
    };
    let mut scratch = Vec::with_capacity(SCRATCH_KEYS);
    for i in 0..SCRATCH_KEYS {
        let kv = target
            .create(&format!("{SCRATCH}/{i}"), Bytes::new())
            .await
            .context(step)?;
        scratch.push(kv);
    }
    let mut reached = target.current_revision().await.context(step)?;
    while reached <= past {
        let goal = past.min(reached + COMPACT_EVERY);
        let writers = scratch
            .into_iter()
            .map(|kv| write_until(target, kv, goal, &report));
        scratch = futures::future::try_join_all(writers).await.context(step)?;
        reached = scratch
            .iter()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(goal + 1);
        target.compact(reached).await.context(step)?;
    }
    for kv in &scratch {
        target.delete(&kv.key, None).await.context(step)?;
    }
    Ok(())
}

/// Rewrites `kv` until its revision is past `goal`; returns it as last written.
async fn write_until(
    target: &dyn Store,
    mut kv: KeyValue,
    goal: Revision,
    report: &(dyn Fn(Revision) + Sync),
) -> Result<KeyValue, StoreError> {
    while kv.mod_revision <= goal {
        kv = target
            .update(&kv.key, Bytes::new(), kv.mod_revision)
            .await?;
        report(kv.mod_revision);
    }
    Ok(kv)
}

/// Creates every key of `source` in `target`, with its value.
async fn copy(source: &dyn Store, target: &dyn Store, total: Census) -> Result<Census> {
    let mut copied = Census::default();
    let mut progress = Progress::new();
    let mut pages = Pages::new(source);
    while let Some((page, _)) = pages.next().await.context("reading the sled store")? {
        let mut writes = futures::stream::iter(page.into_iter().map(|kv| async move {
            match target.create(&kv.key, kv.value.clone()).await {
                Ok(_) => Ok(kv),
                Err(error) => Err(anyhow!(error).context(format!("copying {}", kv.key))),
            }
        }))
        .buffer_unordered(IN_FLIGHT);
        while let Some(kv) = writes.next().await {
            let kv = kv?;
            copied.add(&kv.key, &kv.value);
            progress.tick(|seconds| {
                format!(
                    "  copied {} of {} keys ({} of {}), {:.0} keys a second",
                    copied.keys,
                    total.keys,
                    size(copied.bytes),
                    size(total.bytes),
                    copied.keys as f64 / seconds
                )
            });
        }
    }
    Ok(copied)
}

/// Checks that `target` holds exactly `source`'s keys and values; returns how many.
async fn verify(source: &dyn Store, target: &dyn Store) -> Result<u64> {
    let mut count = 0;
    let mut pages = Pages::new(source);
    loop {
        // The same page of both, by the same bounds: equal if the stores are.
        let options = pages.options();
        let Some((ours, more)) = pages.next().await.context("reading the sled store")? else {
            break;
        };
        let theirs = target.list("", options).await.context("reading etcd")?;
        for (i, kv) in ours.iter().enumerate() {
            let Some(copy) = theirs.items.get(i) else {
                bail!("{} is missing", kv.key);
            };
            if copy.key != kv.key {
                let (first, missing) = if copy.key < kv.key {
                    (&copy.key, "is not in the sled store")
                } else {
                    (&kv.key, "is missing")
                };
                bail!("{first} {missing}");
            }
            if copy.value != kv.value {
                bail!("{} has another value than in the sled store", kv.key);
            }
        }
        if theirs.items.len() > ours.len() || (theirs.more && !more) {
            let extra = theirs
                .items
                .get(ours.len())
                .map_or("a key past the last", |kv| kv.key.as_str());
            bail!("{extra} is not in the sled store");
        }
        count += ours.len() as u64;
    }
    Ok(count)
}

/// Compacts `target` at its current revision: a watch resuming from a resourceVersion of
/// before the migration is told it is too old (410) and lists afresh.
/// (etcd's history is the whole etcd's: watchers of other clusters on it list afresh too,
/// as after any compaction an API server makes.)
async fn forget_history(target: &dyn Store) -> Result<()> {
    let step = "compacting the etcd history of the migration";
    let revision = target.current_revision().await.context(step)?;
    target.compact(revision).await.context(step)
}

/// Puts the cluster's secrets in `target`, where servers on it read them.
async fn publish(secrets: &ClusterSecrets, target: &dyn Store) -> Result<()> {
    if secrets.publish(target).await? {
        return Ok(());
    }
    // The sled store held secrets of its own (copied with the rest): fine if they are the
    // data dir's.
    let kept = ClusterSecrets::read_store(target)
        .await?
        .context("the cluster's secrets vanished from etcd while being read")?;
    if kept.admin_token != secrets.admin_token || kept.ca.cert_pem() != secrets.ca.cert_pem() {
        bail!(
            "the sled store holds other cluster secrets ({}) than its data dir: servers on etcd \
             would not accept the data dir's kubeconfig",
            secrets::STORE_KEY
        );
    }
    Ok(())
}

/// `bytes` for people: `12.3 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sled(dir: &Path) -> SledStore {
        SledStore::open(dir).unwrap()
    }

    async fn keys(store: &dyn Store) -> Vec<(String, Bytes)> {
        let listing = store.list("", ListOptions::default()).await.unwrap();
        listing
            .items
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    }

    fn message(result: Result<impl Sized>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn a_dir_without_a_store_is_refused_without_making_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = message(Source::open(dir.path()));
        assert!(error.contains("--from-sled"), "{error}");
        assert!(error.contains("no sled store"), "{error}");
        assert!(!dir.path().join("store").exists(), "nothing was made");
    }

    #[test]
    fn a_store_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _server = sled(&dir.path().join("store"));
        let error = message(Source::open(dir.path()));
        assert!(error.contains("--from-sled"), "{error}");
        assert!(error.contains("stop the server first"), "{error}");
    }

    #[test]
    fn a_store_without_its_credentials_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(sled(&dir.path().join("store")));
        let error = message(Source::open(dir.path()));
        assert!(
            error.contains("credentials there are incomplete"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_prefix_holding_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = sled(dir.path());
        let args = MigrateArgs {
            from_sled: "old".into(),
            to_etcd: vec!["http://etcd:2379".into()],
            etcd_prefix: "/skiff".into(),
            etcd_tls: Default::default(),
        };
        ensure_empty(&target, &args).await.unwrap();
        target
            .create("/core/namespaces/a", Bytes::new())
            .await
            .unwrap();
        let error = message(ensure_empty(&target, &args).await);
        assert!(error.contains("--etcd-prefix /skiff"), "{error}");
        assert!(error.contains("already holds keys"), "{error}");
        assert!(error.contains("/core/namespaces/a"), "{error}");
    }

    #[tokio::test]
    async fn the_copy_has_every_key_and_newer_revisions() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (sled(dirs.0.path()), sled(dirs.1.path()));
        // More than a page of keys, some rewritten, so the source's revision is ahead.
        for i in 0..(PAGE + 7) {
            let key = format!("/core/configmaps/default/c{i:04}");
            let kv = source
                .create(&key, Bytes::from(format!("v{i}")))
                .await
                .unwrap();
            source
                .update(&key, Bytes::from(format!("w{i}")), kv.mod_revision)
                .await
                .unwrap();
        }
        source
            .create("/_alloc/ip/10.96.0.1", Bytes::new())
            .await
            .unwrap();
        let past = source.current_revision().await.unwrap();

        advance_revision(&target, past).await.unwrap();
        let total = census(&source).await.unwrap();
        let copied = copy(&source, &target, total).await.unwrap();
        assert_eq!(copied, total);
        assert_eq!(copied.keys, PAGE as u64 + 8);
        assert_eq!(verify(&source, &target).await.unwrap(), copied.keys);
        assert_eq!(keys(&target).await, keys(&source).await);
        let oldest = target.list("", ListOptions::default()).await.unwrap().items;
        assert!(
            oldest.iter().all(|kv| kv.mod_revision > past),
            "every copied key is newer than the source's revision {past}"
        );

        forget_history(&target).await.unwrap();
        let compacted = target.compacted_revision().await.unwrap();
        assert!(compacted > past, "{compacted} > {past}");
        assert!(matches!(
            target.watch("", past).await.err(),
            Some(StoreError::Compacted { .. })
        ));
    }

    #[tokio::test]
    async fn verification_finds_a_missing_an_extra_and_a_changed_key() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (source, target) = (sled(dirs.0.path()), sled(dirs.1.path()));
        for key in ["/a", "/b", "/c"] {
            source.create(key, Bytes::from_static(b"x")).await.unwrap();
        }
        for key in ["/a", "/c"] {
            target.create(key, Bytes::from_static(b"x")).await.unwrap();
        }
        assert!(message(verify(&source, &target).await).contains("/b is missing"));
        let b = target.create("/b", Bytes::from_static(b"y")).await.unwrap();
        assert!(message(verify(&source, &target).await).contains("/b has another value"));
        target
            .update("/b", Bytes::from_static(b"x"), b.mod_revision)
            .await
            .unwrap();
        assert_eq!(verify(&source, &target).await.unwrap(), 3);
        target.create("/d", Bytes::new()).await.unwrap();
        assert!(message(verify(&source, &target).await).contains("/d is not in the sled store"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }
}
