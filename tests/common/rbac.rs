//! RBAC pieces shared by tests/deploy.rs (kustomize) and tests/helm.rs (the Helm chart): the
//! expected rules, rendering and reading manifests, installing their RBAC objects into a test
//! namespace, impersonating the operator's ServiceAccount, and the full rotation run as that
//! identity.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rotator_test_support::cluster;
use serde::Deserialize as _;
use serde_json::json;
use serde_yaml::Value;
use tokio::process::{Child, Command};

use super::checks::assert_rotated;
use super::{Harness, USER_PASSWORD};

pub const SERVICE_ACCOUNT: &str = "password-rotator";
pub const ROLE: &str = "password-rotator";
pub const LEADER_ROLE: &str = "password-rotator-leader-election";
pub const LEASE: &str = "password-rotator";

/// Every permission of the operator's ClusterRole (base) and Role (namespaced overlay), as
/// `group/resource verb` (`""` is the core group). Change this only together with the
/// operator's code: each entry is an API call the operator makes.
pub const EXPECTED_RULES: &[&str] = &[
    "rotator.dev/passwordrotations get",
    "rotator.dev/passwordrotations list",
    "rotator.dev/passwordrotations watch",
    "rotator.dev/passwordrotations patch",
    "rotator.dev/passwordrotations/status patch",
    "rotator.dev/rotationtargets/status patch",
    "rotator.dev/rotationtargets get",
    "rotator.dev/rotationtargets list",
    "rotator.dev/rotationtargets watch",
    "/secrets get",
    "/secrets list",
    "/secrets watch",
    "/secrets create",
    "/secrets patch",
    "/secrets delete",
    "apps/deployments get",
    "apps/deployments patch",
    "apps/statefulsets get",
    "apps/statefulsets patch",
    "apps/daemonsets get",
    "apps/daemonsets patch",
    "/pods list",
    "apps/replicasets list",
    "events.k8s.io/events create",
    "events.k8s.io/events patch",
];

/// The tenant ClusterRoles, aggregated into the built-in roles: `admin` and `edit` write
/// PasswordRotations, `view` (and through it `edit` and `admin`) reads them and the
/// namespace's RotationTargets. Nothing writes their status.
pub const TENANT_EDIT_ROLE: &str = "password-rotator-edit";
pub const TENANT_VIEW_ROLE: &str = "password-rotator-view";
pub const EXPECTED_TENANT_EDIT_RULES: &[&str] = &[
    "rotator.dev/passwordrotations create",
    "rotator.dev/passwordrotations update",
    "rotator.dev/passwordrotations patch",
    "rotator.dev/passwordrotations delete",
    "rotator.dev/passwordrotations deletecollection",
];
pub const EXPECTED_TENANT_VIEW_RULES: &[&str] = &[
    "rotator.dev/passwordrotations get",
    "rotator.dev/passwordrotations list",
    "rotator.dev/passwordrotations watch",
    "rotator.dev/passwordrotations/status get",
    "rotator.dev/passwordrotations/status list",
    "rotator.dev/passwordrotations/status watch",
    "rotator.dev/rotationtargets get",
    "rotator.dev/rotationtargets list",
    "rotator.dev/rotationtargets watch",
];

/// Namespace admins (the built-in `admin` role) write the RotationTargets of their
/// namespace; tenants who only `edit` do not.
pub const TENANT_TARGET_ADMIN_ROLE: &str = "password-rotator-target-admin";
pub const EXPECTED_TARGET_ADMIN_RULES: &[&str] = &[
    "rotator.dev/rotationtargets create",
    "rotator.dev/rotationtargets update",
    "rotator.dev/rotationtargets patch",
    "rotator.dev/rotationtargets delete",
    "rotator.dev/rotationtargets deletecollection",
];

/// ClusterRotationTargets, and namespaces' labels for their policies: cluster-wide only.
pub const CLUSTER_TARGETS_ROLE: &str = "password-rotator-cluster-targets";
pub const EXPECTED_CLUSTER_TARGETS_RULES: &[&str] = &[
    "rotator.dev/clusterrotationtargets get",
    "rotator.dev/clusterrotationtargets list",
    "rotator.dev/clusterrotationtargets watch",
    "rotator.dev/clusterrotationtargets/status patch",
    "/namespaces get",
    "/namespaces list",
    "/namespaces watch",
];

