//! The operator's container image, built without a Docker engine and run as the Deployment
//! runs it (`deploy/base/deployment.yaml`, installed namespaced), proven by a full rotation.
//!
//! * `tests/image/build.sh` (`make image`) builds the static binary and, with buildah, the
//!   final stage of the `Dockerfile` into `target/image/password-rotator.oci.tar` (cached:
//!   rebuilt only when the binary or that stage changed).
//! * The test reads that OCI archive with `tar` (index, manifest, config, layers, each blob's
//!   digest checked), checks the image (one file, `/password-rotator`, statically linked;
//!   entrypoint, command, user 65532:65532, labels), and unpacks its root filesystem.
//! * `tests/image/run-as-pod.sh` runs the entrypoint with the args (plus `--namespace <test
//!   ns>` and `--http-addr 127.0.0.1:0`) and env of the Deployment as the namespaced overlay
//!   renders it (`WATCH_NAMESPACE` the test's namespace), and nothing else of the host's
//!   environment: chrooted in that root filesystem, mounted read-only, as UID/GID 65532 with
//!   group 65532 only, no_new_privs and no capabilities, with what the kubelet mounts: the
//!   ServiceAccount's token (from the TokenRequest API, for a ServiceAccount bound to the
//!   namespaced overlay's Roles), the API server's CA and the namespace at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`, `/etc/hosts` and `/etc/resolv.conf`;
//!   `KUBERNETES_SERVICE_HOST`/`PORT` point at the local API server. It has no kubeconfig,
//!   so it must use the in-cluster configuration.
//! * The Redis Software URL of the rotation's target names `localhost`, so static glibc's name
//!   resolution (through the mounted `/etc/hosts`) is exercised too; real `AUTH` on
//!   redis-server proves the new password works and the old one is refused.
//!
//! Where this differs from a kubelet: no container runtime (a chroot in new mount and PID
//! namespaces, not a pivot_root), no seccomp profile, no cgroup limits, the host's network
//! namespace (everything listens on 127.0.0.1), and the chroot step keeps CAP_SYS_CHROOT,
//! CAP_SETUID and CAP_SETGID in the bounding set (the permitted, effective, inheritable and
//! ambient sets are empty, and no_new_privs forbids regaining them). The token is not bound
//! to a Pod object (there is none).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rotator_test_support::cluster;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

use common::checks::assert_rotated;
use common::rbac::{SERVICE_ACCOUNT, find, install_rbac, kustomize, objects, wait_allowed};
use common::{Harness, USER_PASSWORD};

const UID: u32 = 65532;
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const POD_NAME: &str = "password-rotator-image-test";

