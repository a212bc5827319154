//! `skiff`: run a cluster (`server`) and talk to it (`apply`, `get`, `describe`, `delete`).

/// `println!` for command output: a reader that went away (`skiff get pods | head -1`)
/// ends the program quietly with success, as with other command-line tools, instead
/// of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(error);
        }
    }};
}

/// `print!` with [`outln!`]'s handling of a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = write!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(error);
        }
    }};
}

mod api;
mod apply;
mod bench;
mod controller_manager;
mod create;
mod get;
mod kubeconfig;
mod logs;
mod manifests;
mod migrate;
mod node;
mod nodes;
mod peers;
mod portforward;
mod push;
mod resources;
mod rollout;
mod run;
mod secrets;
mod server;
mod table;
mod token;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Kubernetes for WebAssembly.
#[derive(Parser, Debug)]
#[command(name = "skiff", version, about)]
struct Cli {
    /// The kubeconfig to use (default: $KUBECONFIG, ./skiff-data/kubeconfig, ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane: API server over an embedded store.
    Server(Box<server::ServerArgs>),
    /// Copy a single-machine cluster (a server's data dir on sled) into etcd, for
    /// servers on `--etcd`.
    Migrate(migrate::MigrateArgs),
    /// Run the controllers alone, against a server (leader-elected).
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Mark a node unschedulable.
    Cordon(nodes::NodeNameArgs),
    /// Mark a node schedulable again.
    Uncordon(nodes::NodeNameArgs),
    /// Cordon a node and move its pods elsewhere.
    Drain(nodes::NodeNameArgs),
    /// Run a node agent that joins a cluster.
    Node(node::NodeArgs),
    /// Run one wasm module locally, without a cluster.
    Run(run::RunArgs),
    /// Create or update objects from manifests.
    Apply {
        /// The namespace for objects that name none.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        args: apply::ApplyArgs,
    },
    /// List objects, or show some, as a table, YAML or JSON.
    Get(get::GetArgs),
    /// Show one object in detail, with its events.
    Describe(get::DescribeArgs),
    /// Set the replicas of a Deployment or ReplicaSet.
    Scale(rollout::ScaleArgs),
    /// Change something of a Deployment's template.
    Set {
        #[command(subcommand)]
        what: SetCommand,
    },
    /// Follow a Deployment's rollout.
    Rollout {
        #[command(subcommand)]
        what: RolloutCommand,
    },
    /// Put a wasm module in the cluster's module store.
    Push(push::PushArgs),
    /// Print (or follow) the logs of a pod's container.
    Logs(logs::LogsArgs),
    /// Forward local ports to a pod's (or a Service's) ports in the pod network.
    PortForward(portforward::PortForwardArgs),
    /// Create an object from flags: `skiff create job NAME --image IMAGE`, or an API
    /// token: `skiff create token --role viewer --namespace NS`.
    Create(create::CreateArgs),
    /// Delete objects by kind and name, or those of manifests.
    Delete(get::DeleteArgs),
    /// Join tokens for new nodes: `skiff token create [--ttl 24h]`, `list`, `delete ID`.
    Token(token::TokenArgs),
    /// Measure skiff's performance.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand, Debug)]
enum SetCommand {
    /// Set container images: `skiff set image deploy/web main=web:v2`.
    Image(rollout::SetImageArgs),
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Wait for the rollout to finish, showing its progress.
    Status(rollout::RolloutStatusArgs),
    /// List the revisions, or show one revision's pod template.
    History(rollout::RolloutHistoryArgs),
    /// Go back to an earlier revision (default: the previous one).
    Undo(rollout::RolloutUndoArgs),
    /// Stop rolling out template changes (scaling still applies).
    Pause(rollout::RolloutTargetArgs),
    /// Roll out template changes again after a pause.
    Resume(rollout::RolloutTargetArgs),
    /// Replace every pod, one rollout step at a time.
    Restart(rollout::RolloutTargetArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Server(args) => server::run(*args).await.map(|()| 0),
        Command::Migrate(args) => migrate::run(args).await.map(|()| 0),
        Command::Bench(args) => bench::run(args).await.map(|()| 0),
        Command::Node(args) => node::run(args).await.map(|()| 0),
        Command::ControllerManager(args) => controller_manager::run(args).await.map(|()| 0),
        Command::Cordon(args) => {
            nodes::cordon(&api::Api::connect(cli.kubeconfig.as_deref())?, args, true).await
        }
        Command::Uncordon(args) => {
            nodes::cordon(&api::Api::connect(cli.kubeconfig.as_deref())?, args, false).await
        }
        Command::Drain(args) => {
            nodes::drain(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Run(args) => run::run(args).await.map(|code| code.clamp(0, 255) as u8),
        Command::Apply { namespace, args } => {
            apply::run(
                &api::Api::connect(cli.kubeconfig.as_deref())?,
                namespace.as_deref(),
                args,
            )
            .await
        }
        Command::Get(args) => get::get(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await,
        Command::Describe(args) => {
            get::describe(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Scale(args) => {
            rollout::scale(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Set {
            what: SetCommand::Image(args),
        } => rollout::set_image(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await,
        Command::Rollout { what } => {
            let api = api::Api::connect(cli.kubeconfig.as_deref())?;
            match what {
                RolloutCommand::Status(args) => rollout::status(&api, args).await,
                RolloutCommand::History(args) => rollout::history(&api, args).await,
                RolloutCommand::Undo(args) => rollout::undo(&api, args).await,
                RolloutCommand::Pause(args) => rollout::pause(&api, args, true).await,
                RolloutCommand::Resume(args) => rollout::pause(&api, args, false).await,
                RolloutCommand::Restart(args) => rollout::restart(&api, args).await,
            }
        }
        Command::Push(args) => {
            push::run(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Logs(args) => {
            logs::run(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::PortForward(args) => {
            let api = api::Api::connect(cli.kubeconfig.as_deref())?;
            portforward::run(&api, args).await
        }
        Command::Create(args) => {
            create::run(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Delete(args) => {
            get::delete(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
        Command::Token(args) => {
            token::run(&api::Api::connect(cli.kubeconfig.as_deref())?, args).await
        }
    }
}

/// What writing command output failing means: a closed pipe ends the program quietly;
/// anything else is reported.
pub fn stdout_failed(error: std::io::Error) {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing output: {error}");
    std::process::exit(1);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
