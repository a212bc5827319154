//! `skiff controller-manager`: the controllers in a process of their own, leader-elected
//! among every controller manager and `skiff server` of the cluster.

use anyhow::{Context, Result};
use skiff_control_plane::controllers::ControllerConfig;

#[derive(clap::Args, Debug)]
pub struct ControllerManagerArgs {
    /// The API server's URL.
    #[arg(long)]
    pub server: String,
    /// A token allowed to manage the cluster's objects (the admin token, for now).
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: String,
    /// This instance's name in the leader election (default: host name and a random suffix).
    #[arg(long)]
    pub identity: Option<String>,
}

pub async fn run(args: ControllerManagerArgs) -> Result<()> {
    let mut config = skiff_client::Config::new(&args.server).context("--server")?;
    config.token = Some(args.token);
    let client = skiff_client::Client::new(config)?;
    let mut controllers = ControllerConfig::default();
    if let (Some(identity), Some(election)) = (args.identity, controllers.leader_election.as_mut())
    {
        election.identity = identity;
    }
    tracing::info!("controller manager started; waiting to lead");
    tokio::select! {
        () = skiff_control_plane::controllers::run(client, controllers) => {}
        () = crate::shutdown_signal() => tracing::info!("controller manager stopping"),
    }
    Ok(())
}