/// The leader-election Role, in the operator's own namespace (`verb[resourceName]`).
pub const EXPECTED_LEADER_RULES: &[&str] = &[
    "coordination.k8s.io/leases get[password-rotator]",
    "coordination.k8s.io/leases update[password-rotator]",
    "coordination.k8s.io/leases create",
];

// ----------------------------------------------------------------------------------------
// the operator, run as the ServiceAccount with only the rendered Roles

/// The operator, run as the ServiceAccount of `rendered` (impersonated) with only the
/// ServiceAccount, Roles and RoleBindings of `rendered` (the namespaced kustomize overlay, or
/// the chart rendered for one namespace) moved into a fresh namespace, completes a full
/// rotation with a Deployment rolled out, runs its finalizer, and is granted nothing more
/// than the expected rules.
pub async fn rotates_with_only_these_roles(prefix: &str, rendered: &[Value]) -> Result<()> {
    let h = Harness::new(prefix).await?;
    let ns = h.ns().to_owned();
    let log_dir = cluster::repo_root().join("target/test-logs").join(&ns);
    std::fs::create_dir_all(&log_dir)?;

    // The ServiceAccount, Roles and RoleBindings, moved into the test namespace
    // (both the watched namespace and the operator's own, for the Lease).
    install_rbac(&h.client, &ns, rendered).await?;
    let user = format!("system:serviceaccount:{ns}:{SERVICE_ACCOUNT}");
    let kubeconfig = log_dir.join("impersonating.kubeconfig");
    write_impersonating_kubeconfig(&kubeconfig, &user)?;
    let operator_client = client_from_kubeconfig(&kubeconfig).await?;
    // RBAC is served from the API server's informer cache: wait until the binding shows.
    wait_allowed(
        &operator_client,
        &ns,
        "rotator.dev",
        "passwordrotations",
        "list",
    )
    .await?;

    h.create_deployment("orders", 1).await?;
    let flags = operator_flags().await?;
    let metrics_port = flags.http_addr.map(|_| free_port()).transpose()?;
    let mut operator = start_operator(&kubeconfig, &ns, &log_dir, &flags, metrics_port)?;

    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({
            "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "0s"},
            "rotationRequest": "rbac",
        })),
    )
    .await?;
    let log_file = log_dir.join("operator-rbac.log");
    tokio::select! {
        rotated = h.wait_rotated("orders-cache", Duration::from_secs(180)) => {
            rotated.with_context(|| format!("operator log: {}", log_file.display()))?;
        }
        exit = operator.wait() => {
            bail!("the operator exited ({:?}); log: {}", exit?, log_file.display());
        }
        denied = first_denial(&log_file) => bail!("the operator was denied: {denied}"),
    }

    // The rotation really happened: the new password authenticates, the old one is retired,
    // and the Deployment was restarted and rolled out.
    let new = assert_rotated(&h).await?;
    let deployments: Api<Deployment> = h.namespace.api();
    let orders = deployments.get("orders").await?;
    let annotations = orders
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert!(
        annotations.contains_key("rotation.rotator.dev/orders-cache"),
        "the Deployment was restarted: {annotations:?}"
    );
    assert!(
        cluster::rollout_complete(&orders),
        "the Deployment rolled out"
    );

    // Events were written with the Role's events.k8s.io permission.
    let events = h.events().await?;
    assert!(
        events
            .iter()
            .any(|e| e.reporting_component.as_deref() == Some("password-rotator")),
        "the operator published events"
    );
    if flags.leader_election {
        // get + create happened at start; a renewal (update) proves the third verb.
        let leases: Api<Lease> = h.namespace.api();
        let renewed = |lease: &Lease| lease.spec.as_ref().and_then(|s| s.renew_time.clone());
        let first = leases
            .get(LEASE)
            .await
            .context("the leader-election Lease")?;
        let holder = first
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        assert!(
            holder.starts_with(POD_NAME),
            "the operator holds the Lease (holder {holder:?})"
        );
        let wait_renewal = async {
            let deadline = Instant::now() + Duration::from_secs(20);
            while renewed(&leases.get(LEASE).await?) == renewed(&first) {
                if Instant::now() > deadline {
                    bail!("the Lease was not renewed within 20 s");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            renewal = wait_renewal => renewal?,
            denied = first_denial(&log_file) => bail!("the operator was denied: {denied}"),
        }
    }
    if let Some(port) = metrics_port {
        for path in ["/healthz", "/readyz"] {
            wait_http_ok(port, path).await?;
        }
    }

    // Deleting the resource runs the finalizer under the same Role (state Secret cleanup,
    // finalizer removal by patch).
    let rotations = h.rotations();
    rotations
        .delete("orders-cache", &Default::default())
        .await?;
    tokio::select! {
        gone = wait_deleted(&rotations, "orders-cache") => gone?,
        denied = first_denial(&log_file) => bail!("the operator was denied: {denied}"),
    }
    ensure!(
        h.secret_value("orders-cache-rotation", "pending")
            .await?
            .is_none(),
        "the state Secret was cleaned up"
    );

    operator.start_kill()?;
    operator.wait().await?;
    let logs = std::fs::read_to_string(&log_file)?;
    assert!(!logs.is_empty(), "the operator wrote no log");
    for secret in [new.as_str(), USER_PASSWORD] {
        assert!(!logs.contains(secret), "a password leaked into the log");
    }
    // A permission the operator lacks shows as a 403 somewhere (events are best effort and
    // only logged, for instance): there must be none.
    let lower = logs.to_ascii_lowercase();
    assert!(
        !lower.contains("forbidden"),
        "the operator was denied something; see {}",
        log_file.display()
    );

    assert_nothing_more_is_granted(&h.client, &operator_client, &ns).await?;
    h.finish().await
}

/// What the impersonated ServiceAccount may do, checked with the API server itself.
pub async fn assert_nothing_more_is_granted(
    admin: &Client,
    operator: &Client,
    ns: &str,
) -> Result<()> {
    // 1. The effective rules in the test namespace, minus those every ServiceAccount has
    //    (system:basic-user, discovery …), are exactly the two Roles; elsewhere, nothing.
    let nobody = impersonating_client(&format!("system:serviceaccount:{ns}:nobody")).await?;
    let mut expected: BTreeSet<String> = EXPECTED_RULES.iter().map(|s| s.to_string()).collect();
    expected.extend(EXPECTED_LEADER_RULES.iter().map(|s| s.to_string()));
    for (namespace, want) in [(ns, expected), ("default", BTreeSet::new())] {
        let granted = live_rules(operator, namespace).await?;
        let baseline = live_rules(&nobody, namespace).await?;
        let extra: BTreeSet<String> = granted.difference(&baseline).cloned().collect();
        same_rules(
            &extra,
            &want,
            &format!("the operator's rules in namespace {namespace} (beyond any ServiceAccount's)"),
        )?;
    }

    // 2. Direct checks: what it needs is allowed …
    for rule in EXPECTED_RULES {
        let (resource, verb) = rule.split_once(' ').expect("group/resource verb");
        let (group, resource) = resource.split_once('/').expect("group/resource");
        let (resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, s),
            None => (resource, ""),
        };
        ensure!(
            can(operator, ns, group, resource, sub, verb, "").await?,
            "the operator may not {rule} in its namespace"
        );
    }
    for verb in ["get", "update"] {
        ensure!(
            can(
                operator,
                ns,
                "coordination.k8s.io",
                "leases",
                "",
                verb,
                LEASE
            )
            .await?,
            "leases {verb} {LEASE}"
        );
    }
    // … and what it does not need is denied (namespace "" = cluster-wide / cluster-scoped).
    let denied: &[(&str, &str, &str, &str, &str, &str)] = &[
        ("default", "", "secrets", "", "list", ""),
        ("default", "", "secrets", "", "get", "rs-admin"),
        ("kube-system", "", "secrets", "", "get", ""),
        ("", "", "secrets", "", "list", ""),
        (
            "default",
            "rotator.dev",
            "passwordrotations",
            "",
            "list",
            "",
        ),
        ("default", "apps", "deployments", "", "patch", "orders"),
        (ns, "apps", "deployments", "", "delete", "orders"),
        (ns, "apps", "deployments", "", "update", "orders"),
        (ns, "apps", "deployments", "", "create", ""),
        (ns, "apps", "deployments", "", "list", ""),
        (ns, "apps", "replicasets", "", "get", ""),
        (ns, "", "pods", "", "create", ""),
        // Pods are listed (EXPECTED_RULES) in the watched namespace only.
        ("default", "", "pods", "", "list", ""),
        (ns, "", "pods", "", "get", ""),
        (ns, "", "pods", "", "watch", ""),
        (ns, "", "pods", "exec", "create", ""),
        (ns, "", "configmaps", "", "get", ""),
        (ns, "", "secrets", "", "update", ""),
        (ns, "", "events", "", "create", ""),
        (
            ns,
            "",
            "serviceaccounts",
            "token",
            "create",
            SERVICE_ACCOUNT,
        ),
        (ns, "", "serviceaccounts", "", "impersonate", ""),
        (ns, "rotator.dev", "passwordrotations", "", "create", ""),
        (ns, "rotator.dev", "passwordrotations", "", "update", ""),
        (ns, "rotator.dev", "passwordrotations", "", "delete", ""),
        (
            ns,
            "rotator.dev",
            "passwordrotations",
            "status",
            "update",
            "",
        ),
        (ns, "rbac.authorization.k8s.io", "roles", "", "create", ""),
        (
            ns,
            "rbac.authorization.k8s.io",
            "rolebindings",
            "",
            "create",
            "",
        ),
        (
            ns,
            "rbac.authorization.k8s.io",
            "roles",
            "",
            "escalate",
            ROLE,
        ),
        (ns, "coordination.k8s.io", "leases", "", "delete", LEASE),
        (
            ns,
            "coordination.k8s.io",
            "leases",
            "",
            "update",
            "another-lease",
        ),
        (ns, "coordination.k8s.io", "leases", "", "list", ""),
        ("default", "coordination.k8s.io", "leases", "", "create", ""),
        ("", "", "namespaces", "", "list", ""),
        ("", "", "nodes", "", "list", ""),
        (
            "",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "get",
            "",
        ),
        (
            "",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "list",
            "",
        ),
        (
            "",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
            "create",
            "",
        ),
        (
            "",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "create",
            "",
        ),
    ];
    for &(namespace, group, resource, sub, verb, name) in denied {
        ensure!(
            !can(operator, namespace, group, resource, sub, verb, name).await?,
            "the operator may {verb} {group}/{resource}/{sub} {name:?} in namespace {namespace:?}"
        );
    }
    // The admin client agrees that the ServiceAccount exists (the identity is real).
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    accounts.get(SERVICE_ACCOUNT).await?;
    Ok(())
}

