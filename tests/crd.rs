//! `crds/` must be what `password-rotator crd` prints: regenerate it with
//! `cargo run -- crd > crds/passwordrotations.rotator.dev.yaml`.

#[test]
fn crds_directory_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/passwordrotations.rotator.dev.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ holds the CRD");
    assert!(
        committed == password_rotator::crd_yaml(),
        "crds/ is stale: run `cargo run -- crd > crds/passwordrotations.rotator.dev.yaml`"
    );
}

/// Every `kubectl apply -f crds/` of a user would print the API server's warnings (an unknown
/// `format`, a deprecated field): the CRDs apply to the real API server without one.
#[tokio::test]
async fn crds_apply_without_warnings() -> anyhow::Result<()> {
    use anyhow::{Context, ensure};
    use rotator_test_support::cluster;

    let kubeconfig = cluster::ensure_cluster().await?;
    let dirs = std::process::Command::new("bash")
        .arg(cluster::repo_root().join("tests/cluster/build.sh"))
        .arg("--print-dirs")
        .output()?;
    let kubectl = String::from_utf8(dirs.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("K8S_BIN=").map(|d| format!("{d}/kubectl")))
        .context("build.sh --print-dirs printed no K8S_BIN")?;
    // A server-side dry run is validated (and warned about) as a real apply is; server-side,
    // so that kubectl's own warning about a CRD the tests created without it stays out.
    let out = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
        ])
        .arg(cluster::repo_root().join("crds"))
        .output()
        .await
        .context("running kubectl")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "kubectl apply -f crds/ failed:\n{stderr}"
    );
    ensure!(
        stderr.trim().is_empty(),
        "kubectl apply -f crds/ printed:\n{stderr}"
    );
    Ok(())
}
