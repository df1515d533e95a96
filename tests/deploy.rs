//! The installation manifests (deploy/) against the real control plane:
//!
//! * every object of `deploy/base` and of the built `deploy/overlays/namespaced` passes a
//!   server-side dry run (schema, admission, and Pod Security "restricted": the operator's
//!   namespace warns on violations and warnings fail the test);
//! * the RBAC rules are exactly the expected set (adding a permission fails a test), the same
//!   in the ClusterRole and the namespaced Role;
//! * the operator, run as the ServiceAccount (impersonation) with only the namespaced
//!   overlay's Roles, completes a full rotation with a Deployment rolled out, and that identity
//!   can do nothing more than the expected set;
//! * the ValidatingAdmissionPolicy of `deploy/base`, on the real API server, lets the operator's
//!   ServiceAccount change only its restart annotations (`rotation.rotator.dev/<name>` on the
//!   pod template) of Deployments, StatefulSets and DaemonSets, and leaves everyone else alone.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use password_rotator::resource::PasswordRotation;
use password_rotator::rotation_target::RotationTarget;
use rotator_test_support::cluster::{self, TestNamespace};
use serde_json::json;
use serde_yaml::Value;

use common::rbac::{
    self, CLUSTER_TARGETS_ROLE, EXPECTED_CLUSTER_TARGETS_RULES, EXPECTED_LEADER_RULES,
    EXPECTED_RULES, EXPECTED_TARGET_ADMIN_RULES, EXPECTED_TENANT_EDIT_RULES,
    EXPECTED_TENANT_VIEW_RULES, LEADER_ROLE, ROLE, SERVICE_ACCOUNT, TENANT_EDIT_ROLE,
    TENANT_TARGET_ADMIN_ROLE, TENANT_VIEW_ROLE, can, find, impersonating_client, kind, kubectl,
    kustomize, objects, rbac_objects, rule_set, run_help, same_rules, wait_allowed,
};

const OPERATOR_NAMESPACE: &str = "password-rotator-system";
const WATCHED_NAMESPACE: &str = "shop";
const SERVER_SIDE_APPLY: [&str; 5] = [
    "apply",
    "--server-side",
    "--field-manager=deploy-test",
    "-f",
    "-",
];

// ----------------------------------------------------------------------------------------
// a. server-side dry run

