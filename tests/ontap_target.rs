//! A RotationTarget's `spec.ontap` end to end, beyond the scenarios every target runs
//! (`tests/targets.rs`): the operator process on the local control plane changes account
//! passwords on the ONTAP API test server (HTTPS with a self-signed certificate, as a cluster
//! has by default). Which password works is proven by logging in to the server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use common::checks::*;
use common::*;
use password_rotator::resource::Phase;
use rotator_test_support::ontap_server::{AccountConfig, OntapServer, OntapServerConfig};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", "Admin-Pa55word");
const ACCOUNT_A: (&str, &str) = ("orders-a", "Orders-A-Pa55word-1");
const ACCOUNT_B: (&str, &str) = ("orders-b", "Orders-B-Pa55word-1");
const SECRET: &str = "orders-ontap";
const DEPLOYMENT: &str = "orders";
const ROTATION: &str = "orders-ontap";
const ONTAP_TARGET: &str = "ontap";

async fn ontap() -> Result<Arc<OntapServer>> {
    let config = OntapServerConfig::new(vec![
        AccountConfig::cluster(ADMIN.0, "admin", ADMIN.1),
        AccountConfig::cluster(ACCOUNT_A.0, "readonly", ACCOUNT_A.1),
        AccountConfig::cluster(ACCOUNT_B.0, "readonly", ACCOUNT_B.1),
    ]);
    Ok(Arc::new(OntapServer::start(config).await?))
}

/// The admin and CA Secrets, and the workload Secret on account A.
async fn secrets_for(h: &Harness, server: &OntapServer) -> Result<()> {
    h.put_secret(
        "ontap-admin",
        &[("username", ADMIN.0), ("password", ADMIN.1)],
    )
    .await?;
    h.put_secret(
        "ontap-ca",
        &[("ca.crt", &server.ca_pem().expect("an https server"))],
    )
    .await?;
    h.put_secret(
        SECRET,
        &[("username", ACCOUNT_A.0), ("password", ACCOUNT_A.1)],
    )
    .await
}

/// RotationTarget `ontap` on `server`, trusting its certificate, logging in as the admin when
/// `admin` (each account changes its own password otherwise). It allows both modes: one
/// account rotates with `Replace`.
async fn put_ontap_target(h: &Harness, server: &OntapServer, admin: bool) -> Result<()> {
    let mut ontap = json!({
        "url": server.base_url(),
        "caSecret": {"name": "ontap-ca"},
    });
    if admin {
        ontap["credentialsSecret"] = json!("ontap-admin");
    }
    h.put_target(
        ONTAP_TARGET,
        json!({"ontap": ontap, "allow": {"modes": ["AddThenDelete", "Replace"]}}),
    )
    .await?;
    Ok(())
}

/// A resource on RotationTarget `ontap` that rotates `object` (its account or accounts),
/// merged with `overrides`.
fn ontap_spec(object: Value, overrides: Value) -> Value {
    let mut spec = json!({
        "target": {"ref": {"kind": "RotationTarget", "name": ONTAP_TARGET}},
        "secret": {"name": SECRET},
        "rollout": {
            "workloads": [{"kind": "Deployment", "name": DEPLOYMENT}],
            "overlap": "0s",
            "timeout": "5m",
        },
    });
    merge(&mut spec, json!({"target": object}));
    merge(&mut spec, overrides);
    spec
}

fn alternating() -> Value {
    json!({"alternatingAccounts": [ACCOUNT_A.0, ACCOUNT_B.0]})
}

async fn published(h: &Harness) -> Result<(String, String)> {
    Ok((
        h.secret_value(SECRET, "username")
            .await?
            .expect("a user name"),
        h.secret_value(SECRET, "password")
            .await?
            .expect("a password"),
    ))
}

/// The full rotation with workloads logging in throughout is in `tests/targets.rs`; this one
/// follows two rotations: to account B, and back to A with a password new again.
#[tokio::test]
async fn alternating_accounts_take_turns() -> Result<()> {
    let mut h = Harness::new("ontap-alt").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    h.create_deployment(DEPLOYMENT, 2).await?;
    h.start_operator()?;

    h.create_rotation(
        ROTATION,
        ontap_spec(alternating(), json!({"rotationRequest": "first"})),
    )
    .await?;
    let first = h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;

    // The workloads moved to account B; account A's password is one no one holds.
    let (user, b_password) = published(&h).await?;
    assert_eq!(user, ACCOUNT_B.0);
    assert!(server.login_works(ACCOUNT_B.0, &b_password));
    assert!(!server.login_works(ACCOUNT_B.0, ACCOUNT_B.1));
    assert!(!server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    assert_eq!(
        first.status.as_ref().and_then(|s| s.cluster.as_deref()),
        Some(format!("ontap:{}", OntapServerConfig::new(Vec::new()).cluster_uuid).as_str())
    );
    assert!(
        h.secrets()
            .get_opt(&format!("{ROTATION}-rotation"))
            .await?
            .is_none(),
        "the retirement password went with the state Secret"
    );

    // The next rotation moves them back to account A, with a password new again.
    h.request_rotation(ROTATION, "second").await?;
    h.wait_for(
        ROTATION,
        Duration::from_secs(120),
        "the second rotation",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.handled_rotation_request.as_deref() == Some("second")
                    && s.phase == Some(Phase::Idle)
                    && s.step.is_none()
            })
        },
    )
    .await?;
    let (user, a_password) = published(&h).await?;
    assert_eq!(user, ACCOUNT_A.0);
    assert_ne!(a_password, ACCOUNT_A.1);
    assert!(server.login_works(ACCOUNT_A.0, &a_password));
    assert!(!server.login_works(ACCOUNT_B.0, &b_password));

    h.assert_no_leak(&[
        ADMIN.1.into(),
        ACCOUNT_A.1.into(),
        ACCOUNT_B.1.into(),
        a_password,
        b_password,
    ])
    .await?;
    h.finish().await
}

