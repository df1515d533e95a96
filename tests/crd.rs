//! `crds/` must be what `password-rotator crd` prints: regenerate it with `make crds`.

#[test]
fn crds_directory_is_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let generated = password_rotator::crds();
    for (file, yaml) in &generated {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(committed == *yaml, "crds/{file} is stale: run `make crds`");
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        generated.len(),
        "crds/ holds a file no CRD is generated into"
    );
}

/// Every `kubectl apply -f crds/` of a user would print the API server's warnings (an unknown
/// `format`, a deprecated field): each CRD of crds/ is created on the real API server without
/// one. The request is a dry run of the CRD under a group of its own, so that nothing another
/// test or a kubectl applied before plays a part, and the `Warning` headers read are the API
/// server's own.
#[tokio::test]
async fn crds_apply_without_warnings() -> anyhow::Result<()> {
    use anyhow::{Context, ensure};
    use rotator_test_support::cluster;

    let client = cluster::client().await?;
    let mut checked = 0;
    for entry in std::fs::read_dir(cluster::repo_root().join("crds"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let mut crd: serde_json::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not YAML", path.display()))?;
        let group = "warnings.test.rotator.dev";
        let plural = crd["spec"]["names"]["plural"]
            .as_str()
            .context("a CRD names its plural")?
            .to_owned();
        crd["spec"]["group"] = group.into();
        crd["metadata"]["name"] = format!("{plural}.{group}").into();
        let request = http::Request::post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All",
        )
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(&crd)?))?;
        let response = client.send(request).await?;
        let warnings: Vec<String> = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|w| String::from_utf8_lossy(w.as_bytes()).into_owned())
            .collect();
        ensure!(
            response.status().is_success(),
            "{}: the API server answered {}",
            path.display(),
            response.status()
        );
        ensure!(
            warnings.is_empty(),
            "{}: the API server warned: {warnings:#?}",
            path.display()
        );
        checked += 1;
    }
    ensure!(checked > 0, "crds/ holds no CRD");
    Ok(())
}