#[tokio::test]
async fn every_manifest_passes_a_server_side_dry_run() -> Result<()> {
    cluster::ensure_cluster().await?;
    let base = kustomize("deploy/base").await?;
    let overlay = kustomize("deploy/overlays/namespaced").await?;

    // Namespaced objects cannot be dry-run into a namespace that does not exist: create the
    // operator's namespace (as rendered, with its Pod Security labels) and the example
    // watched namespace for real. `apply` makes a second run a no-op.
    let namespace = objects(&base)?
        .into_iter()
        .find(|o| kind(o) == "Namespace")
        .context("deploy/base has no Namespace")?;
    kubectl(
        &SERVER_SIDE_APPLY,
        Some(&serde_yaml::to_string(&namespace)?),
    )
    .await?;
    let shop = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {WATCHED_NAMESPACE}\n");
    kubectl(&SERVER_SIDE_APPLY, Some(&shop)).await?;

    for (name, rendered) in [
        ("deploy/base", &base),
        ("deploy/overlays/namespaced", &overlay),
    ] {
        // --warnings-as-errors: the operator's namespace has pod-security.kubernetes.io/warn:
        // restricted, so a pod template that breaks the restricted profile fails here.
        // Server-side apply: other tests create the same cluster-scoped objects at the same
        // moment, and a client-side apply would race them (AlreadyExists) or warn about their
        // missing last-applied annotation.
        let out = kubectl(
            &[
                "--warnings-as-errors",
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=deploy-dry-run",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(rendered),
        )
        .await
        .with_context(|| format!("dry run of {name}"))?;
        let count = objects(rendered)?.len();
        ensure!(
            out.lines()
                .filter(|l| l.contains("(server dry run)"))
                .count()
                == count,
            "{name}: expected {count} objects in the dry run, got:\n{out}"
        );
    }
    Ok(())
}

#[test]
fn every_manifest_file_is_part_of_a_kustomization() -> Result<()> {
    for dir in ["deploy/base", "deploy/overlays/namespaced"] {
        let root = cluster::repo_root().join(dir);
        let kustomization: Value =
            serde_yaml::from_str(&std::fs::read_to_string(root.join("kustomization.yaml"))?)?;
        let mut listed = BTreeSet::new();
        for key in ["resources", "patches"] {
            for entry in kustomization[key].as_sequence().into_iter().flatten() {
                let path = entry.as_str().or_else(|| entry["path"].as_str());
                if let Some(path) = path.filter(|p| p.ends_with(".yaml")) {
                    listed.insert(path.to_owned());
                }
            }
        }
        for file in std::fs::read_dir(&root)? {
            let file = file?.file_name().to_string_lossy().into_owned();
            if file.ends_with(".yaml") && file != "kustomization.yaml" {
                ensure!(
                    listed.contains(&file),
                    "{dir}/{file} is not used by {dir}/kustomization.yaml"
                );
            }
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// b. RBAC: exactly the expected rules

#[tokio::test]
async fn the_rbac_rules_are_exactly_the_expected_set() -> Result<()> {
    let expected: BTreeSet<String> = EXPECTED_RULES.iter().map(|s| s.to_string()).collect();
    let expected_leader: BTreeSet<String> = EXPECTED_LEADER_RULES
        .iter()
        .map(|s| s.to_string())
        .collect();

    let base = objects(&kustomize("deploy/base").await?)?;
    let overlay = objects(&kustomize("deploy/overlays/namespaced").await?)?;

    // Which RBAC objects exist at all, and where.
    assert_eq!(
        rbac_objects(&base),
        BTreeSet::from([
            format!("ClusterRole//{ROLE}"),
            format!("ClusterRoleBinding//{ROLE}"),
            format!("ClusterRole//{CLUSTER_TARGETS_ROLE}"),
            format!("ClusterRoleBinding//{CLUSTER_TARGETS_ROLE}"),
            format!("Role/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"),
            format!("RoleBinding/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"),
            format!("ClusterRole//{TENANT_EDIT_ROLE}"),
            format!("ClusterRole//{TENANT_VIEW_ROLE}"),
            format!("ClusterRole//{TENANT_TARGET_ADMIN_ROLE}"),
        ]),
        "deploy/base's RBAC objects"
    );
    assert_eq!(
        rbac_objects(&overlay),
        BTreeSet::from([
            format!("Role/{WATCHED_NAMESPACE}/{ROLE}"),
            format!("RoleBinding/{WATCHED_NAMESPACE}/{ROLE}"),
            format!("Role/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"),
            format!("RoleBinding/{OPERATOR_NAMESPACE}/{LEADER_ROLE}"),
            format!("ClusterRole//{TENANT_EDIT_ROLE}"),
            format!("ClusterRole//{TENANT_VIEW_ROLE}"),
            format!("ClusterRole//{TENANT_TARGET_ADMIN_ROLE}"),
        ]),
        "the namespaced overlay's RBAC objects (no cluster-scoped ones for the operator)"
    );
    for rendered in [&base, &overlay] {
        for (name, rules) in [
            (TENANT_EDIT_ROLE, EXPECTED_TENANT_EDIT_RULES),
            (TENANT_VIEW_ROLE, EXPECTED_TENANT_VIEW_RULES),
            (TENANT_TARGET_ADMIN_ROLE, EXPECTED_TARGET_ADMIN_RULES),
        ] {
            let expected: BTreeSet<String> = rules.iter().map(|s| s.to_string()).collect();
            same_rules(
                &rule_set(&find(rendered, "ClusterRole", name)?["rules"])?,
                &expected,
                name,
            )?;
        }
    }

    let cluster_targets: BTreeSet<String> = EXPECTED_CLUSTER_TARGETS_RULES
        .iter()
        .map(|s| s.to_string())
        .collect();
    same_rules(
        &rule_set(&find(&base, "ClusterRole", CLUSTER_TARGETS_ROLE)?["rules"])?,
        &cluster_targets,
        CLUSTER_TARGETS_ROLE,
    )?;
    let cluster_role = find(&base, "ClusterRole", ROLE)?;
    let role = find(&overlay, "Role", ROLE)?;
    same_rules(
        &rule_set(&cluster_role["rules"])?,
        &expected,
        "the ClusterRole's rules",
    )?;
    same_rules(
        &rule_set(&role["rules"])?,
        &expected,
        "the namespaced Role's rules",
    )?;
    for rendered in [&base, &overlay] {
        let leader = find(rendered, "Role", LEADER_ROLE)?;
        same_rules(
            &rule_set(&leader["rules"])?,
            &expected_leader,
            "the leader-election Role's rules",
        )?;
    }

    // Every binding grants its role to the operator's ServiceAccount and to nobody else.
    for (rendered, kind, name, role_kind) in [
        (&base, "ClusterRoleBinding", ROLE, "ClusterRole"),
        (
            &base,
            "ClusterRoleBinding",
            CLUSTER_TARGETS_ROLE,
            "ClusterRole",
        ),
        (&base, "RoleBinding", LEADER_ROLE, "Role"),
        (&overlay, "RoleBinding", ROLE, "Role"),
        (&overlay, "RoleBinding", LEADER_ROLE, "Role"),
    ] {
        let binding = find(rendered, kind, name)?;
        assert_eq!(
            binding["roleRef"],
            serde_yaml::to_value(json!({
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": name,
            }))?,
            "{kind} {name}: roleRef"
        );
        assert_eq!(
            binding["subjects"],
            serde_yaml::to_value(json!([{
                "kind": "ServiceAccount",
                "name": SERVICE_ACCOUNT,
                "namespace": OPERATOR_NAMESPACE,
            }]))?,
            "{kind} {name}: subjects"
        );
    }

    // The Deployment: runs as the ServiceAccount, hardened, probes on 8080; the overlay
    // confines it to the watched namespace.
    for (rendered, watch) in [(&base, None), (&overlay, Some(WATCHED_NAMESPACE))] {
        let deployment = find(rendered, "Deployment", "password-rotator")?;
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"].as_str(), Some(SERVICE_ACCOUNT));
        assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
        assert_eq!(security["runAsUser"].as_i64(), Some(65532));
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
        assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
        assert_eq!(
            security["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(8080));
        let env = |name: &str| {
            container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|e| e["name"].as_str() == Some(name))
                .cloned()
        };
        assert_eq!(
            env("LOG_FORMAT").and_then(|e| e["value"].as_str().map(str::to_owned)),
            Some("json".into())
        );
        for (var, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            assert_eq!(
                env(var).and_then(|e| e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .map(str::to_owned)),
                Some(field.into()),
                "{var} from the downward API"
            );
        }
        assert_eq!(
            env("WATCH_NAMESPACE").and_then(|e| e["value"].as_str().map(str::to_owned)),
            watch.map(str::to_owned),
            "WATCH_NAMESPACE"
        );
        // ClusterRotationTargets' Secrets are in the operator's own namespace; a namespaced
        // install serves none.
        assert_eq!(
            env("CLUSTER_TARGET_NAMESPACE").and_then(|e| e["valueFrom"]["fieldRef"]["fieldPath"]
                .as_str()
                .map(str::to_owned)),
            watch.is_none().then(|| "metadata.namespace".to_owned()),
            "CLUSTER_TARGET_NAMESPACE"
        );
    }
    Ok(())
}

/// The Deployment passes only flags and environment variables the binary knows (clap lists
/// both in `run --help`; POD_NAME is read directly, for events and the Lease identity).
#[tokio::test]
async fn the_deployment_uses_only_what_the_binary_understands() -> Result<()> {
    let help = run_help().await?;
    for dir in ["deploy/base", "deploy/overlays/namespaced"] {
        let rendered = objects(&kustomize(dir).await?)?;
        let deployment = find(&rendered, "Deployment", "password-rotator")?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        ensure!(args.first() == Some(&"run"), "{dir}: args {args:?}");
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or_default();
            ensure!(
                help.contains(flag),
                "{dir}: the binary has no flag {flag}:\n{help}"
            );
        }
        for env in container["env"].as_sequence().into_iter().flatten() {
            let name = env["name"].as_str().unwrap_or_default();
            ensure!(
                name == "POD_NAME" || help.contains(&format!("[env: {name}=")),
                "{dir}: the binary reads no environment variable {name}:\n{help}"
            );
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// b. RBAC: the operator works with the namespaced Roles only, and nothing more is granted

#[tokio::test]
async fn the_operator_rotates_with_only_the_namespaced_role() -> Result<()> {
    let overlay = objects(&kustomize("deploy/overlays/namespaced").await?)?;
    rbac::rotates_with_only_these_roles("rbac", &overlay).await
}

/// A tenant with the built-in `edit` role in its namespace (deploy/base's tenant ClusterRoles,
/// aggregated by the API server's controller) creates, changes and deletes PasswordRotations
/// but is refused every write of their status, which the operator trusts, and every write of a
/// RotationTarget, which decides where admin credentials go; `view` only reads; the
/// namespace's `admin` writes RotationTargets.
#[tokio::test]
async fn a_tenant_manages_passwordrotations_but_never_their_status_or_targets() -> Result<()> {
    let admin = cluster::client().await?;
    common::install_crd(&admin).await?;
    rbac::install_tenant_roles().await?;

    let namespace = TestNamespace::new(&admin, "tenant").await?;
    let ns = namespace.name().to_owned();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    for (account, role) in [("tenant", "edit"), ("viewer", "view"), ("owner", "admin")] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        }))?;
        bindings.create(&PostParams::default(), &binding).await?;
    }
    let tenant = impersonating_client(&format!("system:serviceaccount:{ns}:tenant")).await?;
    let viewer = impersonating_client(&format!("system:serviceaccount:{ns}:viewer")).await?;
    // The aggregation controller adds the rules to the built-in roles a moment later.
    wait_allowed(&tenant, &ns, "rotator.dev", "passwordrotations", "create").await?;
    wait_allowed(&viewer, &ns, "rotator.dev", "passwordrotations", "get").await?;
    let owner = impersonating_client(&format!("system:serviceaccount:{ns}:owner")).await?;
    wait_allowed(&owner, &ns, "rotator.dev", "rotationtargets", "create").await?;

    let target: RotationTarget = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2", "kind": "RotationTarget",
        "metadata": {"name": "rs"},
        "spec": {"redisSoftware": {
            "url": "https://rs.example.internal:9443", "credentialsSecret": "rs-admin",
        }},
    }))?;
    let refused = Api::<RotationTarget>::namespaced(tenant.clone(), &ns)
        .create(&PostParams::default(), &target)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 403),
        "the tenant created a RotationTarget: {refused:?}"
    );
    Api::<RotationTarget>::namespaced(owner, &ns)
        .create(&PostParams::default(), &target)
        .await?;
    assert!(
        Api::<RotationTarget>::namespaced(viewer.clone(), &ns)
            .get("rs")
            .await
            .is_ok()
    );

    let rotation: PasswordRotation = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2", "kind": "PasswordRotation",
        "metadata": {"name": "orders-cache"},
        "spec": {
            "target": {"ref": {"kind": "RotationTarget", "name": "rs"}, "user": "orders"},
            "secret": {"name": "orders-redis"},
        },
    }))?;
    let as_tenant: Api<PasswordRotation> = Api::namespaced(tenant, &ns);
    as_tenant.create(&PostParams::default(), &rotation).await?;
    as_tenant
        .patch(
            "orders-cache",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotationRequest": "now"}})),
        )
        .await?;
    let forged = json!({"status": {"phase": "Idle", "handledRotationRequest": "now"}});
    let as_viewer: Api<PasswordRotation> = Api::namespaced(viewer, &ns);
    for (who, api) in [("tenant", &as_tenant), ("viewer", &as_viewer)] {
        let refused = api
            .patch_status(
                "orders-cache",
                &PatchParams::default(),
                &Patch::Merge(&forged),
            )
            .await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(status)) if status.code == 403),
            "{who} wrote the status: {refused:?}"
        );
    }
    assert!(as_viewer.get("orders-cache").await.is_ok());
    let refused = as_viewer
        .delete("orders-cache", &DeleteParams::default())
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 403),
        "the viewer deleted it: {refused:?}"
    );
    as_tenant
        .delete("orders-cache", &DeleteParams::default())
        .await?;
    namespace.cleanup().await
}