#[tokio::test]
async fn a_crash_after_publishing_resumes_on_the_new_account() -> Result<()> {
    let mut h = Harness::new("ontap-crash").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    let mut crashing = h.spawn_operator(&["--fail-point", "after-publish-write"])?;
    h.create_rotation(
        ROTATION,
        ontap_spec(alternating(), json!({"rotationRequest": "first"})),
    )
    .await?;
    let status = tokio::time::timeout(Duration::from_secs(60), crashing.wait()).await??;
    assert!(!status.success(), "the operator aborted at the fail point");
    let (user, password) = published(&h).await?;
    assert_eq!(user, ACCOUNT_B.0, "published before the crash");
    assert!(server.login_works(ACCOUNT_B.0, &password));
    assert!(
        server.login_works(ACCOUNT_A.0, ACCOUNT_A.1),
        "account A still works while pods may run on it"
    );
    assert_eq!(
        step(&h.rotation(ROTATION).await?),
        None,
        "no step before the retirement is recorded on its own"
    );

    h.start_operator()?;
    h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    assert_eq!(published(&h).await?, (user, password.clone()));
    assert!(server.login_works(ACCOUNT_B.0, &password));
    assert!(!server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    h.finish().await
}

#[tokio::test]
async fn one_account_is_refused_add_then_delete_at_admission() -> Result<()> {
    let h = Harness::new("ontap-admission").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    let refused = h
        .create_rotation(
            ROTATION,
            ontap_spec(json!({"account": ACCOUNT_A.0}), json!({})),
        )
        .await
        .expect_err("refused at admission");
    assert!(
        refused.to_string().contains("alternatingAccounts"),
        "{refused}"
    );
    assert!(server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    h.finish().await
}

/// The accounts alternate only where an administrator sets the standby one's password: a pair
/// on a target without credentialsSecret is refused (the target is another object than the
/// resource, so the operator refuses it, not admission) before any call.
#[tokio::test]
async fn a_pair_on_a_target_without_an_admin_is_refused() -> Result<()> {
    let mut h = Harness::new("ontap-self-pair").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, false).await?;
    h.start_operator()?;
    h.create_rotation(
        ROTATION,
        ontap_spec(alternating(), json!({"rotationRequest": "first"})),
    )
    .await?;
    let refused = h
        .wait_for(ROTATION, Duration::from_secs(30), "InvalidSpec", |r| {
            condition_reason(r, "Ready").as_deref() == Some("InvalidSpec")
        })
        .await?;
    let message = ready_message(&refused);
    assert!(
        message.contains("spec.ontap.credentialsSecret"),
        "{message}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    assert!(server.login_works(ACCOUNT_B.0, ACCOUNT_B.1));
    h.finish().await
}

#[tokio::test]
async fn one_account_replaced_by_itself_without_an_admin() -> Result<()> {
    let mut h = Harness::new("ontap-self").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, false).await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;
    h.create_rotation(
        ROTATION,
        ontap_spec(
            json!({"account": ACCOUNT_A.0}),
            json!({"mode": "Replace", "rotationRequest": "first"}),
        ),
    )
    .await?;
    let rotated = h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    let (user, password) = published(&h).await?;
    assert_eq!(user, ACCOUNT_A.0);
    assert!(server.login_works(ACCOUNT_A.0, &password));
    assert!(!server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.login.as_deref() != Some(ADMIN.0)),
        "no admin login was used"
    );
    assert!(
        rotated
            .status
            .and_then(|s| s.cluster)
            .is_some_and(|c| c.starts_with("ontap-address:"))
    );
    h.finish().await
}

