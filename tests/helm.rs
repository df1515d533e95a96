//! The Helm chart (deploy/helm/password-rotator), with the Helm CLI built by
//! tests/cluster/helm.sh, against the real control plane:
//!
//! * `helm lint --strict` passes, with the defaults and with each example values file
//!   (deploy/helm/password-rotator/examples/*.yaml);
//! * the chart's CRD (its crds/ directory) is byte for byte the one in crds/;
//! * each example renders, and its objects are created for real (server-side apply) in fresh
//!   namespaces, with Pod Security "restricted" warnings as errors, and the Deployment rolls
//!   out; the Deployment's args say what the values say, and the admission policy names the
//!   release's ServiceAccount in the release namespace (cluster-wide examples: impersonating
//!   that ServiceAccount, scaling the Deployment is denied by the policy, the restart
//!   annotation is allowed);
//! * the chart's RBAC is exactly the kustomize RBAC (the expected-rules set of
//!   tests/common/rbac.rs), cluster-wide and namespaced, and the rest of the objects (pod
//!   hardening, probes, resources, NetworkPolicy, admission policy) equal deploy/'s;
//! * the operator, run as the chart's ServiceAccount (impersonation) with only the chart's
//!   namespaced Roles, completes a full rotation and is granted nothing more;
//! * the PrometheusRule's rules are deploy/monitoring/alerts.yaml (through the chart's
//!   identical copy files/alerts.yaml), and every metric they use exists in src/metrics.rs.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use password_rotator::resource::SHARD_LABEL;
use rotator_test_support::cluster::{self, TestNamespace};
use serde_json::json;
use serde_yaml::Value;
use tokio::process::Command;

use common::rbac::{
    self, EXPECTED_LEADER_RULES, EXPECTED_RULES, LEADER_ROLE, ROLE, SERVICE_ACCOUNT,
    TENANT_EDIT_ROLE, TENANT_TARGET_ADMIN_ROLE, TENANT_VIEW_ROLE, find, impersonating_client, kind,
    kubectl, kustomize, objects, rbac_objects, rule_set, run_help, same_rules,
};

const CHART: &str = "deploy/helm/password-rotator";
/// Rendered with this release name in this namespace, the chart's objects have deploy/'s names.
const RELEASE: &str = "password-rotator";
const OPERATOR_NAMESPACE: &str = "password-rotator-system";
/// Kinds whose CRDs the test cluster lacks (Prometheus Operator): rendered and checked, not
/// applied.
const MONITORING_KINDS: &[&str] = &["ServiceMonitor", "PrometheusRule"];

// ----------------------------------------------------------------------------------------
// lint, CRD

#[tokio::test]
async fn the_chart_lints_with_the_defaults_and_every_example() -> Result<()> {
    let examples = examples()?;
    ensure!(
        examples.len() >= 4,
        "expected the documented examples, found {examples:?}"
    );
    let mut runs = vec![None];
    runs.extend(examples.iter().map(Some));
    for example in runs {
        let mut args = vec!["lint".to_owned(), CHART.to_owned(), "--strict".to_owned()];
        if let Some(file) = example {
            args.extend(["-f".to_owned(), file.display().to_string()]);
        }
        let out = helm(&args).await?;
        ensure!(
            out.contains("0 chart(s) failed"),
            "helm {}:\n{out}",
            args.join(" ")
        );
    }
    Ok(())
}