// ----------------------------------------------------------------------------------------
// c. admission: the operator may change only its restart annotations

/// The ValidatingAdmissionPolicy of deploy/base, and its binding (same name).
const POLICY: &str = "password-rotator-restart-annotation-only";
/// What every denial by the policy says (the allowed change).
const POLICY_ALLOWS: &str = "password-rotator may only add, change or remove pod-template \
                             annotations spec.template.metadata.annotations[\"rotation.rotator.dev/<name>\"]";
/// The kinds the operator restarts.
const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// Both installs ship the policy and its binding, bound to the operator's real identity.
#[tokio::test]
async fn the_admission_policy_is_in_both_installs_and_names_the_operator() -> Result<()> {
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}");
    for dir in ["deploy/base", "deploy/overlays/namespaced"] {
        let rendered = objects(&kustomize(dir).await?)?;
        let account = find(&rendered, "ServiceAccount", SERVICE_ACCOUNT)?;
        assert_eq!(
            account["metadata"]["namespace"].as_str(),
            Some(OPERATOR_NAMESPACE),
            "{dir}: the ServiceAccount the policy names"
        );
        let policy = find(&rendered, "ValidatingAdmissionPolicy", POLICY)?;
        let binding = find(&rendered, "ValidatingAdmissionPolicyBinding", POLICY)?;
        for object in [&policy, &binding] {
            assert_eq!(
                object["apiVersion"].as_str(),
                Some("admissionregistration.k8s.io/v1"),
                "{dir}: {}",
                kind(object)
            );
        }
        let spec = &policy["spec"];
        assert_eq!(spec["failurePolicy"].as_str(), Some("Fail"), "{dir}");
        assert_eq!(
            spec["matchConstraints"]["resourceRules"],
            serde_yaml::to_value(json!([{
                "apiGroups": ["apps"],
                "apiVersions": ["v1"],
                "operations": ["UPDATE"],
                "resources": ["deployments", "statefulsets", "daemonsets"],
            }]))?,
            "{dir}: what the policy matches"
        );
        let conditions: Vec<&str> = spec["matchConditions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|c| c["expression"].as_str())
            .collect();
        ensure!(
            matches!(conditions.as_slice(), [c] if c.contains("request.userInfo.username ==")
                && c.contains(&format!("'{user}'"))),
            "{dir}: the policy must apply to the operator's ServiceAccount {user} only: \
             {conditions:?}"
        );
        assert_eq!(
            binding["spec"],
            serde_yaml::to_value(json!({"policyName": POLICY, "validationActions": ["Deny"]}))?,
            "{dir}: the binding"
        );
    }
    Ok(())
}

