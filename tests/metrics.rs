//! The HTTP endpoints, served in-process on a free port.

use std::sync::Arc;
use std::time::Duration;

use password_rotator::http::{self, Health};
use password_rotator::metrics::Metrics;
use password_rotator::targets::RequestObserver;

#[tokio::test]
async fn serves_metrics_and_health() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let server = tokio::spawn(http::serve_on(listener, metrics.clone(), health.clone()));

    metrics.reconcile();
    metrics.reconcile_error("unauthorized");
    metrics.rotation_finished("succeeded", Some(Duration::from_secs(42)));
    metrics.step_reached("Published", Duration::from_millis(250));
    metrics.last_success("shop", "orders", "2030-01-01T00:00:00Z".parse()?);
    metrics.started("redisSoftware", "add_user_password");
    metrics.finished(
        "redisSoftware",
        "add_user_password",
        "200",
        Duration::from_millis(8),
    );

    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await?;
    for line in [
        "password_rotator_reconciles_total 1",
        "password_rotator_reconcile_errors_total{kind=\"unauthorized\"} 1",
        "password_rotator_rotations_total{result=\"succeeded\"} 1",
        "password_rotator_rotation_duration_seconds_sum 42.0",
        "password_rotator_step_duration_seconds_count{step=\"Published\"} 1",
        "password_rotator_last_successful_rotation_timestamp_seconds{namespace=\"shop\",name=\"orders\"} 1893456000.0",
        "password_rotator_target_requests_total{target=\"redisSoftware\",operation=\"add_user_password\",status=\"200\"} 1",
        "password_rotator_target_requests_in_flight 0",
        "password_rotator_target_requests_in_flight_peak 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    let status = |path: &'static str| {
        let request = http.get(format!("{base}{path}"));
        async move { anyhow::Ok(request.send().await?.status()) }
    };
    assert_eq!(status("/healthz").await?, 200);
    assert_eq!(status("/readyz").await?, 503);
    health.set_ready(true);
    assert_eq!(status("/readyz").await?, 200);
    assert_eq!(status("/nothing").await?, 404);

    server.abort();
    Ok(())
}

#[path = "common/mod.rs"]
mod common;

/// The real operator, scraped after a rotation.
#[tokio::test]
async fn the_operator_reports_a_rotation_in_its_metrics() -> anyhow::Result<()> {
    let mut h = common::Harness::new("metrics").await?;
    h.start_operator()?;
    h.create_rotation(
        "orders-cache",
        h.user_spec(serde_json::json!({"rotationRequest": "m"})),
    )
    .await?;
    h.wait_rotated("orders-cache", std::time::Duration::from_secs(60))
        .await?;
    let log = h.operator_log(1);
    let addr = log
        .lines()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the operator logs where it serves metrics")
        .to_owned();
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await?
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never turned ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for expected in [
        r#"password_rotator_rotations_total{result="succeeded"} 1"#,
        r#"password_rotator_target_requests_total{target="redisSoftware",operation="add_user_password",status="200"} 1"#,
        r#"password_rotator_target_requests_total{target="redisSoftware",operation="delete_user_password",status="200"} 1"#,
        "password_rotator_last_successful_rotation_timestamp_seconds{",
        r#"password_rotator_step_duration_seconds_count{step="Published"} 1"#,
        "password_rotator_rotation_duration_seconds_count 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    h.finish().await
}