#[test]
fn the_charts_crds_are_the_ones_in_crds() -> Result<()> {
    let root = cluster::repo_root();
    let files = |dir: PathBuf| -> Result<BTreeSet<String>> {
        std::fs::read_dir(dir)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect()
    };
    let chart = files(root.join(CHART).join("crds"))?;
    assert_eq!(
        chart,
        files(root.join("crds"))?,
        "the chart's crds/ holds exactly the CRDs of crds/"
    );
    for file in chart {
        let original = std::fs::read_to_string(root.join("crds").join(&file))?;
        let copy = std::fs::read_to_string(root.join(CHART).join("crds").join(&file))?;
        ensure!(
            copy == original,
            "{CHART}/crds/{file} differs from crds/{file}: run `make crds`"
        );
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// every example, rendered and created on the API server

#[tokio::test]
async fn every_example_renders_and_is_created_on_the_api_server() -> Result<()> {
    let admin = cluster::client().await?;
    common::install_crd(&admin).await?;
    for example in examples()? {
        let stem = example
            .file_stem()
            .context("example without a name")?
            .to_string_lossy()
            .into_owned();
        let namespace = TestNamespace::new(&admin, &format!("helm-{stem}")).await?;
        let ns = namespace.name().to_owned();
        // The release is named like its namespace, so that its cluster-scoped objects
        // (ClusterRole, admission policy) are its own.
        let release = ns.clone();

        // Watched namespaces: as many fresh ones as the example lists.
        let example_values: Value = serde_yaml::from_str(&std::fs::read_to_string(&example)?)?;
        let listed = example_values["watchNamespaces"]
            .as_sequence()
            .map_or(0, Vec::len);
        let mut watched = Vec::new();
        for _ in 0..listed {
            watched.push(TestNamespace::new(&admin, &format!("helm-{stem}-w")).await?);
        }
        let watched_names: Vec<String> = watched.iter().map(|n| n.name().to_owned()).collect();
        let mut sets = vec!["namespace.create=true".to_owned()];
        if listed > 0 {
            sets.push(format!("watchNamespaces={{{}}}", watched_names.join(",")));
        }
        let rendered = template(&release, &ns, std::slice::from_ref(&example), &sets).await?;
        let all = objects(&rendered)?;
        let mut values = example_values.clone();
        for set in &sets {
            let (key, value) = set.split_once('=').context("--set key=value")?;
            let value = match value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                Some(list) => Value::from(list.split(',').collect::<Vec<_>>()),
                None => Value::from(value == "true"),
            };
            set_path(&mut values, key, value);
        }
        let values = with_defaults(values)?;
        check_rendered(&all, &values, &release, &ns)
            .with_context(|| format!("{}", example.display()))?;

        // Everything but the monitoring kinds (no CRDs here) is created for real.
        let (monitoring, apply): (Vec<Value>, Vec<Value>) = all
            .into_iter()
            .partition(|o| MONITORING_KINDS.contains(&kind(o)));
        let monitoring_enabled = values["serviceMonitor"]["enabled"].as_bool() == Some(true)
            || values["prometheusRule"]["enabled"].as_bool() == Some(true);
        ensure!(
            monitoring.is_empty() != monitoring_enabled,
            "{stem}: monitoring objects rendered iff enabled"
        );
        let mut manifest = String::new();
        for object in &apply {
            manifest += "---\n";
            manifest += &serde_yaml::to_string(object)?;
        }
        let result = async {
            // --warnings-as-errors: the namespace (rendered with namespace.create=true) warns
            // on Pod Security "restricted" violations of the Deployment's pod template.
            let out = kubectl(
                &[
                    "--warnings-as-errors",
                    "apply",
                    "--server-side",
                    "--field-manager=rotator-tests",
                    "-f",
                    "-",
                ],
                Some(&manifest),
            )
            .await?;
            ensure!(
                out.lines().count() == apply.len(),
                "{stem}: expected {} objects applied, got:\n{out}",
                apply.len()
            );
            let names = kubectl(&["get", "-f", "-", "-o", "name"], Some(&manifest)).await?;
            ensure!(
                names.lines().count() == apply.len(),
                "{stem}: expected {} objects on the API server, got:\n{names}",
                apply.len()
            );
            // kwok runs the pods: the operator's Deployments (one per shard) really roll out.
            let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
            for deployment in apply.iter().filter(|o| kind(o) == "Deployment") {
                let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
                cluster::wait_rollout_complete(&deployments, name, Duration::from_secs(60)).await?;
            }
            let name = fullname(&release);
            let name = name.as_str();
            // Cluster-wide, the release's ServiceAccount may patch Deployments here: the
            // chart's admission policy lets it set a restart annotation and nothing else.
            let enforced =
                if listed == 0 && values["admissionPolicy"]["enabled"].as_bool() == Some(true) {
                    let account = format!("system:serviceaccount:{ns}:{}", fullname(&release));
                    let policy = format!("{}-restart-annotation-only", fullname(&release));
                    policy_enforced_for(&account, &ns, name, &policy).await?;
                    ", admission policy enforced for the release's ServiceAccount"
                } else {
                    ""
                };
            eprintln!(
                "{stem}: {} objects created, rolled out{enforced}",
                apply.len()
            );
            Ok(())
        }
        .await;
        // Clean up the cluster-scoped objects and namespaces, whatever happened.
        let deleted = kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(&manifest),
        )
        .await;
        for watched in watched {
            watched.cleanup().await?;
        }
        namespace.cleanup().await?;
        result.with_context(|| format!("{}", example.display()))?;
        deleted?;
    }
    Ok(())
}

