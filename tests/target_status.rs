//! A target's status on the real parts: the operator logs in with the target's admin
//! credentials against the Redis Software API test server (in front of a real redis-server)
//! and says what it found in the RotationTarget's status, its printer columns and its metrics;
//! a refused admin login is kept there, so that a restarted operator holds back as the one
//! before it did.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::checks::{condition_reason, phase, ready_message};
use common::*;
use password_rotator::resource::Phase;
use password_rotator::rotation_target::{RotationTarget, TargetStatus};
use rotator_test_support::api_server::ServerTls;
use rotator_test_support::certs;
use serde_json::json;

const WRONG_ADMIN_PASSWORD: &str = "Wrong-Admin-Pa55word";

/// Waits until RotationTarget `TARGET`'s status passes `check`.
async fn wait_target(
    h: &Harness,
    what: &str,
    check: impl Fn(&TargetStatus) -> bool,
) -> Result<RotationTarget> {
    h.wait_target(TARGET, Duration::from_secs(90), what, check)
        .await
}

fn ready(status: &TargetStatus) -> Option<(&str, &str, &str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// The text the operator of `run` serves on /metrics.
async fn metrics(h: &Harness, run: u32) -> Result<String> {
    let log = h.operator_log(run);
    let addr = log
        .lines()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .context("the operator logs where it serves metrics")?
        .to_owned();
    Ok(reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?)
}

/// `notAfter` of the certificate in `pem`, as `openssl x509 -enddate` reads it.
fn not_after(pem: &str) -> Result<jiff::Timestamp> {
    let text = certs::text(pem)?;
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Not After : "))
        .context("openssl printed no Not After")?;
    let parsed = jiff::fmt::strtime::parse("%b %e %H:%M:%S %Y GMT", line.replace("  ", " "))?;
    Ok(parsed
        .to_datetime()?
        .to_zoned(jiff::tz::TimeZone::UTC)?
        .timestamp())
}

/// The API server presents a certificate made by `openssl req -x509` (as Redis Software's
/// own): the target shows its `notAfter`, the cluster's name and version, and counts the
/// resources that name it.
#[tokio::test]
async fn a_target_says_it_is_ready_what_it_is_and_how_many_resources_use_it() -> Result<()> {
    let made = certs::self_signed("localhost", &["DNS:localhost", "IP:127.0.0.1"])?;
    let expires = not_after(&made.cert_pem)?;
    let mut h = Harness::with_tls("target-ready", ServerTls::from(&made)).await?;
    h.start_operator()?;
    let target = wait_target(&h, "Ready", |s| {
        ready(s).is_some_and(|(status, ..)| status == "True")
    })
    .await?;
    let status = target.status.context("status")?;
    let (_, reason, message) = ready(&status).context("Ready")?;
    assert_eq!(reason, "Connected");
    assert!(message.contains("cluster.test"), "{message}");
    assert_eq!(status.identity.as_deref(), Some("cluster.test"));
    assert_eq!(status.version.as_deref(), Some("7.8.4-95"));
    assert_eq!(
        status.certificate_expires_time.as_ref().map(|t| t.0),
        Some(expires)
    );
    assert_eq!(
        status.admin_password_expires_time, None,
        "the cluster's passwords never expire"
    );
    assert_eq!(status.resources, 0);
    assert_eq!(status.observed_generation, target.metadata.generation);
    let budget = status.login_budget.context("loginBudget")?;
    assert_eq!((budget.failures, budget.held_until), (0, None));

    h.create_rotation("orders-cache", h.user_spec(json!({})))
        .await?;
    wait_target(&h, "one resource", |s| s.resources == 1).await?;

    let columns = rbac::kubectl(&["-n", h.ns(), "get", "rotationtargets", TARGET], None).await?;
    let header = columns.lines().next().unwrap_or_default();
    for column in [
        "READY",
        "IDENTITY",
        "RESOURCES",
        "CERTIFICATE EXPIRES",
        "AGE",
    ] {
        assert!(header.contains(column), "{columns}");
    }
    let row = columns.lines().nth(1).unwrap_or_default();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..4] == [TARGET, "True", "cluster.test", "1"],
        "{columns}"
    );

    let labels = format!(
        "kind=\"RotationTarget\",namespace=\"{}\",name=\"{TARGET}\"",
        h.ns()
    );
    let text = metrics(&h, 1).await?;
    for expected in [
        format!("password_rotator_target_ready{{{labels}}} 1"),
        format!("password_rotator_target_resources{{{labels}}} 1"),
        format!("password_rotator_target_login_failures{{{labels}}} 0"),
        format!(
            "password_rotator_target_certificate_expiry_timestamp_seconds{{{labels}}} {}",
            expires.as_second()
        ),
    ] {
        assert!(text.contains(&expected), "{expected} not in:\n{text}");
    }
    h.assert_no_secret_value_leaks().await?;
    h.finish().await
}

/// Under a password expiration policy, the target says when the admin's own password expires:
/// its `password_issue_date` plus the policy's days.
#[tokio::test]
async fn a_target_says_when_its_admin_password_expires() -> Result<()> {
    let mut h = Harness::configured("target-expiry", |config| {
        config.password_expiration_days = 90;
        config
            .password_issue_dates
            .insert(ADMIN_EMAIL.into(), "2026-11-01T00:00:00Z".into());
    })
    .await?;
    h.start_operator()?;
    let target = wait_target(&h, "adminPasswordExpiresTime", |s| {
        s.admin_password_expires_time.is_some()
    })
    .await?;
    let status = target.status.context("status")?;
    assert_eq!(
        status.admin_password_expires_time.map(|t| t.0.to_string()),
        Some("2027-01-30T00:00:00Z".to_owned())
    );
    h.finish().await
}

