//! Rotating ahead of Redis Software's password expiration, on the real parts: the API test
//! server reports the cluster's `password_expiration_duration` and the user's
//! `password_issue_date`, and the operator rotates before the password expires.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::checks::*;
use common::*;
use jiff::{SignedDuration, Timestamp};
use password_rotator::resource::Phase;
use serde_json::json;

#[tokio::test]
async fn a_password_about_to_expire_is_rotated_ahead_of_it() -> Result<()> {
    let issued = Timestamp::now() - SignedDuration::from_hours(89 * 24);
    let mut h = Harness::configured("expiry", |config| {
        config.password_expiration_days = 90;
        config
            .password_issue_dates
            .insert(USER.into(), issued.to_string());
    })
    .await?;
    h.start_operator()?;
    // No schedule and no request: only the expiration starts it.
    h.create_rotation("orders-cache", h.user_spec(json!({})))
        .await?;
    let rotated = h
        .wait_rotated("orders-cache", Duration::from_secs(60))
        .await?;
    assert_rotated(&h).await?;
    let status = rotated.status.context("status")?;
    let expires = status.password_expires_time.context("an expiry")?.0;
    let in_90_days = Timestamp::now() + SignedDuration::from_hours(90 * 24);
    assert!(
        expires.duration_since(in_90_days).as_secs().abs() < 120,
        "the new password expires 90 days from now, not {expires}"
    );
    let next = status.next_rotation_time.context("a next rotation")?.0;
    assert_eq!(next, expires - SignedDuration::from_hours(72));
    h.wait_event_mentioning("PasswordExpiring").await?;
    h.finish().await
}

#[tokio::test]
async fn a_cluster_without_expiration_is_asked_once_and_nothing_rotates() -> Result<()> {
    let mut h = Harness::new("no-expiry").await?;
    h.start_operator()?;
    h.create_rotation("orders-cache", h.user_spec(json!({})))
        .await?;
    let checked = h
        .wait_for(
            "orders-cache",
            Duration::from_secs(30),
            "an expiry check",
            |r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.password_expiry_checked_time.is_some())
            },
        )
        .await?;
    let status = checked.status.context("status")?;
    assert_eq!(status.password_expires_time, None);
    assert_eq!(status.next_rotation_time, None);
    // The target's own check too, or a kill before it is recorded has the next start check
    // the target again (seen once in CI under load).
    h.target_checked(TARGET).await?;
    h.kill_operator().await?;
    h.api.clear_requests();
    h.start_operator()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        h.api.requests().is_empty(),
        "asked once, not on every start: {:?}",
        h.api.requests()
    );
    let after = h.rotation("orders-cache").await?;
    assert_eq!(phase(&after), Some(Phase::Idle));
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}