/// The namespaces the values watch, and whether they elect a leader.
fn watched_and_leader(values: &Value) -> Result<(Vec<&str>, bool)> {
    let watched = values["watchNamespaces"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let replicas = values["replicaCount"].as_i64().context("replicaCount")?;
    let leader = replicas > 1 || values["leaderElection"]["enabled"].as_bool() == Some(true);
    Ok((watched, leader))
}

/// What every rendering must say, given the (complete) values it was rendered with.
fn check_rendered(all: &[Value], values: &Value, release: &str, ns: &str) -> Result<()> {
    let name = fullname(release);
    let account = format!("system:serviceaccount:{ns}:{name}");
    let (watched, leader) = watched_and_leader(values)?;
    let shards: Vec<&str> = values["shards"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();

    // One Deployment without a shard, and one per shard.
    let unsharded = std::iter::once(None);
    let deployments: Vec<(Option<&str>, String)> = unsharded
        .chain(shards.iter().map(|s| Some(*s)))
        .map(|shard| (shard, suffixed(&name, shard)))
        .collect();
    let rendered: BTreeSet<&str> = all
        .iter()
        .filter(|o| kind(o) == "Deployment")
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    let want_names: BTreeSet<&str> = deployments.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(rendered, want_names, "the Deployments");
    for (shard, deployment_name) in &deployments {
        check_deployment(all, values, (&name, ns), *shard)
            .with_context(|| format!("Deployment {deployment_name}"))?;
    }
    // RBAC objects: where they are, and that they grant to this release's ServiceAccount.
    let mut rbac = BTreeSet::new();
    if watched.is_empty() {
        rbac.insert(format!("ClusterRole//{name}"));
        rbac.insert(format!("ClusterRoleBinding//{name}"));
        rbac.insert(format!("ClusterRole//{name}-cluster-targets"));
        rbac.insert(format!("ClusterRoleBinding//{name}-cluster-targets"));
    }
    for w in &watched {
        rbac.insert(format!("Role/{w}/{name}"));
        rbac.insert(format!("RoleBinding/{w}/{name}"));
    }
    if values["tenantRoles"]["create"].as_bool() == Some(true) {
        rbac.insert(format!("ClusterRole//{name}-edit"));
        rbac.insert(format!("ClusterRole//{name}-view"));
        rbac.insert(format!("ClusterRole//{name}-target-admin"));
    }
    if leader {
        rbac.insert(format!("Role/{ns}/{name}-leader-election"));
        rbac.insert(format!("RoleBinding/{ns}/{name}-leader-election"));
        // get/update on every Lease: the unsharded operator's and each shard's.
        let role = find(all, "Role", &format!("{name}-leader-election"))?;
        let leases: Vec<String> = deployments.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            role["rules"][0]["resourceNames"],
            serde_yaml::to_value(&leases)?,
            "the Leases of leader election"
        );
    }
    assert_eq!(
        rbac_objects(all),
        rbac,
        "the RBAC objects, shared by the shards"
    );
    for object in all.iter().filter(|o| kind(o).ends_with("Binding")) {
        if kind(object).starts_with("ValidatingAdmission") {
            continue;
        }
        assert_eq!(
            object["subjects"],
            serde_yaml::to_value(
                json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}])
            )?,
            "{} subjects",
            kind(object)
        );
    }

    // The admission policy names the release's ServiceAccount in the release namespace; its
    // binding puts exactly that policy into effect.
    let policy_name = format!("{name}-restart-annotation-only");
    if values["admissionPolicy"]["enabled"].as_bool() == Some(true) {
        let policy = find(all, "ValidatingAdmissionPolicy", &policy_name)?;
        let conditions = &policy["spec"]["matchConditions"];
        let expression = conditions[0]["expression"].as_str().unwrap_or_default();
        ensure!(
            conditions.as_sequence().map(Vec::len) == Some(1)
                && expression.contains("request.userInfo.username ==")
                && expression.contains(&format!("'{account}'")),
            "the policy must name {account}: {conditions:?}"
        );
        let binding = find(all, "ValidatingAdmissionPolicyBinding", &policy_name)?;
        assert_eq!(
            binding["spec"],
            serde_yaml::to_value(
                json!({"policyName": policy_name, "validationActions": ["Deny"]})
            )?
        );
    } else {
        ensure!(
            !all.iter()
                .any(|o| kind(o).starts_with("ValidatingAdmissionPolicy")),
            "admissionPolicy.enabled=false renders no policy"
        );
    }

    // The NetworkPolicy: the CIDRs and ports of the values.
    let np = &values["networkPolicy"];
    if np["enabled"].as_bool() == Some(true) {
        let policy = find(all, "NetworkPolicy", &name)?;
        let egress = policy["spec"]["egress"]
            .as_sequence()
            .context("egress")?
            .clone();
        let cidrs = |rule: &Value| -> Vec<Value> {
            rule["to"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|peer| peer["ipBlock"]["cidr"].clone())
                .collect()
        };
        let ports = |rule: &Value| -> Vec<Value> {
            rule["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| p["port"].clone())
                .collect()
        };
        let verify = np["verifyEndpoints"]["enabled"].as_bool() == Some(true);
        assert_eq!(
            &cidrs(&egress[1]),
            np["apiServer"]["cidrs"].as_sequence().context("cidrs")?
        );
        assert_eq!(
            &ports(&egress[1]),
            np["apiServer"]["ports"].as_sequence().context("ports")?
        );
        // Then one rule per target that is enabled, in this order, then the verify endpoints.
        let targets: Vec<&str> = ["redisSoftware", "redis", "ontap"]
            .into_iter()
            .filter(|t| np[*t]["enabled"].as_bool() != Some(false))
            .collect();
        assert_eq!(
            egress.len(),
            2 + targets.len() + usize::from(verify),
            "egress rules"
        );
        for (i, target) in targets.iter().enumerate() {
            let rule = &egress[2 + i];
            assert_eq!(
                &cidrs(rule),
                np[*target]["cidrs"].as_sequence().context("cidrs")?,
                "{target}"
            );
            assert_eq!(
                &ports(rule),
                np[*target]["ports"].as_sequence().context("ports")?,
                "{target}"
            );
        }
        if verify {
            assert_eq!(
                &cidrs(&egress[2 + targets.len()]),
                np["verifyEndpoints"]["cidrs"]
                    .as_sequence()
                    .context("cidrs")?
            );
        }
        let from = &policy["spec"]["ingress"][0]["from"];
        match np["metricsFrom"].as_sequence() {
            Some(peers) if !peers.is_empty() => {
                assert_eq!(from.as_sequence(), Some(peers), "metrics ingress peers")
            }
            _ => assert!(from.is_null(), "metrics ingress from anyone"),
        }
    } else {
        ensure!(!all.iter().any(|o| kind(o) == "NetworkPolicy"));
    }
    Ok(())
}

