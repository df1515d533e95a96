//! The operator as its own process (the release binary cargo built for this bench), with
//! its peak RSS and CPU time read from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// The operator binary cargo built alongside this bench (same profile: release for
/// `cargo bench`).
pub const BINARY: &str = env!("CARGO_BIN_EXE_password-rotator");

pub struct Operator {
    child: Child,
    pid: u32,
    pub log: PathBuf,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmHWM: the peak resident set size, in KiB.
    pub peak_kib: u64,
    /// VmRSS: the resident set size now, in KiB.
    pub now_kib: u64,
}

impl Operator {
    /// `namespace: None` watches every namespace.
    pub fn spawn(
        kubeconfig: &Path,
        namespace: Option<&str>,
        calls_per_cluster: usize,
        log: PathBuf,
    ) -> Result<Operator> {
        let args: Vec<&str> = namespace
            .map(|ns| vec!["--namespace", ns])
            .unwrap_or_default();
        Operator::spawn_with(kubeconfig, &args, calls_per_cluster, log)
    }

    /// With more arguments to `run`.
    pub fn spawn_with(
        kubeconfig: &Path,
        args: &[&str],
        calls_per_cluster: usize,
        log: PathBuf,
    ) -> Result<Operator> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(BINARY);
        command
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args);
        // A heap profile (`--features dhat-heap`) lands beside the log.
        if let Some(dir) = log.parent() {
            command.current_dir(dir);
        }
        let child = command
            .env("CALLS_PER_CLUSTER", calls_per_cluster.to_string())
            .env(
                "RUST_LOG",
                std::env::var("BENCH_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube=warn,hyper=warn,reqwest=warn".into()),
            )
            .env("REQUEST_TIMEOUT_SECONDS", "10")
            // Its /metrics and probes on a free loopback port: never a fixed or public one.
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env_remove("LEADER_ELECTION")
            .env_remove("WATCH_NAMESPACE")
            .env_remove("CONCURRENCY")
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {BINARY}"))?;
        let pid = child.id().context("the operator has no pid")?;
        Ok(Operator { child, pid, log })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails if the process has exited.
    pub fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited ({status}); see {}", self.log.display());
        }
        Ok(())
    }

    pub fn memory(&self) -> Result<Memory> {
        memory_of(self.pid).context("reading the operator's /proc status")
    }

    /// utime + stime, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(") ").context("malformed stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state): utime is field 14, stime field 15.
        let utime: u64 = fields.get(11).context("no utime")?.parse()?;
        let stime: u64 = fields.get(12).context("no stime")?.parse()?;
        Ok(utime + stime)
    }

    /// Waits until the process used (almost) no CPU for `quiet` in a row: it has caught
    /// up with its watches. Returns how long that took; fails after `max`.
    pub async fn wait_quiet(&mut self, quiet: Duration, max: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut quiet_since = Instant::now();
        let mut last = self.cpu_ticks()?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.alive()?;
            let ticks = self.cpu_ticks()?;
            // 2 ticks (20 ms at 100 Hz) per 500 ms counts as idle.
            if ticks.saturating_sub(last) > 2 {
                quiet_since = Instant::now();
            }
            last = ticks;
            if quiet_since.elapsed() >= quiet {
                return Ok(start.elapsed());
            }
            if start.elapsed() > max {
                bail!("the operator was still busy after {max:?}");
            }
        }
    }

    /// SIGTERM, as Kubernetes stops a pod (a heap profile is written then), and SIGKILL if
    /// it has not exited 30 s later.
    pub async fn stop(mut self) -> Result<()> {
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if term.success()
            && tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .is_ok()
        {
            return Ok(());
        }
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("the operator did not exit within 10 s of SIGKILL")??;
        Ok(())
    }

    /// How many reconciles the operator has run, from its /metrics (its address is in its
    /// log); `None` until it serves them.
    pub async fn reconciles(&self) -> Result<Option<u64>> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let Some(addr) = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        else {
            return Ok(None);
        };
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await?
            .text()
            .await?;
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix("password_rotator_reconciles_total "))
            .context("no password_rotator_reconciles_total in /metrics")?;
        Ok(Some(count.trim().parse()?))
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// The memory of any process, from /proc/<pid>/status.
pub fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Ok(Memory {
        peak_kib: field("VmHWM:").context("no VmHWM")?,
        now_kib: field("VmRSS:").context("no VmRSS")?,
    })
}
