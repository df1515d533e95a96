//! When scheduled rotations may start, on the real parts: two resources due every minute, one
//! with its window open now and one with it closed, watched for as long as the first needs to
//! rotate; and what admission refuses.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use password_rotator::resource::Phase;
use serde_json::json;

/// "HH:MM-HH:MM" (UTC) from `now + from` to `now + to`, in whole minutes.
fn hours(now: Timestamp, from: i64, to: i64) -> String {
    let at = |minutes: i64| {
        let t = (now + jiff::SignedDuration::from_mins(minutes)).to_zoned(TimeZone::UTC);
        format!("{:02}:{:02}", t.hour(), t.minute())
    };
    format!("{}-{}", at(from), at(to))
}

#[tokio::test]
async fn a_due_rotation_waits_for_its_window_and_one_inside_runs() -> Result<()> {
    let mut h = Harness::with_users("window", 1).await?;
    h.start_operator()?;
    let now = Timestamp::now();
    // Closed from now until two hours on; open for an hour around now.
    let closed = hours(now, 120, 180);
    let open = hours(now, -30, 30);
    h.create_rotation(
        "closed",
        h.user_spec(json!({"schedule": {"cron": "* * * * *", "window": {"hours": closed}}})),
    )
    .await?;
    let mut open_spec =
        h.user_spec(json!({"schedule": {"cron": "* * * * *", "window": {"hours": open}}}));
    open_spec["target"]["user"] = json!("app-0");
    open_spec["secret"]["name"] = json!("app-0-redis");
    h.create_rotation("open", open_spec).await?;

    h.wait_rotated("open", Duration::from_secs(150)).await?;
    let closed_status = h.rotation("closed").await?.status.unwrap_or_default();
    assert_eq!(closed_status.phase, Some(Phase::Idle));
    assert!(
        closed_status.last_rotation_time.is_none(),
        "a rotation due outside its window waited"
    );
    let next = closed_status
        .next_rotation_time
        .expect("the window's opening is the next rotation")
        .0;
    let opening = now + jiff::SignedDuration::from_mins(120);
    let wait = next.duration_since(opening).as_secs().abs();
    assert!(
        wait <= 60,
        "next rotation {next} is when the window opens ({opening})"
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    h.finish().await
}

#[tokio::test]
async fn malformed_windows_are_refused_at_admission() -> Result<()> {
    let h = Harness::new("window-bad").await?;
    for hours in ["25:00-01:00", "10:00-10:00", "9:00-17:00"] {
        let refused = h
            .create_rotation(
                "bad",
                h.user_spec(json!({"schedule": {"every": "720h", "window": {"hours": hours}}})),
            )
            .await
            .expect_err("refused at admission");
        assert!(
            refused.to_string().contains("HH:MM-HH:MM"),
            "{hours}: {refused}"
        );
    }
    let refused = h
        .create_rotation(
            "bad",
            h.user_spec(json!({"schedule": {"every": "720h", "window": {"days": ["Caturday"]}}})),
        )
        .await
        .expect_err("refused at admission");
    assert!(refused.to_string().contains("Caturday"), "{refused}");
    h.finish().await
}