/// The Deployment of `shard` (`None`: the unsharded one): its pod, and its args and
/// environment, as the values say.
fn check_deployment(
    all: &[Value],
    values: &Value,
    (name, ns): (&str, &str),
    shard: Option<&str>,
) -> Result<()> {
    let (watched, leader) = watched_and_leader(values)?;
    let deployment = find(all, "Deployment", &suffixed(name, shard))?;
    assert_eq!(
        deployment["metadata"]["namespace"].as_str(),
        Some(ns),
        "Deployment namespace"
    );
    assert_eq!(
        deployment["spec"]["replicas"].as_i64(),
        values["replicaCount"].as_i64()
    );
    // A rolling update starts the new pod before the old one stops: without leader election,
    // two operators would act at once during every upgrade.
    let strategy = deployment["spec"]["strategy"]["type"].as_str();
    if leader {
        assert_ne!(strategy, Some("Recreate"), "leader election hands over");
    } else {
        assert_eq!(
            strategy,
            Some("Recreate"),
            "without leader election an upgrade must not run the old and the new pod together"
        );
    }
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"].as_str(), Some(name));
    let args = args_of(&deployment);
    ensure!(args.first().map(String::as_str) == Some("run"), "{args:?}");
    let mut want: Vec<String> = Vec::new();
    if !watched.is_empty() {
        want.push(format!("--namespace={}", watched.join(",")));
    }
    if leader {
        want.push("--leader-election".into());
        want.push(format!("--lease-name={}", suffixed(name, shard)));
        want.push(format!(
            "--lease-seconds={}",
            values["leaderElection"]["leaseSeconds"]
                .as_i64()
                .context("leaseSeconds")?
        ));
    }
    for (flag, key) in [
        ("--log-format", "logFormat"),
        ("--concurrency", "concurrency"),
        ("--calls-per-cluster", "callsPerCluster"),
        ("--request-timeout-seconds", "requestTimeoutSeconds"),
        ("--cleanup-timeout-seconds", "cleanupTimeoutSeconds"),
        ("--shard-patience-seconds", "shardPatienceSeconds"),
        ("--per-resource-metrics", "perResourceMetrics"),
    ] {
        let value = match &values[key] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => anyhow::bail!("{key}: {other:?}"),
        };
        want.push(format!("{flag}={value}"));
    }
    want.push(format!(
        "--http-addr=0.0.0.0:{}",
        values["metricsPort"].as_i64().context("metricsPort")?
    ));
    for (flag, key) in [
        ("--allow-insecure-http", "allowInsecureHttp"),
        ("--allow-verify-endpoints", "allowVerifyEndpoints"),
    ] {
        if values[key].as_bool() == Some(true) {
            want.push(flag.into());
        }
    }
    assert_eq!(args[1..], want[..], "the Deployment's args");
    let image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap_or_default(),
        values["image"]["tag"]
            .as_str()
            .filter(|t| !t.is_empty())
            .unwrap_or("0.1.0")
    );
    assert_eq!(pod["containers"][0]["image"].as_str(), Some(image.as_str()));
    assert_eq!(pod["containers"][0]["resources"], values["resources"]);

    // The shard: the environment variable, and a label of its own in the selector, so that
    // no two Deployments of shards select each other's pods.
    let container = &pod["containers"][0];
    let shard_env: Vec<&str> = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|e| e["name"].as_str() == Some("SHARD"))
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert_eq!(shard_env, Vec::from_iter(shard), "SHARD");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(selector[SHARD_LABEL].as_str(), shard, "selector");
    assert_eq!(pod_labels[SHARD_LABEL].as_str(), shard, "pod label");
    Ok(())
}

// ----------------------------------------------------------------------------------------
// the chart renders what deploy/ renders

/// The chart's RBAC equals the kustomize RBAC: the same objects and exactly the expected
/// rules, cluster-wide (deploy/base) and namespaced (deploy/overlays/namespaced), and no
/// leader-election Role without leader election.
#[tokio::test]
async fn the_charts_rbac_is_exactly_the_kustomize_rbac() -> Result<()> {
    let expected: BTreeSet<String> = EXPECTED_RULES.iter().map(|s| s.to_string()).collect();
    let expected_leader: BTreeSet<String> = EXPECTED_LEADER_RULES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let base = objects(&kustomize("deploy/base").await?)?;
    let overlay = objects(&kustomize("deploy/overlays/namespaced").await?)?;
    let kustomize_rules = rule_set(&find(&base, "ClusterRole", ROLE)?["rules"])?;
    same_rules(&kustomize_rules, &expected, "deploy/base's ClusterRole")?;
    same_rules(
        &rule_set(&find(&overlay, "Role", ROLE)?["rules"])?,
        &expected,
        "the namespaced overlay's Role",
    )?;
    let kustomize_leader = rule_set(&find(&base, "Role", LEADER_ROLE)?["rules"])?;
    same_rules(
        &kustomize_leader,
        &expected_leader,
        "deploy/base's Lease Role",
    )?;

    // Cluster-wide: exactly deploy/base's RBAC objects.
    let chart = render_example("cluster-wide", &[]).await?;
    assert_eq!(
        rbac_objects(&chart),
        rbac_objects(&base),
        "the chart's RBAC objects, cluster-wide"
    );
    same_rules(
        &rule_set(&find(&chart, "ClusterRole", ROLE)?["rules"])?,
        &kustomize_rules,
        "the chart's ClusterRole (vs deploy/base)",
    )?;

    // Namespaced, in two namespaces: a Role in each, no cluster-scoped RBAC.
    let chart = render_example("namespaced", &[]).await?;
    let mut want = BTreeSet::new();
    for ns in ["shop", "payments"] {
        want.insert(format!("Role/{ns}/{ROLE}"));
        want.insert(format!("RoleBinding/{ns}/{ROLE}"));
        same_rules(
            &rule_set(&find_in(&chart, "Role", ns, ROLE)?["rules"])?,
            &expected,
            &format!("the chart's Role in {ns}"),
        )?;
    }
    want.insert(format!("Role/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"));
    want.insert(format!("RoleBinding/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"));
    want.insert(format!("ClusterRole//{TENANT_EDIT_ROLE}"));
    want.insert(format!("ClusterRole//{TENANT_VIEW_ROLE}"));
    want.insert(format!("ClusterRole//{TENANT_TARGET_ADMIN_ROLE}"));
    assert_eq!(
        rbac_objects(&chart),
        want,
        "the chart's RBAC objects, namespaced (the tenant roles are cluster-scoped)"
    );
    for name in [TENANT_EDIT_ROLE, TENANT_VIEW_ROLE, TENANT_TARGET_ADMIN_ROLE] {
        let original = find(&base, "ClusterRole", name)?;
        let rendered = find(&chart, "ClusterRole", name)?;
        same_rules(
            &rule_set(&rendered["rules"])?,
            &rule_set(&original["rules"])?,
            &format!("the chart's {name} (vs deploy/base)"),
        )?;
        for label in [
            "rbac.authorization.k8s.io/aggregate-to-admin",
            "rbac.authorization.k8s.io/aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-view",
        ] {
            assert_eq!(
                rendered["metadata"]["labels"][label], original["metadata"]["labels"][label],
                "{name}: {label}"
            );
        }
    }
    // One namespace, as the overlay: the very same objects.
    let chart = render_example("namespaced", &["watchNamespaces={shop}"]).await?;
    assert_eq!(rbac_objects(&chart), rbac_objects(&overlay));

    for (chart, what) in [
        (render_example("cluster-wide", &[]).await?, "cluster-wide"),
        (chart, "namespaced"),
    ] {
        same_rules(
            &rule_set(&find(&chart, "Role", LEADER_ROLE)?["rules"])?,
            &kustomize_leader,
            &format!("the chart's Lease Role ({what})"),
        )?;
        // Bindings: roleRef and subject exactly as deploy/'s.
        for object in chart
            .iter()
            .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
        {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let source = if kind(object) == "RoleBinding" && name == ROLE {
                &overlay
            } else {
                &base
            };
            let original = find(source, kind(object), name)?;
            assert_eq!(
                object["roleRef"], original["roleRef"],
                "{what}: {name} roleRef"
            );
            assert_eq!(
                object["subjects"], original["subjects"],
                "{what}: {name} subjects"
            );
        }
    }

    // One replica without leader election: no Lease Role, no --leader-election.
    let chart = render_example("single-replica", &[]).await?;
    ensure!(
        !rbac_objects(&chart).iter().any(|o| o.contains(LEADER_ROLE)),
        "single replica: no leader-election Role"
    );
    ensure!(!args_of(&find(&chart, "Deployment", RELEASE)?).contains(&"--leader-election".into()));
    // … unless asked for.
    let chart = render_example("single-replica", &["leaderElection.enabled=true"]).await?;
    find(&chart, "Role", LEADER_ROLE)?;
    ensure!(args_of(&find(&chart, "Deployment", RELEASE)?).contains(&"--leader-election".into()));
    Ok(())
}