/// deploy/base's tenant ClusterRoles, which the API server aggregates into the built-in
/// `admin`, `edit` and `view` roles.
pub async fn install_tenant_roles() -> Result<()> {
    let base = objects(&kustomize("deploy/base").await?)?;
    let mut manifest = String::new();
    for name in [TENANT_EDIT_ROLE, TENANT_VIEW_ROLE, TENANT_TARGET_ADMIN_ROLE] {
        manifest += "---\n";
        manifest += &serde_yaml::to_string(&find(&base, "ClusterRole", name)?)?;
    }
    let apply = [
        "apply",
        "--server-side",
        "--field-manager=rotator-tests",
        "-f",
        "-",
    ];
    kubectl(&apply, Some(&manifest)).await?;
    Ok(())
}

/// The admin kubeconfig, acting as `user`.
pub async fn impersonating_client(user: &str) -> Result<Client> {
    let mut config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(cluster::kubeconfig_path())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info.impersonate = Some(user.to_owned());
    Ok(Client::try_from(config)?)
}

// ----------------------------------------------------------------------------------------
// helpers: the operator process

pub const POD_NAME: &str = "password-rotator-rbac-test";

/// Flags of the operator binary that are being added in parallel (leader election, metrics):
/// used when the binary has them.
pub struct OperatorFlags {
    /// `--leader-election` and `--lease-namespace`.
    leader_election: bool,
    /// The flag of the address of /metrics, /healthz and /readyz.
    http_addr: Option<&'static str>,
}

