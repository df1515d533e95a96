//! The tenant's paths, on the real parts. The platform team owns a ClusterRotationTarget and
//! its Secrets, in a namespace of its own that the operator is given
//! (`--cluster-target-namespace`); a tenant, a ServiceAccount bound to the built-in `edit`
//! role that deploy/base's aggregate roles extend, owns PasswordRotations in its namespace.
//!
//! * What the target's policy does not allow (another object, `Replace`, templates, a
//!   namespace it does not select) is `Ready=False` `TargetNotAllowed` naming the rule, and
//!   the target receives no request and no Secret is written.
//! * A namespace that comes to match the target's selector is served without any edit of the
//!   resource (the namespaces' labels are watched).
//! * What the policy allows rotates, with the admin login read from the platform's namespace
//!   only, and no value of any Secret of either namespace appears in a status, an event or the
//!   operator's log.

mod common;

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use password_rotator::resource::PasswordRotation;
use password_rotator::rotation_target::ClusterRotationTarget;
use rotator_test_support::cluster::TestNamespace;
use serde_json::{Value, json};

use common::checks::assert_only_password;
use common::rbac::{self, impersonating_client, wait_allowed};
use common::{ADMIN_PASSWORD, Harness, extra_password, merge, unshared_secret};

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_tenant_rotates_only_what_the_cluster_target_allows() -> Result<()> {
    let mut h = Harness::with_users("tenancy", 5).await?;
    let platform = TestNamespace::new(&h.client, "tenancy-platform").await?;
    let tenant = tenant_client(&h).await?;

    // The admin login and the CA live in the platform's namespace only.
    let platform_secrets: Api<Secret> = platform.api();
    let ca = h.api.ca_pem();
    for (name, data) in [
        (
            "rs-admin",
            [
                ("username", common::ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
            ]
            .as_slice(),
        ),
        ("rs-ca", [("ca.crt", ca.as_str())].as_slice()),
    ] {
        platform_secrets
            .create(&PostParams::default(), &unshared_secret(name, data))
            .await?;
    }
    for name in ["rs-admin", "rs-ca"] {
        h.secrets().delete(name, &Default::default()).await?;
    }
    let label = h.ns().to_owned();
    let named = format!("{}-named", h.ns());
    let selected = format!("{}-selected", h.ns());
    put_cluster_target(
        &h,
        &named,
        json!({"namespaces": {"names": [h.ns()]}, "objects": ["app-0", "app-1", "app-2", "app-3"], "templates": false}),
    )
    .await?;
    put_cluster_target(
        &h,
        &selected,
        json!({"namespaces": {"selector": {"matchLabels": {"tenancy-test": label}}}, "objects": ["app-*"]}),
    )
    .await?;
    h.cluster_target_namespace = Some(platform.name().to_owned());
    h.start_operator()?;
    h.target_checked(common::TARGET).await?;

    let as_tenant: Api<PasswordRotation> = Api::namespaced(tenant, h.ns());
    let create = |name: &str, target: &str, user: &str, extra: Value| {
        let mut spec = h.user_spec(json!({
            "target": {"ref": {"kind": "ClusterRotationTarget", "name": target}, "user": user},
            "secret": {"name": format!("{user}-redis")},
            "rotationRequest": "first",
        }));
        merge(&mut spec, extra);
        let rotation: PasswordRotation = serde_json::from_value(json!({
            "apiVersion": "rotator.dev/v1alpha2", "kind": "PasswordRotation",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("a PasswordRotation");
        let api = as_tenant.clone();
        async move { api.create(&PostParams::default(), &rotation).await }
    };

    // Refused: the admin's own account is no object the target lists, Replace is not among
    // its modes, a template is not allowed, and a namespace the selector does not match yet.
    let refused = [
        (
            "admin-user",
            named.as_str(),
            common::ADMIN_EMAIL,
            json!({"secret": {"name": "app-3-redis"}}),
            "spec.allow.objects",
        ),
        (
            "replace",
            named.as_str(),
            "app-1",
            json!({"mode": "Replace"}),
            "spec.allow.modes",
        ),
        (
            "templated",
            named.as_str(),
            "app-2",
            json!({"secret": {"template": {"url": "redis://{{ .username }}:{{ .password }}@cache:6379"}}}),
            "spec.allow.templates",
        ),
        (
            "unselected",
            selected.as_str(),
            "app-4",
            json!({}),
            "spec.allow.namespaces",
        ),
    ];
    for (name, target, user, extra, _) in &refused {
        create(name, target, user, extra.clone()).await?;
    }
    for (name, target, _, _, rule) in &refused {
        let rotation = h
            .wait_for(name, TIMEOUT, "TargetNotAllowed", |r| {
                condition(r, "Ready").is_some_and(|(status, reason, _)| {
                    status == "False" && reason == "TargetNotAllowed"
                })
            })
            .await?;
        let (_, _, message) = condition(&rotation, "Ready").expect("Ready");
        assert!(
            message.starts_with(&format!("{rule}: ClusterRotationTarget {target}")),
            "{name}: {message}"
        );
    }
    h.wait_event("TargetNotAllowed", "spec.allow.modes").await?;
    assert!(
        h.api.requests().is_empty(),
        "a refused resource made a call: {:?}",
        h.api.requests()
    );
    for (user, i) in [("app-1", 1), ("app-2", 2), ("app-4", 4)] {
        assert_eq!(
            h.secret_value(&format!("{user}-redis"), "password").await?,
            Some(extra_password(i)),
            "the Secret of a refused resource was written"
        );
    }

    // Allowed: a user the target lists, in the namespace it names, rotates.
    create("allowed", &named, "app-0", json!({})).await?;
    h.wait_rotated("allowed", TIMEOUT).await?;
    let new = h
        .secret_value("app-0-redis", "password")
        .await?
        .expect("a password");
    assert_ne!(new, extra_password(0));
    assert_only_password(&h, "app-0", &new).await?;

    // The namespace comes to match the selector: the refused resource is served, unedited.
    Api::<Namespace>::all(h.client.clone())
        .patch(
            h.ns(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tenancy-test": label}}})),
        )
        .await?;
    h.wait_rotated("unselected", TIMEOUT).await?;
    let new = h
        .secret_value("app-4-redis", "password")
        .await?
        .expect("a password");
    assert_only_password(&h, "app-4", &new).await?;

    h.assert_no_secret_value_leaks_in(&[platform.name()])
        .await?;
    for name in [&named, &selected] {
        Api::<ClusterRotationTarget>::all(h.client.clone())
            .delete(name, &Default::default())
            .await?;
    }
    platform.cleanup().await?;
    h.finish().await
}

/// Whatever the policy allows, the login the target itself logs in with is never rotated:
/// its new password would be published into the tenant's Secret.
#[tokio::test]
async fn the_targets_own_admin_login_is_never_rotated() -> Result<()> {
    let mut h = Harness::with_users("own-admin", 1).await?;
    h.start_operator()?;
    h.target_checked(common::TARGET).await?;
    h.create_rotation(
        "admin",
        h.user_spec(json!({
            "target": {"user": common::ADMIN_EMAIL},
            "secret": {"name": "app-0-redis"},
            "rotationRequest": "first",
        })),
    )
    .await?;
    let refused = h
        .wait_for("admin", TIMEOUT, "TargetNotAllowed", |r| {
            condition(r, "Ready").is_some_and(|(status, reason, _)| {
                status == "False" && reason == "TargetNotAllowed"
            })
        })
        .await?;
    let (_, _, message) = condition(&refused, "Ready").expect("Ready");
    assert!(
        message.contains("the login of the target's own administrator"),
        "{message}"
    );
    assert!(
        h.api.requests().is_empty(),
        "a call was made: {:?}",
        h.api.requests()
    );
    assert_eq!(
        h.secret_value("app-0-redis", "password").await?,
        Some(extra_password(0))
    );
    h.assert_no_secret_value_leaks().await?;
    h.finish().await
}

/// The operator watches one namespace; the ClusterRotationTarget's Secrets are in another.
/// Wrong admin credentials there block the rotation; once the platform team fixes the Secret,
/// the rotation goes on at once, not after the 31 minutes a refused login otherwise holds.
#[tokio::test]
async fn a_fixed_admin_secret_in_the_platform_namespace_is_seen_at_once() -> Result<()> {
    let mut h = Harness::with_users("platform-secret", 1).await?;
    let platform = TestNamespace::new(&h.client, "platform-secret-platform").await?;
    let platform_secrets: Api<Secret> = platform.api();
    let ca = h.api.ca_pem();
    let admin = |password: &str| {
        unshared_secret(
            "rs-admin",
            &[("username", common::ADMIN_EMAIL), ("password", password)],
        )
    };
    for secret in [
        admin("Not-The-Admin-Password-1"),
        unshared_secret("rs-ca", &[("ca.crt", ca.as_str())]),
    ] {
        platform_secrets
            .create(&PostParams::default(), &secret)
            .await?;
    }
    let target = format!("{}-target", h.ns());
    put_cluster_target(
        &h,
        &target,
        json!({"namespaces": {"names": [h.ns()]}, "objects": ["app-0"]}),
    )
    .await?;
    h.cluster_target_namespace = Some(platform.name().to_owned());
    h.start_operator()?;
    h.create_rotation(
        "orders",
        h.user_spec(json!({
            "target": {"ref": {"kind": "ClusterRotationTarget", "name": target}, "user": "app-0"},
            "secret": {"name": "app-0-redis"},
            "rotationRequest": "first",
        })),
    )
    .await?;
    h.wait_for("orders", TIMEOUT, "Blocked", |r| {
        condition(r, "Ready").is_some_and(|(_, reason, _)| reason == "Unauthorized")
    })
    .await?;
    platform_secrets
        .replace("rs-admin", &PostParams::default(), &admin(ADMIN_PASSWORD))
        .await?;
    h.wait_rotated("orders", TIMEOUT).await?;
    let new = h
        .secret_value("app-0-redis", "password")
        .await?
        .expect("a password");
    assert_only_password(&h, "app-0", &new).await?;
    h.assert_no_secret_value_leaks_in(&[platform.name()])
        .await?;
    Api::<ClusterRotationTarget>::all(h.client.clone())
        .delete(&target, &Default::default())
        .await?;
    platform.cleanup().await?;
    h.finish().await
}

/// A ServiceAccount `tenant` of the harness's namespace, bound to the built-in `edit` role
/// that deploy/base's tenant ClusterRoles extend.
async fn tenant_client(h: &Harness) -> Result<Client> {
    rbac::install_tenant_roles().await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "tenant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": h.ns()}],
    }))?;
    Api::<RoleBinding>::namespaced(h.client.clone(), h.ns())
        .create(&PostParams::default(), &binding)
        .await?;
    let tenant = impersonating_client(&format!("system:serviceaccount:{}:tenant", h.ns())).await?;
    wait_allowed(
        &tenant,
        h.ns(),
        "rotator.dev",
        "passwordrotations",
        "create",
    )
    .await?;
    Ok(tenant)
}

/// The platform's ClusterRotationTarget for the API server, with `allow`.
async fn put_cluster_target(h: &Harness, name: &str, allow: Value) -> Result<()> {
    let target: ClusterRotationTarget = serde_json::from_value(json!({
        "apiVersion": "rotator.dev/v1alpha2", "kind": "ClusterRotationTarget",
        "metadata": {"name": name},
        "spec": {"redisSoftware": h.rs_connection(), "allow": allow},
    }))?;
    Api::<ClusterRotationTarget>::all(h.client.clone())
        .patch(
            name,
            &PatchParams::apply("rotator-tests").force(),
            &Patch::Apply(&target),
        )
        .await?;
    Ok(())
}

/// A condition's status, reason and message.
fn condition(rotation: &PasswordRotation, type_: &str) -> Option<(String, String, String)> {
    rotation
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