/// The policy and binding of deploy/base on the real API server: the operator's
/// ServiceAccount (impersonated, with the operator's Role) may set, change and remove its
/// restart annotations on each kind of workload, and nothing else; the admin may.
#[tokio::test]
async fn the_operator_may_change_only_its_restart_annotations() -> Result<()> {
    let admin = cluster::client().await?;
    let namespace = TestNamespace::new(&admin, "policy").await?;
    let ns = namespace.name().to_owned();

    // The policy and binding exactly as deploy/base renders them. Server-side apply is
    // idempotent, so repeated and concurrent runs agree; they stay installed afterwards (they
    // concern only the operator's real ServiceAccount, which no other test acts as).
    let base = objects(&kustomize("deploy/base").await?)?;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(admin.clone());
    let generation = |p: Option<ValidatingAdmissionPolicy>| p.and_then(|p| p.metadata.generation);
    let previous = generation(policies.get_opt(POLICY).await?);
    let mut manifest = String::new();
    for kind_ in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        manifest += "---\n";
        manifest += &serde_yaml::to_string(&find(&base, kind_, POLICY)?)?;
    }
    kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=rotator-tests",
            "-f",
            "-",
        ],
        Some(&manifest),
    )
    .await?;
    let current = generation(policies.get_opt(POLICY).await?);
    // A policy changed since the last run is enforced in its old version for a moment.
    let policy_changed = previous.is_some() && previous != current;

    // The operator's real identity, with the operator's Role bound in this namespace only.
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}");
    bind_operator_role(&admin, &ns).await?;
    let operator = impersonating_client(&user).await?;
    for resource in ["deployments", "statefulsets", "daemonsets"] {
        wait_allowed(&operator, &ns, "apps", resource, "patch").await?;
        // Subresources are not matched by the policy: RBAC must keep them out of reach.
        for sub in ["status", "scale"] {
            for verb in ["patch", "update"] {
                ensure!(
                    !can(&operator, &ns, "apps", resource, sub, verb, "").await?,
                    "the operator may {verb} {resource}/{sub}: the policy does not cover it"
                );
            }
        }
    }

    let mut workloads = Vec::new();
    for kind_ in WORKLOAD_KINDS {
        workloads.push(Workload::create(&admin, &operator, &ns, kind_).await?);
    }
    // A new policy takes a moment to be enforced: wait until a change it denies is denied
    // (dry run, so that nothing changes before it is).
    for w in &workloads {
        w.wait_policy_enforced().await?;
    }
    if policy_changed {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The expressions type-check against all three kinds (kube-controller-manager writes
    // the warnings, if any, into the status).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let policy = policies.get(POLICY).await?;
        let status = policy.status.unwrap_or_default();
        if status.observed_generation.is_some() && status.observed_generation == current {
            break status;
        }
        if Instant::now() > deadline {
            bail!("the policy's type checking did not report generation {current:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let warnings = status
        .type_checking
        .and_then(|t| t.expression_warnings)
        .unwrap_or_default();
    ensure!(warnings.is_empty(), "type-checking warnings: {warnings:?}");

    for w in &workloads {
        // Allowed: the restart annotation of one resource, set, changed, set again unchanged;
        // a second resource's key beside it; removing a key. Merge patches, like src/rollout.rs.
        let orders = "rotation.rotator.dev/orders-cache";
        let sessions = "rotation.rotator.dev/sessions-cache";
        for (key, value) in [
            (orders, json!("20261122194031-ff6411")),
            (orders, json!("20261123080000-0a1b2c")),
            (sessions, json!("20261123080500-3d4e5f")),
            (sessions, json!("20261123080500-3d4e5f")),
            (sessions, json!(null)),
            (sessions, json!("20261123090000-777777")),
        ] {
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {key: value}}}}});
            w.operator
                .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| {
                    format!(
                        "{} {}: the operator may set {key} to {value}",
                        w.kind, w.name
                    )
                })?;
        }
        let object = w.admin.get(&w.name).await?;
        assert_eq!(
            object.data["spec"]["template"]["metadata"]["annotations"],
            json!({
                "team": "orders",
                orders: "20261123080000-0a1b2c",
                sessions: "20261123090000-777777",
            }),
            "{} {}: the restart annotations were applied",
            w.kind,
            w.name
        );

        // Denied: everything else, alone or beside a restart annotation, with the policy's
        // message; the spec, the labels and the annotations stay as they were (the status
        // and the controller's revision annotation move on: the restarts roll out).
        let unchanged = |o: &DynamicObject| {
            let mut annotations = o.annotations().clone();
            annotations.remove("deployment.kubernetes.io/revision");
            (o.data["spec"].clone(), o.labels().clone(), annotations)
        };
        let before = unchanged(&object);
        for change in w.forbidden_changes() {
            w.expect_denied(&change).await?;
        }
        assert_eq!(
            unchanged(&w.admin.get(&w.name).await?),
            before,
            "{} {}: a denied patch changed the object",
            w.kind,
            w.name
        );

        // The policy is about the operator only: the admin may make every one of them.
        for change in w.forbidden_changes() {
            w.admin
                .patch(&w.name, &PatchParams::default(), &change.patch())
                .await
                .with_context(|| format!("{} {}: the admin's {}", w.kind, w.name, change.what))?;
        }
        let changed_by_admin = w.admin.get(&w.name).await?;
        assert_eq!(
            changed_by_admin.labels().get("evil").map(String::as_str),
            Some("x")
        );
        assert_eq!(
            changed_by_admin.data["spec"]["template"]["spec"]["containers"][0]["image"],
            json!("registry.invalid/evil:1")
        );
    }
    namespace.cleanup().await
}

