use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use password_rotator::controller::{self, Settings};
use password_rotator::http::{self, Health};
use password_rotator::leader::LeaderElection;
use password_rotator::metrics::Metrics;
use password_rotator::shard;
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
    /// Print the CustomResourceDefinitions (PasswordRotation, RotationTarget,
    /// ClusterRotationTarget) as YAML, or write each into a directory.
    Crd {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the RotationTargets and v1alpha2 PasswordRotations that replace v1alpha1
    /// PasswordRotations (`kubectl get pwrot -A -o yaml`), read from a file or stdin.
    Convert {
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Run the controller.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig file; without it, in-cluster configuration or $KUBECONFIG.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces, comma-separated or repeated (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,
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
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Act only while holding a Lease, so that several replicas can run: one leads, the
    /// others stand by.
    #[arg(long, env = "LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease (default: password-rotator, or password-rotator-<shard> with --shard).
    #[arg(long, env = "LEASE_NAME")]
    lease_name: Option<String>,
    /// Act only on the PasswordRotations whose target is labelled rotator.dev/shard=<SHARD>
    /// (default: whose target has no such label), so that several operators split them.
    #[arg(long, env = "SHARD", value_parser = shard::parse)]
    shard: Option<String>,
    /// Serve ClusterRotationTargets, whose Secrets (admin credentials, CAs) are in this
    /// namespace; without it, resources may name only RotationTargets of their own namespace.
    #[arg(long, env = "CLUSTER_TARGET_NAMESPACE")]
    cluster_target_namespace: Option<String>,
    /// How long the cleanup of a deleted resource retries a rollback that keeps failing
    /// (an unreachable target), in seconds, before it keeps the passwords as they are in the
    /// orphaned state Secret and lets the resource go.
    #[arg(long, env = "CLEANUP_TIMEOUT_SECONDS", default_value_t = 300)]
    cleanup_timeout_seconds: u64,
    /// How long a resource whose target is labelled with another shard may go without that
    /// shard's operator acting on it, in seconds, before this operator says it is unserved
    /// (Ready=False ShardUnserved); one being deleted is released after twice that.
    #[arg(long, env = "SHARD_PATIENCE_SECONDS", default_value_t = 300)]
    shard_patience_seconds: u64,
    /// Export series of each PasswordRotation (phase, conditions, last and next rotation);
    /// `false` keeps only the counts by target, phase and condition, for installs with so
    /// many resources that a Prometheus would refuse a series or more each.
    #[arg(long, env = "PER_RESOURCE_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    per_resource_metrics: bool,
    /// How long a Lease lasts without renewal, in seconds.
    #[arg(long, env = "LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Allow resources that send the admin login in clear text (`insecureHttp: true`,
    /// `insecurePlaintext: true`).
    #[arg(long, env = "ALLOW_INSECURE_HTTP")]
    allow_insecure_http: bool,
    /// Allow resources with `spec.verify`, which connect to a host the resource names and
    /// send it the new password.
    #[arg(long, env = "ALLOW_VERIFY_ENDPOINTS")]
    allow_verify_endpoints: bool,
    /// For tests only: abort at this named point, to prove what a crash there leaves.
    #[arg(long, env = "ROTATOR_FAIL_POINT", hide = true)]
    fail_point: Option<String>,
}

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> anyhow::Result<()> {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(start())
}

/// glibc's allocator gives each thread an arena of its own and keeps what a burst of
/// rotations freed in each: a live heap of 6 MiB held 34 MiB of RSS (README, Performance).
/// One arena, trimmed above 128 KiB, held 28 MiB; the reconciles are IO-bound, so the
/// lock it shares costs nothing measurable. Set before the runtime starts its threads.
fn tune_allocator() {
    #[cfg(all(target_env = "gnu", not(feature = "dhat-heap")))]
    // SAFETY: mallopt only sets allocator parameters, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// What a burst frees lies scattered through the heap, and glibc returns free pages to the
/// system only from its top unless asked: asked after each second the process was busy, the
/// resident set follows the live heap instead of its high-water mark. A trim walks the whole
/// heap (tens of milliseconds with 100,000 resources cached), so an idle process is not
/// trimmed again: once a second, that alone was 2.4% of a core.
async fn trim_allocator_now_and_then() {
    #[cfg(all(target_env = "gnu", not(feature = "dhat-heap")))]
    {
        /// CPU time spent since the last trim that makes another worth it.
        const BUSY: std::time::Duration = std::time::Duration::from_millis(20);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut after_last_trim = cpu_time();
        loop {
            every.tick().await;
            if cpu_time().saturating_sub(after_last_trim) < BUSY {
                continue;
            }
            // SAFETY: malloc_trim only gives free memory back to the system.
            unsafe {
                libc::malloc_trim(0);
            }
            after_last_trim = cpu_time();
        }
    }
}

/// The CPU time this process has used.
#[cfg(all(target_env = "gnu", not(feature = "dhat-heap")))]
fn cpu_time() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, which lives on this stack.
    unsafe {
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now);
    }
    let nanos = u32::try_from(now.tv_nsec).unwrap_or_default();
    std::time::Duration::new(u64::try_from(now.tv_sec).unwrap_or_default(), nanos)
}

async fn start() -> anyhow::Result<()> {
    // Written when main returns: after a SIGTERM, not a SIGKILL.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    match Cli::parse().command {
        Command::Crd { dir } => {
            for (file, yaml) in password_rotator::crds() {
                match &dir {
                    Some(dir) => std::fs::write(dir.join(file), yaml)?,
                    None => print!("---\n{yaml}"),
                }
            }
        }
        Command::Convert { file } => {
            let input = match file {
                Some(path) => std::fs::read_to_string(path)?,
                None => std::io::read_to_string(std::io::stdin())?,
            };
            print!("{}", password_rotator::convert::convert(&input)?);
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            tokio::spawn(trim_allocator_now_and_then());
            let config = match &args.kubeconfig {
                Some(path) => {
                    let kubeconfig = Kubeconfig::read_from(path)?;
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await?
                }
                None => Config::infer().await?,
            };
            let settings = Settings {
                namespaces: args
                    .namespace
                    .iter()
                    .filter(|ns| !ns.is_empty())
                    .cloned()
                    .collect(),
                concurrency: args.concurrency,
                request_timeout: Duration::from_secs(args.request_timeout_seconds),
                calls_per_cluster: args.calls_per_cluster.max(1),
                allow_insecure_http: args.allow_insecure_http,
                allow_verify: args.allow_verify_endpoints,
                fail_point: args.fail_point.clone(),
                shard: args.shard.clone(),
                cluster_target_namespace: args.cluster_target_namespace.clone(),
                cleanup_timeout: Duration::from_secs(args.cleanup_timeout_seconds),
                shard_patience: Duration::from_secs(args.shard_patience_seconds),
            };
            run(Client::try_from(config)?, settings, *args).await?;
        }
    }
    Ok(())
}

