//! End-to-end TLS: the operator process rotates against an API server whose certificate is
//! what Redis Software ships (self-signed by `openssl req -x509`, CA:TRUE) or one signed by an
//! openssl CA; with a caSecret that does not trust the server it blocks as `TlsUntrusted`,
//! sends nothing, and says what the server presented. Real `AUTH` proves which passwords work.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::checks::{condition_reason, phase, ready_message};
use common::*;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use password_rotator::resource::Phase;
use rotator_test_support::api_server::ServerTls;
use rotator_test_support::certs;
use serde_json::json;

const ROTATION_TIMEOUT: Duration = Duration::from_secs(90);
const LOOPBACK_SANS: [&str; 2] = ["DNS:localhost", "IP:127.0.0.1"];

/// The first event with `reason`; it is sent just after the status write that shows it.
async fn wait_event(h: &Harness, reason: &str) -> Result<CoreEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = h.events().await?;
        if let Some(event) = events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
        {
            return Ok(event);
        }
        anyhow::ensure!(Instant::now() < deadline, "no {reason} event within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests a rotation of the user and proves it completed: the new password works, the old
/// one is refused.
async fn rotate(h: &mut Harness) -> Result<()> {
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "tls"})),
    )
    .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?, "the new password works");
    assert!(
        !h.redis.auth(USER, USER_PASSWORD).await?,
        "the old password is refused"
    );
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await
}

#[tokio::test]
async fn rotates_with_an_openssl_self_signed_ca_certificate_pinned_in_ca_secret() -> Result<()> {
    let made = certs::self_signed("localhost", &LOOPBACK_SANS)?;
    assert!(certs::text(&made.cert_pem)?.contains("CA:TRUE"));
    let mut h = Harness::with_tls("tls-pinned", ServerTls::from(&made)).await?;
    assert_eq!(
        h.secret_value("rs-ca", "ca.crt").await?,
        Some(made.cert_pem),
        "caSecret holds the server's own certificate"
    );
    rotate(&mut h).await?;
    h.finish().await
}

#[tokio::test]
async fn rotates_with_an_openssl_ca_signed_certificate() -> Result<()> {
    let (ca_pem, server) = certs::ca_signed("localhost", &LOOPBACK_SANS)?;
    let mut h = Harness::with_tls("tls-ca", ServerTls::from(&server)).await?;
    h.put_secret("rs-ca", &[("ca.crt", &ca_pem)]).await?;
    rotate(&mut h).await?;
    h.finish().await
}

#[tokio::test]
async fn an_untrusted_certificate_blocks_without_a_call_until_ca_secret_is_fixed() -> Result<()> {
    let presented = certs::self_signed("localhost", &LOOPBACK_SANS)?;
    let fingerprint = certs::sha256_fingerprint(&presented.cert_pem)?;
    let mut h = Harness::with_tls("tls-untrusted", ServerTls::from(&presented)).await?;
    let wrong = certs::self_signed("localhost", &LOOPBACK_SANS)?;
    h.put_secret("rs-ca", &[("ca.crt", &wrong.cert_pem)])
        .await?;
    let hashes_before = h.redis.password_hashes(USER).await?;

    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(json!({"rotationRequest": "untrusted"})),
    )
    .await?;
    let blocked = h
        .wait_for("orders-cache", Duration::from_secs(60), "Blocked", |r| {
            phase(r) == Some(Phase::Blocked)
        })
        .await?;
    assert_eq!(
        condition_reason(&blocked, "Ready").as_deref(),
        Some("TlsUntrusted")
    );
    let ready = blocked
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    assert_eq!(ready.status, "False");
    let message = ready_message(&blocked);
    for part in ["subject \"CN=localhost\"", &fingerprint] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    let warning = wait_event(&h, "TlsUntrusted").await?;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.message.unwrap_or_default();
    for part in ["CN=localhost", &fingerprint] {
        assert!(note.contains(part), "{part:?} not in {note}");
    }

    // Nothing reached the server, so nothing changed.
    assert!(
        h.api.requests().is_empty(),
        "the API server got requests: {:?}",
        h.api.requests()
    );
    assert_eq!(h.redis.password_hashes(USER).await?, hashes_before);
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );

    // The right certificate in caSecret resumes the rotation.
    h.put_secret("rs-ca", &[("ca.crt", &presented.cert_pem)])
        .await?;
    h.wait_rotated("orders-cache", ROTATION_TIMEOUT).await?;
    let new = h.secret_value(USER_SECRET, "password").await?.unwrap();
    assert!(h.redis.auth(USER, &new).await?);
    assert!(!h.redis.auth(USER, USER_PASSWORD).await?);
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}
