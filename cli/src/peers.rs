//! API servers sharing a store find each other, as kube-apiservers do through their
//! identity leases: each keeps a Lease `kube-system/IDENTITY`, labelled
//! [`IDENTITY_LABEL`]`=skiff-apiserver` and annotated with the URL it serves, renewed
//! every [`RENEW_PERIOD`]. A server lists the others' leases to know every URL of the
//! cluster: its kubeconfig names them all (its own first), so clients fail over to
//! another when one dies.
//!
//! A lease not renewed for [`LEASE_DURATION`] is a server gone for good, and is deleted.
//! Telling that compares the renewer's clock with ours, unlike leader election: here a
//! mistake only lists a dead server (which clients skip) or drops a live one for a
//! renew period.

use std::time::{Duration, SystemTime};

use skiff_api::coordination::{Lease, LeaseSpec};
use skiff_api::meta::ObjectMeta;
use skiff_client::{Api, Client, DeleteParams, ListParams};

/// The label API servers' leases carry (Kubernetes' own).
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
/// The label's value for skiff's API servers.
const IDENTITY: &str = "skiff-apiserver";
/// The annotation naming the URL a server serves.
pub const URL_ANNOTATION: &str = "skiff.dev/url";
/// How often a server renews its lease and looks for the others.
pub const RENEW_PERIOD: Duration = Duration::from_secs(10);
/// How long a lease lasts unrenewed (kube-apiserver's identity leases: an hour).
pub const LEASE_DURATION: Duration = Duration::from_secs(3600);

/// Keeps this server's lease (`identity`, serving `url`) and calls `on_change` with
/// every server's URL, `url` first, at the first look and whenever the set changes.
/// Runs until dropped.
pub async fn run(
    client: Client,
    identity: String,
    url: String,
    mut on_change: impl FnMut(&[String]),
) {
    let leases = Api::<Lease>::namespaced(client, "kube-system");
    let mut known: Option<Vec<String>> = None;
    loop {
        if let Err(error) = renew(&leases, &identity, &url).await {
            tracing::warn!(%error, "renewing this API server's lease");
        }
        match servers(&leases, &url).await {
            Ok(urls) if known.as_ref() != Some(&urls) => {
                tracing::info!(servers = %urls.join(","), "the cluster's API servers");
                on_change(&urls);
                known = Some(urls);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "listing the cluster's API servers"),
        }
        tokio::time::sleep(RENEW_PERIOD).await;
    }
}

/// Creates or renews this server's lease.
async fn renew(leases: &Api<Lease>, identity: &str, url: &str) -> skiff_client::Result<()> {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let spec = LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        renew_time: Some(now),
        ..LeaseSpec::default()
    };
    match leases.get_opt(identity).await? {
        Some(mut lease) => {
            lease.spec = LeaseSpec {
                acquire_time: lease.spec.acquire_time.take(),
                ..spec
            };
            lease
                .metadata
                .annotations
                .insert(URL_ANNOTATION.into(), url.into());
            leases.replace(identity, &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(identity.to_string()),
                    labels: [(IDENTITY_LABEL.into(), IDENTITY.into())].into(),
                    annotations: [(URL_ANNOTATION.into(), url.into())].into(),
                    ..ObjectMeta::default()
                },
                spec: LeaseSpec {
                    acquire_time: spec.renew_time.clone(),
                    ..spec
                },
                ..Lease::default()
            };
            leases.create(&lease).await?;
        }
    }
    Ok(())
}

/// Every live server's URL, `own` first, the others in name order; deletes the leases
/// of servers gone for good.
async fn servers(leases: &Api<Lease>, own: &str) -> skiff_client::Result<Vec<String>> {
    let list = leases
        .list(&ListParams::labels(&format!("{IDENTITY_LABEL}={IDENTITY}")))
        .await?;
    let mut urls = vec![own.to_string()];
    for lease in list.items {
        let name = lease.metadata.name.clone().unwrap_or_default();
        if expired(&lease.spec, SystemTime::now()) {
            tracing::info!(server = %name, "forgetting an API server that stopped renewing its lease");
            if let Err(error) = leases.delete(&name, &DeleteParams::default()).await {
                tracing::debug!(%error, server = %name, "deleting an expired API server lease");
            }
            continue;
        }
        if let Some(url) = lease.metadata.annotations.get(URL_ANNOTATION)
            && !urls.contains(url)
        {
            urls.push(url.clone());
        }
    }
    Ok(urls)
}

/// Whether a lease ran out: its last renewal is older than its duration.
fn expired(spec: &LeaseSpec, now: SystemTime) -> bool {
    let Some(renewed) = spec
        .renew_time
        .as_deref()
        .and_then(|time| humantime::parse_rfc3339_weak(time).ok())
    else {
        return true;
    };
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    renewed + duration < now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed: SystemTime, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            renew_time: Some(humantime::format_rfc3339_micros(renewed).to_string()),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_runs_out_its_duration_after_its_last_renewal() {
        let now = SystemTime::now();
        assert!(!expired(&spec(now - Duration::from_secs(30), 60), now));
        assert!(expired(&spec(now - Duration::from_secs(90), 60), now));
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }
}