/// With the defaults, the Deployment's pod, the NetworkPolicy and the admission policy are
/// deploy/base's (the chart only adds the instance label to selectors, and passes as flags
/// what deploy/ leaves to the binary's defaults).
#[tokio::test]
async fn the_charts_objects_are_deploy_bases() -> Result<()> {
    let base = objects(&kustomize("deploy/base").await?)?;
    let chart = objects(&template(RELEASE, OPERATOR_NAMESPACE, &[], &[]).await?)?;

    let mut kinds_base: Vec<String> = base.iter().map(|o| kind(o).to_owned()).collect();
    kinds_base.retain(|k| k != "Namespace");
    kinds_base.sort();
    let mut kinds_chart: Vec<String> = chart.iter().map(|o| kind(o).to_owned()).collect();
    kinds_chart.sort();
    assert_eq!(
        kinds_chart, kinds_base,
        "the kinds rendered (the Namespace is opt-in)"
    );
    // … with namespace.create, the Namespace too, with deploy/'s Pod Security labels.
    let with_ns = objects(
        &template(
            RELEASE,
            OPERATOR_NAMESPACE,
            &[],
            &["namespace.create=true".into()],
        )
        .await?,
    )?;
    let namespace = find(&with_ns, "Namespace", OPERATOR_NAMESPACE)?;
    let original = find(&base, "Namespace", OPERATOR_NAMESPACE)?;
    for (key, value) in original["metadata"]["labels"]
        .as_mapping()
        .context("labels")?
    {
        let key = key.as_str().unwrap_or_default();
        if key.starts_with("pod-security.") {
            assert_eq!(&namespace["metadata"]["labels"][key], value, "{key}");
        }
    }

    for object in &chart {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let original = find(&base, kind(object), name)
            .with_context(|| format!("deploy/base has no {} {name}", kind(object)))?;
        assert_eq!(
            object["metadata"]["namespace"],
            original["metadata"]["namespace"],
            "{} {name}: namespace",
            kind(object)
        );
    }

    // The pod: everything but the selector labels, the args and LOG_FORMAT (now a flag).
    let deployment = find(&chart, "Deployment", RELEASE)?;
    let original = find(&base, "Deployment", RELEASE)?;
    let (pod, original_pod) = (
        &deployment["spec"]["template"]["spec"],
        &original["spec"]["template"]["spec"],
    );
    for key in [
        "serviceAccountName",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "securityContext",
    ] {
        assert_eq!(pod[key], original_pod[key], "pod {key}");
    }
    assert_eq!(deployment["spec"]["replicas"], original["spec"]["replicas"]);
    let (container, original_container) = (&pod["containers"][0], &original_pod["containers"][0]);
    for key in [
        "name",
        "image",
        "imagePullPolicy",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(container[key], original_container[key], "container {key}");
    }
    let mut env = container["env"].clone();
    let mut original_env = original_container["env"].clone();
    if let Some(list) = original_env.as_sequence_mut() {
        list.retain(|e| e["name"].as_str() != Some("LOG_FORMAT"));
    }
    if let Some(list) = env.as_sequence_mut() {
        list.retain(|e| e["name"].as_str() != Some("LOG_FORMAT"));
    }
    assert_eq!(
        env, original_env,
        "container env (LOG_FORMAT is --log-format=json)"
    );
    ensure!(args_of(&deployment).contains(&"--log-format=json".into()));

    // The NetworkPolicy: the same rules.
    let policy = find(&chart, "NetworkPolicy", RELEASE)?;
    let original = find(&base, "NetworkPolicy", RELEASE)?;
    for key in ["policyTypes", "ingress", "egress"] {
        assert_eq!(
            policy["spec"][key], original["spec"][key],
            "NetworkPolicy {key}"
        );
    }

    // The admission policy and binding: identical specs (same ServiceAccount here). Compared
    // with the files themselves: kustomize re-folds the `>-` expressions with extra blank lines.
    for (kind_, file) in [
        (
            "ValidatingAdmissionPolicy",
            "deploy/base/validatingadmissionpolicy.yaml",
        ),
        (
            "ValidatingAdmissionPolicyBinding",
            "deploy/base/validatingadmissionpolicybinding.yaml",
        ),
    ] {
        let name = "password-rotator-restart-annotation-only";
        let original: Value =
            serde_yaml::from_str(&std::fs::read_to_string(cluster::repo_root().join(file))?)?;
        assert_eq!(
            find(&chart, kind_, name)?["spec"],
            original["spec"],
            "{kind_} spec (vs {file})"
        );
    }
    Ok(())
}

