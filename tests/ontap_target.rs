//! `spec.target.ontap` end to end: the operator process on the local control plane changes
//! account passwords on the ONTAP API test server (HTTPS with a self-signed certificate, as a
//! cluster has by default). Which password works is proven by logging in to the server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;
use common::checks::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use password_rotator::resource::{Phase, Step, restart_annotation_key};
use rotator_test_support::cluster;
use rotator_test_support::ontap_server::{AccountConfig, OntapServer, OntapServerConfig};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", "Admin-Pa55word");
const ACCOUNT_A: (&str, &str) = ("orders-a", "Orders-A-Pa55word-1");
const ACCOUNT_B: (&str, &str) = ("orders-b", "Orders-B-Pa55word-1");
const SECRET: &str = "orders-ontap";
const DEPLOYMENT: &str = "orders";
const ROTATION: &str = "orders-ontap";

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

fn ontap_spec(server: &OntapServer, target: Value, overrides: Value) -> Value {
    let mut spec = json!({
        "target": {"ontap": {
            "url": server.base_url(),
            "caSecret": {"name": "ontap-ca"},
        }},
        "secret": {"name": SECRET},
        "rollout": {
            "workloads": [{"kind": "Deployment", "name": DEPLOYMENT}],
            "overlap": "0s",
            "timeout": "5m",
        },
    });
    let ontap = spec["target"]["ontap"].as_object_mut().expect("an object");
    for (key, value) in target.as_object().expect("an object") {
        ontap.insert(key.clone(), value.clone());
    }
    let spec_object = spec.as_object_mut().expect("an object");
    for (key, value) in overrides.as_object().expect("an object") {
        spec_object.insert(key.clone(), value.clone());
    }
    spec
}

fn alternating() -> Value {
    json!({
        "credentialsSecret": "ontap-admin",
        "alternatingAccounts": [ACCOUNT_A.0, ACCOUNT_B.0],
    })
}

/// Workloads that log in to the cluster throughout: pods that read the Secret (user name and
/// password) and pods of the old ReplicaSet that keep what they started with until the
/// Deployment has rolled out.
struct Logins {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU32>,
    failures: Arc<AtomicU32>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Logins {
    async fn start(h: &Harness, server: &Arc<OntapServer>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU32::new(0));
        let failures = Arc::new(AtomicU32::new(0));
        let read = |secret: &k8s_openapi::api::core::v1::Secret| {
            let data = secret.data.as_ref().expect("data");
            let text = |key: &str| String::from_utf8(data[key].0.clone()).expect("UTF-8");
            (text("username"), text("password"))
        };
        let started_with = read(&h.secrets().get(SECRET).await?);
        let reader = {
            let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
            let (secrets, server) = (h.secrets(), server.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let (user, password) = read(&secrets.get(SECRET).await.expect("the Secret"));
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if !server.login_works(&user, &password) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let old_pod = {
            let (stop, attempts, failures) = (stop.clone(), attempts.clone(), failures.clone());
            let deployments: Api<Deployment> = h.namespace.api();
            let server = server.clone();
            let (user, password) = started_with;
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let d = deployments.get(DEPLOYMENT).await.expect("the Deployment");
                    let restarted = template_rotation_of(&d).is_some();
                    if restarted && cluster::rollout_complete(&d) {
                        return;
                    }
                    attempts.fetch_add(1, Ordering::Relaxed);
                    if !server.login_works(&user, &password) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Ok(Logins {
            stop,
            attempts,
            failures,
            tasks: vec![reader, old_pod],
        })
    }

    async fn stop(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("login task");
        }
        (
            self.attempts.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

fn template_rotation_of(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(&restart_annotation_key(ROTATION))
        .cloned()
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

#[tokio::test]
async fn alternating_accounts_rotate_without_a_failed_login() -> Result<()> {
    let mut h = Harness::new("ontap-alt").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    h.create_deployment(DEPLOYMENT, 2).await?;
    h.start_operator()?;

    let logins = Logins::start(&h, &server).await?;
    h.create_rotation(
        ROTATION,
        ontap_spec(&server, alternating(), json!({"rotationRequest": "first"})),
    )
    .await?;
    let first = h.wait_rotated(ROTATION, Duration::from_secs(120)).await?;
    let (attempts, failures) = logins.stop().await;
    assert!(
        attempts > 10,
        "the workloads logged in ({attempts} attempts)"
    );
    assert_eq!(failures, 0, "no workload login failed");

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
    let logins = Logins::start(&h, &server).await?;
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
    let (attempts, failures) = logins.stop().await;
    assert!(
        attempts > 10,
        "the workloads logged in ({attempts} attempts)"
    );
    assert_eq!(failures, 0, "no workload login failed");
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
    h.create_deployment(DEPLOYMENT, 1).await?;
    let mut crashing = h.spawn_operator(&["--fail-point", "after-publish-write"])?;
    h.create_rotation(
        ROTATION,
        ontap_spec(&server, alternating(), json!({"rotationRequest": "first"})),
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
    assert_eq!(step(&h.rotation(ROTATION).await?), Some(Step::Publishing));

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
    let refused = h
        .create_rotation(
            ROTATION,
            ontap_spec(
                &server,
                json!({"credentialsSecret": "ontap-admin", "account": ACCOUNT_A.0}),
                json!({}),
            ),
        )
        .await
        .expect_err("refused at admission");
    assert!(
        refused.to_string().contains("alternatingAccounts"),
        "{refused}"
    );
    let self_service_pair = h
        .create_rotation(
            ROTATION,
            ontap_spec(
                &server,
                json!({"alternatingAccounts": [ACCOUNT_A.0, ACCOUNT_B.0]}),
                json!({}),
            ),
        )
        .await
        .expect_err("refused at admission");
    assert!(
        self_service_pair.to_string().contains("credentialsSecret"),
        "{self_service_pair}"
    );
    assert!(server.login_works(ACCOUNT_A.0, ACCOUNT_A.1));
    h.finish().await
}

#[tokio::test]
async fn one_account_replaced_by_itself_without_an_admin() -> Result<()> {
    let mut h = Harness::new("ontap-self").await?;
    let server = ontap().await?;
    secrets_for(&h, &server).await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;
    h.create_rotation(
        ROTATION,
        ontap_spec(
            &server,
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
    h.put_secret(
        SECRET,
        &[("username", "someone"), ("password", ACCOUNT_A.1)],
    )
    .await?;
    h.create_deployment(DEPLOYMENT, 1).await?;
    h.start_operator()?;
    h.create_rotation(
        ROTATION,
        ontap_spec(&server, alternating(), json!({"rotationRequest": "first"})),
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