/// One workload of the policy test, with an API for the admin and one for the operator.
struct Workload {
    kind: &'static str,
    name: String,
    admin: Api<DynamicObject>,
    operator: Api<DynamicObject>,
}

/// A change the operator may not make.
struct Change {
    what: &'static str,
    strategic: bool,
    patch: serde_json::Value,
    /// Part of the denial message: what was changed.
    changed: String,
}

impl Change {
    fn patch(&self) -> Patch<&serde_json::Value> {
        if self.strategic {
            Patch::Strategic(&self.patch)
        } else {
            Patch::Merge(&self.patch)
        }
    }
}

impl Workload {
    async fn create(
        admin: &Client,
        operator: &Client,
        ns: &str,
        kind_: &'static str,
    ) -> Result<Self> {
        let name = kind_.to_ascii_lowercase();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind_));
        let mut spec = json!({
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"team": "orders"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        });
        if kind_ != "DaemonSet" {
            spec["replicas"] = json!(1);
        }
        if kind_ == "StatefulSet" {
            spec["serviceName"] = json!(name);
        }
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": kind_,
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": spec,
        }))?;
        let workload = Workload {
            kind: kind_,
            admin: Api::namespaced_with(admin.clone(), ns, &resource),
            operator: Api::namespaced_with(operator.clone(), ns, &resource),
            name,
        };
        workload
            .admin
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating {kind_} {}", workload.name))?;
        Ok(workload)
    }

    /// Everything but the restart annotations, one change at a time.
    fn forbidden_changes(&self) -> Vec<Change> {
        let template_annotation = |key: &str, value: serde_json::Value| json!({"spec": {"template": {"metadata": {"annotations": {key: value}}}}});
        // A DaemonSet has no replicas.
        let (field, scale) = if self.kind == "DaemonSet" {
            ("minReadySeconds", json!({"spec": {"minReadySeconds": 5}}))
        } else {
            ("replicas", json!({"spec": {"replicas": 3}}))
        };
        let mut with_restart = scale.clone();
        with_restart["spec"]["template"] = json!({"metadata": {"annotations": {
            "rotation.rotator.dev/orders-cache": "20261124000000-abcdef",
        }}});
        let change = |what, strategic, patch, changed: &str| Change {
            what,
            strategic,
            patch,
            changed: changed.to_owned(),
        };
        vec![
            change("scaling", false, scale, &format!("spec.{field}")),
            change(
                "scaling beside a restart annotation",
                false,
                with_restart,
                &format!("spec.{field}"),
            ),
            change(
                "revision history limit",
                false,
                json!({"spec": {"revisionHistoryLimit": 1}}),
                "spec.revisionHistoryLimit",
            ),
            change(
                "new image",
                true,
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "registry.invalid/evil:1"},
                ]}}}}),
                "spec.template.spec",
            ),
            change(
                "pod-template label",
                false,
                json!({"spec": {"template": {"metadata": {"labels": {"evil": "x"}}}}}),
                "spec.template.metadata.labels",
            ),
            change(
                "pod-template annotation with another key",
                false,
                template_annotation("evil/x", json!("1")),
                "evil/x",
            ),
            change(
                "pod-template annotation with a look-alike key",
                false,
                template_annotation("rotation.rotator.dev.evil.example/x", json!("1")),
                "rotation.rotator.dev.evil.example/x",
            ),
            change(
                "removal of another pod-template annotation",
                false,
                template_annotation("team", json!(null)),
                "team",
            ),
            change(
                "label of the workload",
                false,
                json!({"metadata": {"labels": {"evil": "x"}}}),
                "metadata.labels",
            ),
            change(
                "annotation of the workload",
                false,
                json!({"metadata": {"annotations": {"evil": "x"}}}),
                "metadata.annotations",
            ),
        ]
    }

    async fn expect_denied(&self, change: &Change) -> Result<()> {
        let denial = self.deny(change, &PatchParams::default()).await?;
        denial.with_context(|| {
            format!(
                "{} {}: the operator's {} was allowed",
                self.kind, self.name, change.what
            )
        })?;
        Ok(())
    }

    /// `Ok(Some(()))` if the policy denied the change, `Ok(None)` if it was allowed.
    async fn deny(&self, change: &Change, params: &PatchParams) -> Result<Option<()>> {
        match self
            .operator
            .patch(&self.name, params, &change.patch())
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status))
                if status
                    .message
                    .contains(&format!("ValidatingAdmissionPolicy '{POLICY}'")) =>
            {
                ensure!(
                    status.code == 403
                        && status.message.contains(POLICY_ALLOWS)
                        && status.message.contains(&change.changed),
                    "{} {}: the denial of the {} should be 403 with {POLICY_ALLOWS:?} and name \
                     {:?}: {status:?}",
                    self.kind,
                    self.name,
                    change.what,
                    change.changed
                );
                Ok(Some(()))
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "{} {}: the operator's {}",
                    self.kind, self.name, change.what
                )
            }),
        }
    }

    async fn wait_policy_enforced(&self) -> Result<()> {
        let probe = &self.forbidden_changes()[0];
        let dry_run = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.deny(probe, &dry_run).await?.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "{} {}: the policy {POLICY} was not enforced within 60 s",
                    self.kind,
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}

/// The namespaced overlay's Role and RoleBinding `password-rotator`, moved into `ns`; the
/// subject stays the operator's real ServiceAccount (in password-rotator-system), so that
/// identity may patch workloads in `ns` and nowhere else.
async fn bind_operator_role(client: &Client, ns: &str) -> Result<()> {
    let overlay = objects(&kustomize("deploy/overlays/namespaced").await?)?;
    let params = PatchParams::apply("rotator-tests").force();
    let mut role = find(&overlay, "Role", ROLE)?;
    role["metadata"]["namespace"] = Value::from(ns);
    let role: Role = serde_yaml::from_value(role)?;
    Api::<Role>::namespaced(client.clone(), ns)
        .patch(ROLE, &params, &Patch::Apply(&role))
        .await?;
    let mut binding = find(&overlay, "RoleBinding", ROLE)?;
    binding["metadata"]["namespace"] = Value::from(ns);
    let binding: RoleBinding = serde_yaml::from_value(binding)?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .patch(ROLE, &params, &Patch::Apply(&binding))
        .await?;
    Ok(())
}