/// The values reach the Deployment's args, and every flag is one the binary knows.
#[tokio::test]
async fn the_values_become_flags_the_binary_understands() -> Result<()> {
    let help = run_help().await?;
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &["--leader-election", "--log-format=json", "--concurrency=16"],
        ),
        (
            &[
                "watchNamespaces={a,b}",
                "replicaCount=1",
                "logFormat=text",
                "concurrency=4",
                "callsPerCluster=2",
                "requestTimeoutSeconds=10",
                "allowInsecureHttp=true",
                "allowVerifyEndpoints=true",
                "metricsPort=9090",
            ],
            &[
                "--namespace=a,b",
                "--log-format=text",
                "--concurrency=4",
                "--calls-per-cluster=2",
                "--request-timeout-seconds=10",
                "--allow-insecure-http",
                "--allow-verify-endpoints",
                "--http-addr=0.0.0.0:9090",
            ],
        ),
    ];
    for (sets, want) in cases {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let chart = objects(&template(RELEASE, OPERATOR_NAMESPACE, &[], &sets).await?)?;
        let deployment = find(&chart, "Deployment", RELEASE)?;
        let args = args_of(&deployment);
        for flag in *want {
            ensure!(
                args.contains(&flag.to_string()),
                "{sets:?}: {flag} in {args:?}"
            );
        }
        ensure!(
            !sets.is_empty() || !args.iter().any(|a| a.starts_with("--allow-")),
            "the --allow-* flags are off by default: {args:?}"
        );
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or_default();
            ensure!(
                help.contains(flag),
                "the binary has no flag {flag}:\n{help}"
            );
        }
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for env in container["env"].as_sequence().into_iter().flatten() {
            let name = env["name"].as_str().unwrap_or_default();
            ensure!(
                name == "POD_NAME" || help.contains(&format!("[env: {name}=")),
                "the binary reads no environment variable {name}"
            );
        }
    }
    // A bad log format fails at render time.
    let bad = template(RELEASE, OPERATOR_NAMESPACE, &[], &["logFormat=xml".into()]).await;
    ensure!(bad.is_err(), "logFormat=xml must not render");
    Ok(())
}

/// `shards={a,b}`: three Deployments, the unsharded one and one per shard, each with its own
/// shard and Lease, sharing the ServiceAccount and RBAC; the metrics Service and the
/// NetworkPolicy select the pods of all three, and no shard's Deployment selects another's.
#[tokio::test]
async fn each_shard_gets_a_deployment_and_a_lease_of_its_own() -> Result<()> {
    let sets = ["shards={a,b}", "metricsService.enabled=true"].map(str::to_owned);
    let chart = objects(&template(RELEASE, OPERATOR_NAMESPACE, &[], &sets).await?)?;
    let mut values = Value::Mapping(Default::default());
    set_path(&mut values, "shards", Value::from(vec!["a", "b"]));
    set_path(&mut values, "metricsService.enabled", Value::from(true));
    check_rendered(&chart, &with_defaults(values)?, RELEASE, OPERATOR_NAMESPACE)?;

    let deployments: Vec<&Value> = chart.iter().filter(|o| kind(o) == "Deployment").collect();
    let env_shard = |d: &Value| -> Option<String> {
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some("SHARD"))
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    };
    let lease = |d: &Value| -> Option<String> {
        args_of(d)
            .iter()
            .find_map(|a| a.strip_prefix("--lease-name=").map(str::to_owned))
    };
    let shards_and_leases: BTreeSet<(Option<String>, Option<String>)> = deployments
        .iter()
        .map(|d| (env_shard(d), lease(d)))
        .collect();
    let want = [
        (None, RELEASE),
        (Some("a"), "password-rotator-a"),
        (Some("b"), "password-rotator-b"),
    ]
    .map(|(shard, lease)| (shard.map(str::to_owned), Some(lease.to_owned())));
    assert_eq!(
        shards_and_leases,
        BTreeSet::from(want),
        "one shard and Lease each"
    );

    let unsharded = objects(&template(RELEASE, OPERATOR_NAMESPACE, &[], &[]).await?)?;
    assert_eq!(
        rbac_objects(&chart),
        rbac_objects(&unsharded),
        "the shards share the RBAC"
    );

    // Selection by labels: `selector` (matchLabels) selects a pod with `labels`.
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_mapping()
            .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    let service = find(&chart, "Service", &format!("{RELEASE}-metrics"))?;
    let policy = find(&chart, "NetworkPolicy", RELEASE)?;
    for deployment in &deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        ensure!(
            selects(&service["spec"]["selector"], labels),
            "the metrics Service selects the pods of {name}"
        );
        ensure!(
            selects(&policy["spec"]["podSelector"]["matchLabels"], labels),
            "the NetworkPolicy selects the pods of {name}"
        );
        for other in deployments
            .iter()
            .filter(|o| env_shard(o) != env_shard(deployment))
        {
            let selector = &deployment["spec"]["selector"]["matchLabels"];
            let other_labels = &other["spec"]["template"]["metadata"]["labels"];
            ensure!(
                env_shard(deployment).is_none() || !selects(selector, other_labels),
                "{name} selects the pods of {}",
                other["metadata"]["name"].as_str().unwrap_or_default()
            );
        }
    }

    ensure!(
        run_help().await?.contains("[env: SHARD="),
        "the binary reads SHARD"
    );
    // What --shard refuses, and a shard listed twice, fail at render time.
    for bad in ["shards={A}", "shards={a_b}", "shards={a,a}"] {
        let rendered = template(RELEASE, OPERATOR_NAMESPACE, &[], &[bad.to_owned()]).await;
        ensure!(rendered.is_err(), "{bad} must not render");
    }
    Ok(())
}

