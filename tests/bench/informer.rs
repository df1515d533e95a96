//! The comparisons printed beside the operator's memory: a small Go controller on client-go
//! informers (tests/bench/informer/), run on the same cluster beside the same Secrets, once
//! with a full Secret informer and once with a metadata-only one; and, beside the same
//! PasswordRotations, a controller-runtime manager caching them. Its logs go to
//! `target/bench/logs/informer/<mode>.log`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rotator_test_support::cluster;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::operator::memory_of;
use crate::round;

const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
/// After the initial list, before reading RSS: lets the process settle (watch open, GC run).
const SETTLE: Duration = Duration::from_secs(5);

/// Builds (cached) and runs the Go informer comparison beside the Secrets that exist now.
pub async fn compare(kubeconfig: &Path, secrets_expected: usize) -> Result<Value> {
    compare_modes(
        kubeconfig,
        &[
            ("full", "full_secret_informer"),
            ("metadata", "metadata_informer"),
        ],
        secrets_expected,
    )
    .await
}

/// A controller-runtime manager caching the PasswordRotations that exist now.
pub async fn controller_runtime(kubeconfig: &Path, rotations_expected: usize) -> Result<Value> {
    compare_modes(
        kubeconfig,
        &[("controller-runtime", "controller_runtime_manager")],
        rotations_expected,
    )
    .await
}

/// Runs the Go program in each of `modes` (mode, key in the result) in turn.
async fn compare_modes(
    kubeconfig: &Path,
    modes: &[(&str, &str)],
    objects_expected: usize,
) -> Result<Value> {
    let dir = cluster::repo_root().join("tests/bench/informer");
    let binary = build(&dir).await?;
    let go_mod = std::fs::read_to_string(dir.join("go.mod"))
        .with_context(|| format!("reading {}", dir.join("go.mod").display()))?;
    let version_of = |module: &str| {
        go_mod
            .lines()
            .find_map(|l| l.trim().strip_prefix(module))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let client_go =
        version_of("k8s.io/client-go ").context("no k8s.io/client-go in the informer's go.mod")?;
    let go = go_version(&binary).await?;
    let log_dir = cluster::repo_root().join("target/bench/logs/informer");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

    let mut result = serde_json::Map::new();
    result.insert("client_go".to_owned(), json!(client_go));
    result.insert("go".to_owned(), json!(go));
    if modes.iter().any(|(mode, _)| *mode == "controller-runtime") {
        let version = version_of("sigs.k8s.io/controller-runtime ");
        result.insert("controller_runtime".to_owned(), json!(version));
    }
    for (mode, key) in modes {
        let log = log_dir.join(format!("{mode}.log"));
        let figures = measure(&binary, kubeconfig, mode, objects_expected, &log)
            .await
            .with_context(|| format!("the {mode} informer (log: {})", log.display()))?;
        result.insert((*key).to_owned(), figures);
    }
    Ok(Value::Object(result))
}

/// Runs build.sh, which prints the path of the (cached) binary.
async fn build(dir: &Path) -> Result<PathBuf> {
    let script = dir.join("build.sh");
    let output = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed ({})",
        script.display(),
        output.status
    );
    let path = String::from_utf8(output.stdout).context("build.sh printed no UTF-8 path")?;
    let binary = PathBuf::from(path.trim());
    ensure!(
        binary.is_file(),
        "build.sh printed {}, which is no file",
        binary.display()
    );
    Ok(binary)
}

/// The Go release the binary was built with (`go version <binary>` prints `<path>: goX.Y.Z`).
async fn go_version(binary: &Path) -> Result<String> {
    let output = Command::new("go")
        .arg("version")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running go version")?;
    ensure!(
        output.status.success(),
        "go version {} failed ({}): {}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .trim()
        .rsplit_once(": ")
        .map_or(text.trim(), |(_, version)| version);
    Ok(version.to_owned())
}

async fn measure(
    binary: &Path,
    kubeconfig: &Path,
    mode: &str,
    objects_expected: usize,
    log: &Path,
) -> Result<Value> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let start = Instant::now();
    let mut child = Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--mode", mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("the informer has no pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout pipe")?).lines();
    let line = tokio::time::timeout(SYNC_TIMEOUT, lines.next_line())
        .await
        .with_context(|| format!("not synced within {SYNC_TIMEOUT:?}"))?
        .context("reading its stdout")?;
    let sync_seconds = start.elapsed().as_secs_f64();
    let Some(line) = line else {
        let status = child.wait().await?;
        bail!("exited before its cache synced ({status})");
    };
    let objects: usize = line
        .strip_prefix("synced ")
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("unexpected output {line:?}"))?;
    ensure!(
        objects >= objects_expected,
        "its cache holds {objects} objects, fewer than the {objects_expected} expected"
    );

    tokio::time::sleep(SETTLE).await;
    if let Some(status) = child.try_wait()? {
        bail!("exited after its cache synced ({status})");
    }
    let memory = memory_of(pid).context("reading its /proc status")?;
    child.start_kill()?;
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("did not exit within 10 s of SIGKILL")??;
    Ok(json!({
        "rss_mib": round(memory.now_kib as f64 / 1024.0, 1),
        "peak_rss_mib": round(memory.peak_kib as f64 / 1024.0, 1),
        "objects": objects,
        "sync_seconds": round(sync_seconds, 1),
    }))
}