#[tokio::test]
async fn a_secret_on_neither_account_changes_nothing() -> Result<()> {
    let mut h = Harness::new("ontap-neither").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    h.put_secret(
        SECRET,
        &[("username", "someone"), ("password", ACCOUNT_A.1)],
    )
    .await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;
    h.create_rotation(
        ROTATION,
        ontap_spec(alternating(), json!({"rotationRequest": "first"})),
    )
    .await?;
    let refused = h
        .wait_for(ROTATION, Duration::from_secs(30), "InvalidSpec", |r| {
            condition_reason(r, "Ready").as_deref() == Some("InvalidSpec")
        })
        .await?;
    let message = ready_message(&refused);
    assert!(message.contains("spec.secret"), "{message}");
    assert!(message.contains("alternatingAccounts"), "{message}");
    assert!(server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    assert!(server.login_works(ACCOUNT_B.0, ACCOUNT_B.1));
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.path.contains("authentication/password")),
        "no password was changed"
    );
    h.finish().await
}

/// What a tenant who may edit PasswordRotations tried: name the admin Secret as the workload
/// Secret with its keys swapped, so that the admin password is read as the account in use;
/// and swap the keys of the resource's own workload Secret. Both are refused with a condition
/// naming the field, nothing is written, and no value of any Secret in the namespace reaches
/// a status, an event or the operator's log.
#[tokio::test]
async fn a_misnamed_secret_is_refused_and_no_secret_value_leaks() -> Result<()> {
    let mut h = Harness::new("ontap-leak").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;

    let swapped = json!({"usernameKey": "password", "passwordKey": "username"});
    let mut on_admin = ontap_spec(alternating(), json!({"rotationRequest": "first"}));
    on_admin["secret"] = json!({"name": "ontap-admin"});
    on_admin["secret"]
        .as_object_mut()
        .expect("an object")
        .extend(swapped.as_object().expect("an object").clone());
    h.create_rotation("on-admin", on_admin).await?;
    let mut own_swapped = ontap_spec(alternating(), json!({"rotationRequest": "first"}));
    own_swapped["secret"]
        .as_object_mut()
        .expect("an object")
        .extend(swapped.as_object().expect("an object").clone());
    h.create_rotation("own-swapped", own_swapped).await?;

    for (name, field) in [
        ("on-admin", "spec.secret.name"),
        ("own-swapped", "spec.secret"),
    ] {
        let refused = h
            .wait_for(name, Duration::from_secs(60), "Ready=False", |r| {
                condition_reason(r, "Ready").as_deref() == Some("InvalidSpec")
            })
            .await?;
        let message = ready_message(&refused);
        assert!(message.contains(field), "{name}: {message}");
    }
    // Nothing was written: the admin Secret and the workload Secret are as they were, and
    // every password still works.
    assert_eq!(
        h.secret_value("ontap-admin", "password").await?.as_deref(),
        Some(ADMIN.1)
    );
    assert_eq!(
        published(&h).await?,
        (ACCOUNT_A.0.into(), ACCOUNT_A.1.into())
    );
    assert!(server.login_works(ADMIN.0, ADMIN.1));
    assert!(server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    assert!(server.login_works(ACCOUNT_B.0, ACCOUNT_B.1));

    h.assert_no_secret_value_leaks().await?;
    h.finish().await
}

/// Conflicts are decided per account: a pair named in the other order, and one account of
/// the pair, meet the first resource's pair. Each is refused `Conflict` naming it (the
/// oldest), and neither changes any password.
#[tokio::test]
async fn resources_sharing_an_account_conflict_in_whatever_order() -> Result<()> {
    let mut h = Harness::new("ontap-conflict").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    put_ontap_target(&h, &server, true).await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;
    h.create_rotation(ROTATION, ontap_spec(alternating(), json!({})))
        .await?;
    h.wait_for(ROTATION, Duration::from_secs(60), "Idle", |r| {
        phase(r) == Some(Phase::Idle)
    })
    .await?;
    // Creation times are in seconds, and a tie goes by name: the others come a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.put_secret(
        "reversed-ontap",
        &[("username", ACCOUNT_B.0), ("password", ACCOUNT_B.1)],
    )
    .await?;
    let reversed = ontap_spec(
        json!({"alternatingAccounts": [ACCOUNT_B.0, ACCOUNT_A.0]}),
        json!({"secret": {"name": "reversed-ontap"}, "rotationRequest": "now"}),
    );
    let one = ontap_spec(
        json!({"account": ACCOUNT_B.0}),
        json!({"secret": {"name": "reversed-ontap"}, "mode": "Replace", "rotationRequest": "now"}),
    );
    server.clear_requests();
    for (name, spec) in [("reversed", reversed), ("one-account", one)] {
        h.create_rotation(name, spec).await?;
        let refused = h
            .wait_for(name, Duration::from_secs(30), "Conflict", |r| {
                condition_reason(r, "Ready").as_deref() == Some("Conflict")
            })
            .await?;
        let message = ready_message(&refused);
        assert!(
            message.contains(&format!("PasswordRotation {}/{ROTATION}", h.ns())),
            "{message}"
        );
    }
    let changes = server
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(changes, 0, "a password changed: {:?}", server.requests());
    for (account, password) in [ACCOUNT_A, ACCOUNT_B] {
        assert!(
            server.login_works(account, password),
            "{account} kept its password"
        );
    }
    h.finish().await
}