#[tokio::test]
async fn the_image_rotates_a_password_run_as_the_deployment_runs_it() -> Result<()> {
    let archive = build_image().await?;
    let h = Harness::new("image").await?;
    let ns = h.ns().to_owned();
    let work = cluster::repo_root().join("target/image/runs").join(&ns);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    // --- the image ---------------------------------------------------------------------------
    let image = OciImage::unpack(&archive, &work).await?;
    let config = &image.config["config"];
    assert_eq!(
        config["Entrypoint"],
        json!(["/password-rotator"]),
        "entrypoint"
    );
    assert_eq!(config["Cmd"], json!(["run"]), "command");
    assert_eq!(config["User"], json!(format!("{UID}:{UID}")), "user");
    let labels = &config["Labels"];
    for (label, value) in [
        ("title", "password-rotator"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("licenses", env!("CARGO_PKG_LICENSE")),
        ("description", env!("CARGO_PKG_DESCRIPTION")),
    ] {
        assert_eq!(
            labels[format!("org.opencontainers.image.{label}")],
            json!(value),
            "label org.opencontainers.image.{label}"
        );
    }
    let files = list_tree(&image.rootfs)?;
    assert_eq!(
        files,
        vec!["password-rotator".to_owned()],
        "the image holds the binary only"
    );
    let binary = image.rootfs.join("password-rotator");
    let headers = output("readelf", &["-lW", "-dW"], &binary).await?;
    ensure!(
        !headers.contains("INTERP") && !headers.contains("(NEEDED)"),
        "/password-rotator is not statically linked:\n{headers}"
    );

    // --- what the kubelet provides -----------------------------------------------------------
    let rendered = objects(&kustomize("deploy/overlays/namespaced").await?)?;
    install_rbac(&h.client, &ns, &rendered).await?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = Api::<ServiceAccount>::namespaced(h.client.clone(), &ns)
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await?
        .status
        .context("TokenRequest without status")?
        .token
        .context("TokenRequest without a token")?;
    let kubeconfig = Kubeconfig::read_from(cluster::kubeconfig_path())?;
    let cluster_entry = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .context("kubeconfig without a cluster")?;
    let ca = match (
        &cluster_entry.certificate_authority,
        &cluster_entry.certificate_authority_data,
    ) {
        (Some(path), _) => std::fs::read(path)?,
        (None, Some(data)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(data)?
        }
        _ => bail!("kubeconfig without the API server's CA"),
    };
    let server: url::Url = cluster_entry
        .server
        .as_deref()
        .context("kubeconfig without a server")?
        .parse()?;
    let (host, port) = (
        server.host_str().context("server without host")?.to_owned(),
        server.port_or_known_default().context("server port")?,
    );
    ensure!(
        host == "127.0.0.1",
        "the API server is not on 127.0.0.1: {server}"
    );
    let sa = work.join("serviceaccount");
    std::fs::create_dir_all(&sa)?;
    std::fs::write(sa.join("token"), &token)?;
    std::fs::write(sa.join("ca.crt"), &ca)?;
    std::fs::write(sa.join("namespace"), &ns)?;
    // As the kubelet writes them: a managed hosts file, and the node's resolver config.
    let hosts = work.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{POD_NAME}\n"
        ),
    )?;

    // RBAC is served from the API server's informer cache: wait until the token's identity
    // may act (this also proves the token authenticates).
    let sa_client = token_client(&token).await?;
    wait_allowed(&sa_client, &ns, "rotator.dev", "passwordrotations", "list").await?;

    // --- the operator, from the image --------------------------------------------------------
    // The Deployment of the install whose RBAC the token has: the namespaced overlay's, which
    // watches one namespace (here the test's) and serves no ClusterRotationTargets.
    let deployment = find(&rendered, "Deployment", "password-rotator")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = serde_yaml::from_value(container["args"].clone())?;
    args.extend(["--namespace".into(), ns.clone()]);
    args.extend(["--http-addr".into(), "127.0.0.1:0".into()]);
    let mut env: Vec<String> =
        serde_json::from_value::<Vec<String>>(config["Env"].clone()).unwrap_or_default();
    for var in container["env"].as_sequence().into_iter().flatten() {
        let name = var["name"].as_str().context("env without name")?;
        let field = var["valueFrom"]["fieldRef"]["fieldPath"].as_str();
        let value = match (name, var["value"].as_str(), field) {
            ("WATCH_NAMESPACE", Some(_), _) => ns.clone(),
            (_, Some(value), _) => value.to_owned(),
            (_, None, Some("metadata.name")) => POD_NAME.to_owned(),
            (_, None, Some("metadata.namespace")) => ns.clone(),
            (other, _, _) => {
                bail!("the Deployment sets {other} in a way this test does not know")
            }
        };
        env.push(format!("{name}={value}"));
    }
    ensure!(
        env.contains(&format!("WATCH_NAMESPACE={ns}")),
        "the namespaced overlay's Deployment sets no WATCH_NAMESPACE: {env:?}"
    );
    // What the runtime and the kubelet add (the `kubernetes` Service's variables are set even
    // with enableServiceLinks: false).
    env.push(format!("HOSTNAME={POD_NAME}"));
    env.push(format!("KUBERNETES_SERVICE_HOST={host}"));
    env.push(format!("KUBERNETES_SERVICE_PORT={port}"));
    env.push(format!("KUBERNETES_SERVICE_PORT_HTTPS={port}"));

    let log_path = cluster::repo_root()
        .join("target/test-logs")
        .join(&ns)
        .join("operator-image.log");
    let log = std::fs::File::create(&log_path)?;
    let entrypoint = serde_json::from_value::<Vec<String>>(config["Entrypoint"].clone())?;
    let mut command = Command::new(cluster::repo_root().join("tests/image/run-as-pod.sh"));
    command
        .arg("--rootfs")
        .arg(&image.rootfs)
        .args(["--user", &format!("{UID}:{UID}")])
        .arg("--mount")
        .arg(format!("{}:{SA_DIR}:ro", sa.display()))
        .arg("--mount")
        .arg(format!("{}:/etc/hosts:ro", hosts.display()))
        .args(["--mount", "/etc/resolv.conf:/etc/resolv.conf:ro"]);
    for var in &env {
        command.args(["--env", var]);
    }
    command
        .arg("--")
        .args(&entrypoint)
        .args(&args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let mut operator = command.spawn().context("starting run-as-pod.sh")?;

    // The process really is confined as the pod's container is.
    let pid = find_operator(&ns, &mut operator, &log_path).await?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid"), format!("{UID} {UID} {UID} {UID}"), "uids");
    assert_eq!(field("Gid"), format!("{UID} {UID} {UID} {UID}"), "gids");
    assert_eq!(field("Groups"), UID.to_string(), "supplementary groups");
    assert_eq!(field("NoNewPrivs"), "1", "no_new_privs");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(field(set), "0000000000000000", "{set}");
    }
    if let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) {
        assert_eq!(root, image.rootfs, "the process's root directory");
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    let mut seen: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    seen.sort();
    let mut expected = env.clone();
    expected.sort();
    assert_eq!(seen, expected, "the process's environment");

    // --- one full rotation -------------------------------------------------------------------
    let url = h.api.url().replace("127.0.0.1", "localhost");
    ensure!(url.contains("://localhost:"), "unexpected API URL {url}");
    let mut connection = h.rs_connection();
    connection["url"] = json!(url);
    h.put_target("by-name", json!({"redisSoftware": connection}))
        .await?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({
            "target": {"ref": {"name": "by-name"}},
            "rotationRequest": "image",
        })),
    )
    .await?;
    tokio::select! {
        rotated = h.wait_rotated("orders-cache", Duration::from_secs(120)) => {
            rotated.with_context(|| format!("operator log: {}", log_path.display()))?;
        }
        exit = operator.wait() => {
            bail!("the operator exited ({:?}); log: {}", exit?, log_path.display());
        }
    }
    let new = assert_rotated(&h).await?;

    // The finalizer runs in the image too.
    let rotations = h.rotations();
    rotations
        .delete("orders-cache", &Default::default())
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rotations.get_opt("orders-cache").await?.is_some() {
        ensure!(
            std::time::Instant::now() < deadline,
            "the finalizer did not finish; log: {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        operator.try_wait()?.is_none(),
        "the operator exited; log: {}",
        log_path.display()
    );
    operator.start_kill()?;
    operator.wait().await?;

    let logs = std::fs::read_to_string(&log_path)?;
    ensure!(!logs.is_empty(), "the operator wrote no log");
    ensure!(
        logs.lines().all(|l| l.starts_with('{')),
        "LOG_FORMAT=json: every log line is JSON; log: {}",
        log_path.display()
    );
    for secret in [new.as_str(), USER_PASSWORD] {
        ensure!(!logs.contains(secret), "a password leaked into the log");
    }
    ensure!(
        !logs.to_ascii_lowercase().contains("forbidden"),
        "the operator was denied something; log: {}",
        log_path.display()
    );
    // Nothing was written into the image's root filesystem: only the mount points the
    // runtime creates are new.
    let after = list_tree(&image.rootfs)?;
    for path in &after {
        ensure!(
            path == "password-rotator"
                || ["proc", "dev", "sys", "etc", "var"]
                    .iter()
                    .any(|dir| path == dir || path.starts_with(&format!("{dir}/")))
                    && std::fs::metadata(image.rootfs.join(path))
                        .map(|m| m.is_dir() || m.len() == 0)
                        .unwrap_or(false),
            "something was written into the root filesystem: {path}"
        );
    }

    h.finish().await?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// `tests/image/build.sh`: the archive's path.
async fn build_image() -> Result<PathBuf> {
    let script = cluster::repo_root().join("tests/image/build.sh");
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(out.status.success(), "{} failed", script.display());
    let path = String::from_utf8(out.stdout)?;
    let path = PathBuf::from(path.lines().last().context("build.sh printed no path")?);
    ensure!(path.is_file(), "{} is missing", path.display());
    Ok(path)
}

struct OciImage {
    config: Json,
    rootfs: PathBuf,
}

impl OciImage {
    /// Reads the OCI archive `archive` (its one manifest) and unpacks its layers into
    /// `work/rootfs`, checking every blob's digest.
    async fn unpack(archive: &Path, work: &Path) -> Result<Self> {
        let layout = work.join("oci");
        let rootfs = work.join("rootfs");
        std::fs::create_dir_all(&layout)?;
        std::fs::create_dir_all(&rootfs)?;
        run_tar(&[
            "-xf".as_ref(),
            archive.as_os_str(),
            "-C".as_ref(),
            layout.as_os_str(),
        ])
        .await?;
        let index: Json = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let manifests = index["manifests"].as_array().context("index.json")?;
        ensure!(manifests.len() == 1, "one manifest expected: {index}");
        let blob = |descriptor: &Json| -> Result<PathBuf> {
            let digest = descriptor["digest"].as_str().context("descriptor digest")?;
            let hex = digest
                .strip_prefix("sha256:")
                .context("sha256 digests only")?;
            let path = layout.join("blobs/sha256").join(hex);
            let bytes = std::fs::read(&path).with_context(|| format!("blob {digest}"))?;
            let actual = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            ensure!(actual == hex, "blob {digest} has digest sha256:{actual}");
            ensure!(
                descriptor["size"].as_u64() == Some(bytes.len() as u64),
                "blob {digest}: size"
            );
            Ok(path)
        };
        let manifest: Json = serde_json::from_slice(&std::fs::read(blob(&manifests[0])?)?)?;
        let config: Json = serde_json::from_slice(&std::fs::read(blob(&manifest["config"])?)?)?;
        ensure!(
            config["os"] == "linux" && config["architecture"] == "amd64",
            "platform: {} {}",
            config["os"],
            config["architecture"]
        );
        let layers = manifest["layers"].as_array().context("manifest layers")?;
        ensure!(!layers.is_empty(), "the image has no layer");
        for layer in layers {
            let path = blob(layer)?;
            let gzip = match layer["mediaType"].as_str() {
                Some("application/vnd.oci.image.layer.v1.tar+gzip") => true,
                Some("application/vnd.oci.image.layer.v1.tar") => false,
                other => bail!("layer media type {other:?}"),
            };
            let listing = output("tar", &[if gzip { "-tzf" } else { "-tf" }], &path).await?;
            ensure!(
                !listing.contains(".wh."),
                "whiteouts are not expected in a FROM scratch image:\n{listing}"
            );
            run_tar(&[
                if gzip { "-xzpf" } else { "-xpf" }.as_ref(),
                path.as_os_str(),
                "-C".as_ref(),
                rootfs.as_os_str(),
                "--numeric-owner".as_ref(),
            ])
            .await?;
        }
        Ok(Self { config, rootfs })
    }
}

async fn run_tar(args: &[&std::ffi::OsStr]) -> Result<()> {
    let status = Command::new("tar").args(args).status().await?;
    ensure!(status.success(), "tar {args:?}: {status}");
    Ok(())
}

/// `program args.. path`'s stdout.
async fn output(program: &str, args: &[&str], path: &Path) -> Result<String> {
    let out = Command::new(program).args(args).arg(path).output().await?;
    ensure!(
        out.status.success(),
        "{program} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Every path under `root`, relative, sorted.
fn list_tree(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, all: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            all.push(path.strip_prefix(root)?.to_string_lossy().into_owned());
            if entry.file_type()?.is_dir() {
                walk(root, &path, all)?;
            }
        }
        Ok(())
    }
    let mut all = Vec::new();
    walk(root, root, &mut all)?;
    all.sort();
    Ok(all)
}

/// The pid of the operator process (the entrypoint, running `--namespace ns`).
async fn find_operator(ns: &str, child: &mut Child, log: &Path) -> Result<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        for entry in std::fs::read_dir("/proc")? {
            let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if argv.first() == Some(&b"/password-rotator".as_slice())
                && argv
                    .windows(2)
                    .any(|w| w[0] == b"--namespace" && w[1] == ns.as_bytes())
            {
                return Ok(pid);
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the operator exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the operator process did not appear"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of the local API server authenticating with `token` only.
async fn token_client(token: &str) -> Result<Client> {
    let mut config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(cluster::kubeconfig_path())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    Ok(Client::try_from(config)?)
}