/// The ServiceMonitor scrapes the metrics Service, and the PrometheusRule's alerts use
/// metrics the operator exports (src/metrics.rs, encoded by the library itself).
#[tokio::test]
async fn the_monitoring_objects_use_real_metrics() -> Result<()> {
    let chart = render_example("monitoring", &[]).await?;
    let monitor = find(&chart, "ServiceMonitor", RELEASE)?;
    let service = find(&chart, "Service", &format!("{RELEASE}-metrics"))?;
    assert_eq!(
        monitor["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .context("ServiceMonitor selector")?
    {
        assert_eq!(
            &service["metadata"]["labels"][key.as_str().unwrap_or_default()],
            value,
            "the ServiceMonitor selects the metrics Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );

    // The chart's rules are deploy/monitoring/alerts.yaml's (tests/alerts.rs tests them with
    // promtool against a real run), through the chart's byte-for-byte copy.
    let root = cluster::repo_root();
    let source = std::fs::read_to_string(root.join("deploy/monitoring/alerts.yaml"))?;
    let copy = std::fs::read_to_string(root.join(CHART).join("files/alerts.yaml"))?;
    ensure!(
        source == copy,
        "{CHART}/files/alerts.yaml differs from deploy/monitoring/alerts.yaml: copy it"
    );
    let source: Value = serde_yaml::from_str(&source)?;
    let rule = find(&chart, "PrometheusRule", RELEASE)?;
    assert_eq!(
        rule["spec"], source,
        "the PrometheusRule's spec is deploy/monitoring/alerts.yaml"
    );

    let metrics = password_rotator::metrics::Metrics::new();
    metrics.reconcile_error("kubernetes");
    metrics.rotation_finished("blocked", None);
    metrics.last_success("shop", "orders", jiff::Timestamp::now());
    let status: password_rotator::resource::PasswordRotationStatus =
        serde_json::from_value(json!({
            "phase": "Blocked",
            "nextRotationTime": "2030-01-01T00:00:00Z",
            "conditions": [{"type": "Degraded", "status": "True", "reason": "RolloutTimeout",
                            "message": "", "lastTransitionTime": "2030-01-01T00:00:00Z"}],
        }))?;
    let on = password_rotator::resource_index::NamedTarget {
        kind: password_rotator::rotation_target::TargetKind::RotationTarget,
        namespace: Some("shop".into()),
        name: "rs".into(),
    };
    metrics.resource_status("shop", "orders", &on, &status);
    let target: password_rotator::rotation_target::TargetStatus = serde_json::from_value(json!({
        "conditions": [{"type": "Ready", "status": "False", "reason": "Unauthorized",
                        "message": "", "lastTransitionTime": "2030-01-01T00:00:00Z"}],
        "certificateExpiresTime": "2030-01-01T00:00:00Z",
        "adminPasswordExpiresTime": "2030-01-01T00:00:00Z",
        "resources": 1,
    }))?;
    metrics.target_status(
        password_rotator::rotation_target::TargetKind::RotationTarget,
        "shop",
        "rs",
        &target,
    );
    {
        use password_rotator::targets::RequestObserver;
        metrics.started("redisSoftware", "get_user");
        metrics.finished("redisSoftware", "get_user", "503", Duration::from_millis(5));
    }
    let exported = metrics.encode();

    let rules = rule["spec"]["groups"][0]["rules"]
        .as_sequence()
        .context("PrometheusRule rules")?;
    let alerts: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        alerts,
        BTreeSet::from([
            "PasswordRotationOverdue",
            "PasswordRotationBlocked",
            "PasswordRotationDegraded",
            "PasswordRotatorTargetErrors",
            "PasswordRotatorReconcileErrors",
            "PasswordRotationNotCompleted",
            "PasswordRotatorTargetNotReady",
            "PasswordRotatorTargetCertificateExpiring",
            "PasswordRotatorTargetAdminPasswordExpiring",
            "PasswordRotationsOverdueOnTarget",
            "PasswordRotationsBlockedOnTarget",
            "PasswordRotationsDegradedOnTarget",
        ])
    );
    for rule in rules {
        let expr = rule["expr"].as_str().context("expr")?;
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("password_rotator_"))
            .collect();
        ensure!(!names.is_empty(), "{expr}: names no metric");
        for name in names {
            ensure!(
                exported
                    .lines()
                    .any(|l| l.split(['{', ' ']).next() == Some(name)),
                "{expr}: the operator exports no {name}:\n{exported}"
            );
        }
        ensure!(
            rule["labels"]["severity"].as_str() == Some("warning"),
            "{expr}: label severity"
        );
    }
    // The severity comes from the values.
    let critical = render_example("monitoring", &["prometheusRule.severity=critical"]).await?;
    let rule = find(&critical, "PrometheusRule", RELEASE)?;
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_sequence()
        .context("PrometheusRule rules")?;
    ensure!(
        rules
            .iter()
            .all(|r| r["labels"]["severity"].as_str() == Some("critical")),
        "prometheusRule.severity sets every alert's severity"
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------
// RBAC, live: a full rotation as the chart's ServiceAccount

#[tokio::test]
async fn the_operator_rotates_with_only_the_charts_namespaced_roles() -> Result<()> {
    // One watched namespace (install_rbac moves everything into the test namespace).
    let chart = render_example("namespaced", &["watchNamespaces={shop}"]).await?;
    assert_eq!(
        find(&chart, "ServiceAccount", SERVICE_ACCOUNT)?["metadata"]["namespace"].as_str(),
        Some(OPERATOR_NAMESPACE)
    );
    rbac::rotates_with_only_these_roles("helm-rbac", &chart).await
}

/// As `account`, on Deployment `name`: scaling is denied by `policy` (waiting until the new
/// policy and RBAC are in effect), the restart annotation is allowed.
async fn policy_enforced_for(account: &str, ns: &str, name: &str, policy: &str) -> Result<()> {
    let operator: Api<Deployment> = Api::namespaced(impersonating_client(account).await?, ns);
    let scale = json!({"spec": {"replicas": 5}});
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let denial = match operator.patch(name, &dry_run, &Patch::Merge(&scale)).await {
            Ok(_) => "allowed".to_owned(),
            Err(kube::Error::Api(status)) => status.message,
            Err(e) => return Err(e.into()),
        };
        if denial.contains(&format!("ValidatingAdmissionPolicy '{policy}'")) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{account} scaling {name}: not denied by {policy} within 60 s: {denial}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "rotation.rotator.dev/orders-cache": "20261123080000-0a1b2c",
    }}}}});
    operator
        .patch(name, &PatchParams::default(), &Patch::Merge(&restart))
        .await
        .with_context(|| format!("{account} setting its restart annotation on {name}"))?;
    Ok(())
}