pub async fn run_help() -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_password-rotator"))
        .args(["run", "--help"])
        .output()
        .await?;
    ensure!(out.status.success(), "password-rotator run --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

pub async fn operator_flags() -> Result<OperatorFlags> {
    let help = run_help().await?;
    Ok(OperatorFlags {
        leader_election: help.contains("--leader-election") && help.contains("--lease-namespace"),
        http_addr: ["--http-addr", "--metrics-addr"]
            .into_iter()
            .find(|flag| help.contains(flag)),
    })
}

pub fn start_operator(
    kubeconfig: &Path,
    ns: &str,
    log_dir: &Path,
    flags: &OperatorFlags,
    metrics_port: Option<u16>,
) -> Result<Child> {
    let log = std::fs::File::create(log_dir.join("operator-rbac.log"))?;
    let mut command = super::operator_command(kubeconfig, ns, log)?;
    if flags.leader_election {
        command.args(["--leader-election", "--lease-namespace", ns]);
        // Renewed every lease/5 = 1 s, so the test sees an update soon.
        command.env("LEASE_SECONDS", "5");
    }
    if let (Some(flag), Some(port)) = (flags.http_addr, metrics_port) {
        command.args([flag, &format!("127.0.0.1:{port}")]);
    }
    command
        .env_remove("WATCH_NAMESPACE")
        .env("POD_NAME", POD_NAME)
        .env("POD_NAMESPACE", ns)
        .spawn()
        .context("starting the operator")
}

/// Resolves with the first log line that shows the API server refusing a request.
pub async fn first_denial(log_file: &Path) -> String {
    loop {
        let logs = std::fs::read_to_string(log_file).unwrap_or_default();
        if let Some(line) = logs
            .lines()
            .find(|l| l.to_ascii_lowercase().contains("forbidden"))
        {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn wait_deleted(
    api: &Api<password_rotator::resource::PasswordRotation>,
    name: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(name).await?.is_some() {
        if Instant::now() > deadline {
            bail!("{name} was not deleted (finalizer) within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn wait_http_ok(port: u16, path: &str) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http.get(&url).send().await.map(|r| r.status());
        match status {
            Ok(s) if s.is_success() => return Ok(()),
            _ if Instant::now() > deadline => bail!("{url}: {status:?}"),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

// ----------------------------------------------------------------------------------------
// helpers: RBAC

/// Applies the ServiceAccount, Roles and RoleBindings of `rendered` (one ServiceAccount, the
/// operator's Role and the leader-election Role, with their bindings) with every namespace
/// rewritten to `ns`.
pub async fn install_rbac(client: &Client, ns: &str, rendered: &[Value]) -> Result<()> {
    let params = PatchParams::apply("rotator-tests").force();
    let mut counts = (0, 0, 0);
    for object in rendered {
        let mut object = object.clone();
        let kind = kind(&object).to_owned();
        if !matches!(kind.as_str(), "ServiceAccount" | "Role" | "RoleBinding") {
            continue;
        }
        object["metadata"]["namespace"] = Value::from(ns);
        if let Some(subjects) = object["subjects"].as_sequence_mut() {
            for subject in subjects {
                subject["namespace"] = Value::from(ns);
            }
        }
        let name = object["metadata"]["name"]
            .as_str()
            .context("unnamed object")?
            .to_owned();
        match kind.as_str() {
            "ServiceAccount" => {
                let sa: ServiceAccount = serde_yaml::from_value(object)?;
                Api::<ServiceAccount>::namespaced(client.clone(), ns)
                    .patch(&name, &params, &Patch::Apply(&sa))
                    .await?;
                counts.0 += 1;
            }
            "Role" => {
                let role: Role = serde_yaml::from_value(object)?;
                Api::<Role>::namespaced(client.clone(), ns)
                    .patch(&name, &params, &Patch::Apply(&role))
                    .await?;
                counts.1 += 1;
            }
            _ => {
                let binding: RoleBinding = serde_yaml::from_value(object)?;
                Api::<RoleBinding>::namespaced(client.clone(), ns)
                    .patch(&name, &params, &Patch::Apply(&binding))
                    .await?;
                counts.2 += 1;
            }
        }
    }
    ensure!(
        counts == (1, 2, 2),
        "expected 1 ServiceAccount, 2 Roles, 2 RoleBindings, got {counts:?}"
    );
    Ok(())
}

/// The admin kubeconfig with `as: <user>` in every user entry: the operator binary reads it
/// like any kubeconfig and every request it makes is authorized as `user`.
pub fn write_impersonating_kubeconfig(path: &Path, user: &str) -> Result<()> {
    let mut config: Value =
        serde_yaml::from_str(&std::fs::read_to_string(cluster::kubeconfig_path())?)?;
    let users = config["users"]
        .as_sequence_mut()
        .context("kubeconfig without users")?;
    for entry in users {
        entry["user"]["as"] = Value::from(user);
    }
    std::fs::write(path, serde_yaml::to_string(&config)?)?;
    Ok(())
}

pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let config =
        Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default())
            .await?;
    ensure!(
        config.auth_info.impersonate.is_some(),
        "kube did not read `as` from {}",
        path.display()
    );
    Ok(Client::try_from(config)?)
}

pub async fn can(
    client: &Client,
    namespace: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    verb: &str,
    name: &str,
) -> Result<bool> {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "namespace": namespace,
            "group": group,
            "resource": resource,
            "subresource": subresource,
            "verb": verb,
            "name": name,
        }},
    }))?;
    let review = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(review.status.is_some_and(|s| s.allowed))
}

pub async fn wait_allowed(
    client: &Client,
    ns: &str,
    group: &str,
    resource: &str,
    verb: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !can(client, ns, group, resource, "", verb, "").await? {
        if Instant::now() > deadline {
            bail!("{verb} {group}/{resource} never became allowed in {ns}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The resource rules the caller has in `namespace`, as `group/resource verb[name]` strings.
pub async fn live_rules(client: &Client, namespace: &str) -> Result<BTreeSet<String>> {
    let review: SelfSubjectRulesReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }))?;
    let review = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    let status = review
        .status
        .context("SelfSubjectRulesReview without status")?;
    let rules = serde_yaml::to_value(&status.resource_rules)?;
    rule_set(&rules)
}

/// Expands RBAC rules (YAML of PolicyRules or ResourceRules) into one string per
/// group × resource × verb × resourceName.
pub fn rule_set(rules: &Value) -> Result<BTreeSet<String>> {
    let list = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut set = BTreeSet::new();
    for rule in rules.as_sequence().context("rules is not a list")? {
        ensure!(
            rule["nonResourceURLs"].is_null(),
            "unexpected nonResourceURLs"
        );
        let names = list(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for group in list(&rule["apiGroups"]) {
            for resource in list(&rule["resources"]) {
                for verb in list(&rule["verbs"]) {
                    for name in &names {
                        let name = if name.is_empty() {
                            String::new()
                        } else {
                            format!("[{name}]")
                        };
                        set.insert(format!("{group}/{resource} {verb}{name}"));
                    }
                }
            }
        }
    }
    Ok(set)
}

pub fn same_rules(
    actual: &BTreeSet<String>,
    expected: &BTreeSet<String>,
    what: &str,
) -> Result<()> {
    let added: Vec<_> = actual.difference(expected).collect();
    let missing: Vec<_> = expected.difference(actual).collect();
    ensure!(
        added.is_empty() && missing.is_empty(),
        "{what}: granted but not expected {added:?}; expected but not granted {missing:?}"
    );
    Ok(())
}

pub fn rbac_objects(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| {
            o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("rbac.authorization.k8s.io/"))
        })
        .map(|o| {
            format!(
                "{}/{}/{}",
                kind(o),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

// ----------------------------------------------------------------------------------------
// helpers: kubectl and YAML

/// The kubectl built beside the control plane (same version as the API server).
pub fn kubectl_path() -> Result<PathBuf> {
    let script = cluster::repo_root().join("tests/cluster/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--print-dirs")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let dirs = String::from_utf8(out.stdout)?;
    let bin = dirs
        .lines()
        .find_map(|l| l.strip_prefix("K8S_BIN="))
        .context("build.sh --print-dirs printed no K8S_BIN")?;
    Ok(PathBuf::from(bin).join("kubectl"))
}

/// Runs kubectl against the test cluster (admin) and returns its stdout.
pub async fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(kubectl_path()?)
        .arg("--kubeconfig")
        .arg(cluster::kubeconfig_path())
        .args(args)
        .current_dir(cluster::repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubectl")?;
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().context("kubectl stdin")?;
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    ensure!(
        out.status.success(),
        "kubectl {} failed ({}):\n{stderr}\n{stdout}",
        args.join(" "),
        out.status
    );
    Ok(stdout)
}

/// `kubectl kustomize <dir>` (needs no cluster).
pub async fn kustomize(dir: &str) -> Result<String> {
    let out = Command::new(kubectl_path()?)
        .args(["kustomize", dir])
        .current_dir(cluster::repo_root())
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

pub fn objects(rendered: &str) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            all.push(value);
        }
    }
    Ok(all)
}

pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

pub fn find(objects: &[Value], kind_: &str, name: &str) -> Result<Value> {
    objects
        .iter()
        .find(|o| kind(o) == kind_ && o["metadata"]["name"].as_str() == Some(name))
        .cloned()
        .with_context(|| format!("no {kind_} {name}"))
}
