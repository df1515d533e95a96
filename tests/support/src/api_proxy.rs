//! A TCP proxy in front of the local control plane's API server that a test can cut and
//! restore: a process whose kubeconfig points here sees the API server go away (every open
//! connection dropped, new ones closed at once) and come back, while the test's own client,
//! which talks to the API server directly, goes on.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::config::Kubeconfig;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster;

pub struct ApiProxy {
    url: String,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ApiProxy {
    /// Listens on a free loopback port and forwards to the API server, up at first.
    pub async fn start() -> anyhow::Result<ApiProxy> {
        let kubeconfig = Kubeconfig::read_from(cluster::kubeconfig_path())?;
        let server = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .context("no API server in the kubeconfig")?;
        let target = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        let (up, _) = watch::channel(true);
        let watched = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watched.borrow() {
                    continue;
                }
                let mut cut = watched.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(ApiProxy { url, up, task })
    }

    /// Writes into `dir` a kubeconfig like the control plane's that goes through the proxy.
    pub fn kubeconfig_in(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let mut kubeconfig = Kubeconfig::read_from(cluster::kubeconfig_path())?;
        for named in &mut kubeconfig.clusters {
            if let Some(cluster) = named.cluster.as_mut() {
                cluster.server = Some(self.url.clone());
            }
        }
        let path = dir.join("kubeconfig-via-proxy");
        // JSON is YAML too.
        std::fs::write(&path, serde_json::to_vec(&kubeconfig)?)?;
        Ok(path)
    }

    /// The API server is out of reach until [`Self::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
