//! The ONTAP REST API test server as a process.
use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    path::PathBuf,
};

use anyhow::Context;
use clap::Parser;
use rotator_test_support::ontap_server::{OntapServer, OntapServerConfig, OntapTls};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "ONTAP REST API test server for account password changes")]
struct Args {
    /// OntapServerConfig as JSON.
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve this certificate (PEM, leaf first) instead of a generated self-signed one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where to write the certificate the server presents (nothing over plain HTTP).
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Where to write the server's URL.
    #[arg(long)]
    url_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let mut config: OntapServerConfig = serde_json::from_slice(
        &std::fs::read(&args.config)
            .with_context(|| format!("reading {}", args.config.display()))?,
    )
    .with_context(|| format!("parsing {}", args.config.display()))?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        config.tls = OntapTls::Pem {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        };
    }
    let server = OntapServer::start_on(config, args.listen).await?;
    if let (Some(path), Some(pem)) = (&args.ca_out, server.ca_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.url_out {
        std::fs::write(path, server.base_url())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.base_url())?;
    stdout.flush()?;

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    tracing::info!("shutting down");
    Ok(())
}