// ----------------------------------------------------------------------------------------
// helpers

/// The helm binary that `make deps` built (tests/cluster/helm.sh prints its path).
fn helm_path() -> Result<PathBuf> {
    static PATH: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let script = cluster::repo_root().join("tests/cluster/helm.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(PathBuf::from(path))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

async fn helm(args: &[String]) -> Result<String> {
    let out = Command::new(helm_path()?)
        .args(args)
        .current_dir(cluster::repo_root())
        .output()
        .await?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "helm {} failed:\n{}\n{stdout}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// `helm template <release> <chart> -n <ns> -f <values>... --set <set>...`
async fn template(release: &str, ns: &str, values: &[PathBuf], sets: &[String]) -> Result<String> {
    let mut args: Vec<String> = ["template", release, CHART, "--namespace", ns]
        .map(str::to_owned)
        .into();
    for file in values {
        args.extend(["-f".to_owned(), file.display().to_string()]);
    }
    for set in sets {
        args.extend(["--set".to_owned(), set.clone()]);
    }
    helm(&args).await
}

/// An example rendered as release `password-rotator` in `password-rotator-system`.
async fn render_example(name: &str, sets: &[&str]) -> Result<Vec<Value>> {
    let file = cluster::repo_root()
        .join(CHART)
        .join("examples")
        .join(format!("{name}.yaml"));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    objects(&template(RELEASE, OPERATOR_NAMESPACE, &[file], &sets).await?)
}

fn examples() -> Result<Vec<PathBuf>> {
    let dir = cluster::repo_root().join(CHART).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.path()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `name`, or `name-<shard>` for a shard: a shard's Deployment and Lease.
fn suffixed(name: &str, shard: Option<&str>) -> String {
    match shard {
        Some(shard) => format!("{name}-{shard}"),
        None => name.to_owned(),
    }
}

/// The chart's objects' name for `release` (the chart's fullname helper).
fn fullname(release: &str) -> String {
    if release.contains("password-rotator") {
        release.to_owned()
    } else {
        format!("{release}-password-rotator")
    }
}

fn find_in(all: &[Value], kind_: &str, ns: &str, name: &str) -> Result<Value> {
    all.iter()
        .find(|o| {
            kind(o) == kind_
                && o["metadata"]["namespace"].as_str() == Some(ns)
                && o["metadata"]["name"].as_str() == Some(name)
        })
        .cloned()
        .with_context(|| format!("no {kind_} {ns}/{name}"))
}

fn args_of(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// values.yaml with `overrides` merged in (maps merged, everything else replaced), as Helm does.
fn with_defaults(overrides: Value) -> Result<Value> {
    let mut values: Value = serde_yaml::from_str(&std::fs::read_to_string(
        cluster::repo_root().join(CHART).join("values.yaml"),
    )?)?;
    merge(&mut values, overrides);
    Ok(values)
}

fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Mapping(base), Value::Mapping(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Sets `a.b.c` in a YAML map, creating the maps on the way.
fn set_path(values: &mut Value, path: &str, value: Value) {
    let mut slot = values;
    for key in path.split('.') {
        if !slot.is_mapping() {
            *slot = Value::Mapping(Default::default());
        }
        let map = slot.as_mapping_mut().expect("a map");
        slot = map.entry(Value::from(key)).or_insert(Value::Null);
    }
    *slot = value;
}