/// A wrong admin password: the target's check is refused once, the target says so with its
/// budget, and no login with those credentials is tried again: not by the resource that then
/// wants to rotate, nor by a restarted operator, which reads the budget from the target.
/// Fixed credentials are tried at once, and the rotation goes through.
#[tokio::test]
async fn a_refused_admin_login_is_kept_in_the_target_across_a_restart() -> Result<()> {
    let mut h = Harness::new("target-refused").await?;
    h.put_secret(
        "rs-admin",
        &[
            ("username", ADMIN_EMAIL),
            ("password", WRONG_ADMIN_PASSWORD),
        ],
    )
    .await?;
    h.start_operator()?;
    let target = wait_target(&h, "Unauthorized", |s| {
        ready(s).is_some_and(|(_, reason, _)| reason == "Unauthorized")
    })
    .await?;
    let status = target.status.context("status")?;
    let budget = status.login_budget.context("loginBudget")?;
    assert_eq!(budget.failures, 1);
    let held_until = budget.held_until.context("heldUntil")?.0;
    assert!(
        held_until > jiff::Timestamp::now() + Duration::from_secs(29 * 60),
        "held for longer than Redis Software's 30-minute lockout: {held_until}"
    );
    assert!(budget.refused_for.is_some_and(|by| by.contains(TARGET)));
    assert_eq!(h.api.failed_logins(ADMIN_EMAIL), 1);

    h.kill_operator().await?;
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "after-restart"})),
    )
    .await?;
    let blocked = h
        .wait_for("orders-cache", Duration::from_secs(60), "Blocked", |r| {
            phase(r) == Some(Phase::Blocked)
        })
        .await?;
    assert_eq!(
        condition_reason(&blocked, "Ready").as_deref(),
        Some("Unauthorized"),
        "{}",
        ready_message(&blocked)
    );
    assert!(
        ready_message(&blocked).contains("no login is tried with them before"),
        "held by what the target's status kept: {}",
        ready_message(&blocked)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.api.failed_logins(ADMIN_EMAIL),
        1,
        "the restarted operator tried the refused credentials again"
    );

    h.put_secret(
        "rs-admin",
        &[("username", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
    )
    .await?;
    wait_target(&h, "Ready again", |s| {
        ready(s).is_some_and(|(status, ..)| status == "True")
            && s.login_budget.as_ref().is_some_and(|b| b.failures == 0)
    })
    .await?;
    h.wait_rotated("orders-cache", Duration::from_secs(120))
        .await?;
    h.assert_no_leak(&[WRONG_ADMIN_PASSWORD.into()]).await?;
    h.assert_no_secret_value_leaks().await?;
    h.finish().await
}

/// One cluster reached through two targets (an IP address and a name): once the cluster has
/// said who it is, both spend one failed-login budget. A wrong admin password is tried once,
/// not once per target.
#[tokio::test]
async fn two_targets_on_one_cluster_share_one_login_budget() -> Result<()> {
    let mut h = Harness::new("target-shared").await?;
    let mut connection = h.rs_connection();
    connection["url"] = json!(h.api.url().replace("127.0.0.1", "localhost"));
    h.put_target("by-name", json!({"redisSoftware": connection}))
        .await?;
    h.start_operator()?;
    for name in [TARGET, "by-name"] {
        h.wait_target(name, Duration::from_secs(90), "Ready", |s| {
            s.identity.as_deref() == Some("cluster.test")
        })
        .await?;
    }
    h.put_secret(
        "rs-admin",
        &[
            ("username", ADMIN_EMAIL),
            ("password", WRONG_ADMIN_PASSWORD),
        ],
    )
    .await?;
    for name in [TARGET, "by-name"] {
        h.wait_target(name, Duration::from_secs(90), "Unauthorized", |s| {
            ready(s).is_some_and(|(_, reason, _)| reason == "Unauthorized")
        })
        .await?;
    }
    assert_eq!(
        h.api.failed_logins(ADMIN_EMAIL),
        1,
        "the wrong password was tried once for both targets"
    );
    h.finish().await
}

/// Two processes at once: one read the target and paused before writing its status, while
/// another was refused the admin login and recorded that in the status. The paused process's
/// write, made from the copy it read before, must not write over the refusal, or the refused
/// credentials are tried again (the budget's whole point is that they are not).
#[tokio::test]
async fn a_refusal_another_process_recorded_is_never_written_over() -> Result<()> {
    let h = Harness::new("target-overwrite").await?;
    let mut paused = h.spawn_operator(&["--fail-point", "before-target-status:stop"])?;
    stopped_at(&paused, "before-target-status").await?;
    h.put_secret(
        "rs-admin",
        &[
            ("username", ADMIN_EMAIL),
            ("password", WRONG_ADMIN_PASSWORD),
        ],
    )
    .await?;
    let mut refused = h.spawn_operator(&[])?;
    wait_target(&h, "the refusal recorded", |s| {
        s.login_budget
            .as_ref()
            .is_some_and(|b| b.refused_for.is_some())
    })
    .await?;
    assert_eq!(h.api.failed_logins(ADMIN_EMAIL), 1);
    continue_process(&paused)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.api.failed_logins(ADMIN_EMAIL),
        1,
        "the refused credentials were tried again"
    );
    let status = h.targets().get(TARGET).await?.status.context("status")?;
    let budget = status.login_budget.context("loginBudget")?;
    assert!(
        budget
            .held_until
            .as_ref()
            .is_some_and(|until| until.0 > jiff::Timestamp::now() + Duration::from_secs(29 * 60)),
        "the refusal is still held: {budget:?}"
    );
    for process in [&mut paused, &mut refused] {
        process.start_kill()?;
        process.wait().await?;
    }
    h.assert_no_leak(&[WRONG_ADMIN_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}
