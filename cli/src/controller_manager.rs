//! `skiff controller-manager`: the controllers in a process of their own, leader-elected
//! among every controller manager and `skiff server` of the cluster.

use std::time::Duration;

use anyhow::{Result, bail};
use skiff_control_plane::controllers::ControllerConfig;

#[derive(clap::Args, Debug)]
pub struct ControllerManagerArgs {
    /// The API server's URL; several, comma-separated (or the flag repeated), for a
    /// cluster of several API servers: the first is preferred, and when the one in use
    /// cannot be reached the client fails over to the next.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        required = true,
        value_delimiter = ','
    )]
    pub server: Vec<String>,
    /// A token allowed to manage the cluster's objects (the admin token, for now).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// The cluster CA (PEM) that signs the API server's certificate (`skiff server` writes
    /// it to DATA_DIR/pki/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<std::path::PathBuf>,
    /// This instance's name in the leader election (default: host name and a random suffix).
    #[arg(long)]
    pub identity: Option<String>,
    /// How long the lease lasts unrenewed before another instance may take over
    /// (whole seconds on the wire, rounded up).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading; shorter than
    /// the lease duration, so two instances never lead at once.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub renew_deadline: Duration,
    /// How often candidates try to take the lease and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,
}

pub async fn run(args: ControllerManagerArgs) -> Result<()> {
    if args.renew_deadline >= args.lease_duration {
        bail!("--renew-deadline must be shorter than --lease-duration");
    }
    if args.retry_period.is_zero() || args.retry_period >= args.renew_deadline {
        bail!("--retry-period must be more than zero and shorter than --renew-deadline");
    }
    let mut config = crate::kubeconfig::client_config(
        &args.server,
        &args.token,
        args.certificate_authority.as_deref(),
    )?;
    config.user_agent = crate::server::user_agent("skiff-controller-manager");
    let client = skiff_client::Client::new(config)?;
    let mut controllers = ControllerConfig::default();
    if let Some(election) = controllers.leader_election.as_mut() {
        if let Some(identity) = args.identity {
            election.identity = identity;
        }
        election.lease_duration = args.lease_duration;
        election.renew_deadline = args.renew_deadline;
        election.retry_period = args.retry_period;
    }
    tracing::info!("controller manager started; waiting to lead");
    tokio::select! {
        () = skiff_control_plane::controllers::run(client, controllers) => {}
        () = crate::shutdown_signal() => tracing::info!("controller manager stopping"),
    }
    Ok(())
}
