use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use password_rotator::controller::{self, Settings};
use password_rotator::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "password-rotator",
    version,
    about = "Rotates Redis Software passwords without downtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PasswordRotation CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file; without it, in-cluster configuration or $KUBECONFIG.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Resources reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Timeout of one Redis Software API request, in seconds.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    request_timeout_seconds: u64,
    /// Redis Software API calls in flight at once, per cluster.
    #[arg(long, env = "CALLS_PER_CLUSTER", default_value_t = 8)]
    calls_per_cluster: usize,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", password_rotator::crd_yaml()),
        Command::Run(args) => {
            telemetry::init(args.log_format);
            let config = match &args.kubeconfig {
                Some(path) => {
                    let kubeconfig = Kubeconfig::read_from(path)?;
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await?
                }
                None => Config::infer().await?,
            };
            let settings = Settings {
                namespace: args.namespace,
                concurrency: args.concurrency,
                request_timeout: Duration::from_secs(args.request_timeout_seconds),
                calls_per_cluster: args.calls_per_cluster.max(1),
            };
            controller::run(Client::try_from(config)?, settings).await;
        }
    }
    Ok(())
}