async fn run(client: Client, settings: Settings, args: RunArgs) -> anyhow::Result<()> {
    match &args.shard {
        Some(shard) => tracing::info!(%shard, "acting only on the targets of this shard"),
        None => tracing::info!("unsharded: acting only on the targets without a shard label"),
    }
    let metrics = Arc::new(Metrics::with_per_resource(args.per_resource_metrics));
    let health = Health::default();
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(http::serve_on(listener, metrics.clone(), health.clone()));
    let leadership = if args.leader_election {
        // Unique per process: a candidate with the holder's own identity would take over at once.
        let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "password-rotator".into());
        let identity = format!("{pod}_{}", uuid::Uuid::new_v4().simple());
        // A standby is ready, so that a rolling update of the operator never waits on it.
        health.set_ready(true);
        let lease = Duration::from_secs(args.lease_seconds.max(2));
        let lease_name =
            (args.lease_name.clone()).unwrap_or_else(|| shard::lease_name(args.shard.as_deref()));
        let election =
            LeaderElection::new(client.clone(), &args.lease_namespace, &lease_name, identity)
                .with_timing(lease, lease / 5);
        tracing::info!(lease = %lease_name, "waiting for leadership");
        let leadership = election.acquire().await?;
        tracing::info!("leading");
        Some(leadership)
    } else {
        None
    };
    let controller = controller::run(client, settings, metrics, health);
    match &leadership {
        Some(leadership) => tokio::select! {
            () = controller => {}
            () = leadership.lost() => {
                // A replica that may no longer lead must stop acting at once.
                tracing::error!("leadership lost; exiting to restart as a standby");
                std::process::exit(1);
            }
        },
        None => controller.await,
    }
    if let Some(leadership) = leadership {
        leadership.release().await?;
    }
    server.abort();
    Ok(())
}
