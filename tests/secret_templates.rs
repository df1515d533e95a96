//! Secret templates and the previous password, on the real parts: every version of the
//! workload Secret that the apiserver ever held is watched, so "in the same write" is checked
//! on what a client could have read, not inferred.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use common::checks::*;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher;
use password_rotator::resource::Step;
use serde_json::json;

const URL: &str = "redis://{{ .username }}:{{ .password | urlquery }}@cache:6379/0";

fn url_of(password: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    format!("redis://{USER}:{encoded}@cache:6379/0")
}

/// Every version of the workload Secret, as its keys' text.
type Versions = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

fn watch_versions(h: &Harness) -> (Versions, tokio::task::JoinHandle<()>) {
    let versions: Versions = Arc::default();
    let seen = versions.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={USER_SECRET}"));
    let stream = watcher::watcher(h.secrets(), config);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let secrets: Vec<Secret> = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => vec![s],
                _ => continue,
            };
            for secret in secrets {
                let keys = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                seen.lock().unwrap().push(keys);
            }
        }
    });
    (versions, task)
}

#[tokio::test]
async fn templates_are_written_with_the_password_and_the_previous_one_goes_before_it_dies()
-> Result<()> {
    let mut h = Harness::new("templates").await?;
    h.create_deployment("orders", 1).await?;
    let (versions, watch) = watch_versions(&h);
    let spec = h.user_spec(json!({
        "secret": {
            "name": USER_SECRET,
            "template": {"url": URL},
            "previousPasswordKey": "previous-password",
        },
        "rollout": {"workloads": [{"kind": "Deployment", "name": "orders"}], "overlap": "1s", "timeout": "5m"},
        "rotationRequest": "templates",
    }));
    h.create_rotation("orders-cache", spec).await?;

    // Right before the DELETE of the old password: it still works, and no key offers it.
    let mut operator = h.spawn_operator(&["--fail-point", "after-step-Retired"])?;
    tokio::time::timeout(Duration::from_secs(60), operator.wait())
        .await
        .context("the operator never reached the retirement")??;
    assert_eq!(
        step(&h.rotation("orders-cache").await?),
        Some(Step::Retired)
    );
    let new = h
        .secret_value(USER_SECRET, "password")
        .await?
        .context("a password")?;
    assert!(h.redis.auth(USER, USER_PASSWORD).await?, "not deleted yet");
    assert_eq!(
        h.secret_value(USER_SECRET, "previous-password").await?,
        None
    );
    assert_eq!(
        h.secret_value(USER_SECRET, "url").await?,
        Some(url_of(&new))
    );

    h.start_operator()?;
    h.wait_rotated("orders-cache", Duration::from_secs(60))
        .await?;
    assert_rotated(&h).await?;
    watch.abort();

    let versions = versions.lock().unwrap().clone();
    assert!(
        versions.iter().any(|v| {
            v.get("password") == Some(&new)
                && v.get("previous-password").map(String::as_str) == Some(USER_PASSWORD)
        }),
        "the old password was offered beside the new one while both worked"
    );
    for version in &versions {
        match version.get("password") {
            Some(password) if *password == new => {
                assert_eq!(
                    version.get("url"),
                    Some(&url_of(&new)),
                    "url in the same write"
                )
            }
            Some(_) => assert!(
                version.get("url").is_none(),
                "no url rendered before the rotation"
            ),
            None => panic!("a version without the password"),
        }
    }
    h.assert_no_leak(&[new, USER_PASSWORD.into(), ADMIN_PASSWORD.into()])
        .await?;
    h.finish().await
}

#[tokio::test]
async fn bad_templates_are_refused_and_change_nothing() -> Result<()> {
    let mut h = Harness::new("bad-templates").await?;
    let refused = h
        .create_rotation(
            "clash",
            h.user_spec(json!({"secret": {"name": USER_SECRET, "template": {"password": "x"}}})),
        )
        .await
        .expect_err("refused at admission");
    assert!(refused.to_string().contains("template keys"), "{refused}");
    // A PEM block in an allowed Secret could become a CA that a target's caSecret names.
    let pem = h
        .create_rotation(
            "pem",
            h.user_spec(json!({"secret": {"name": USER_SECRET, "template": {
                "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            }}})),
        )
        .await
        .expect_err("refused at admission");
    assert!(pem.to_string().contains("never a PEM block"), "{pem}");

    h.start_operator()?;
    h.create_rotation(
        "unknown-field",
        h.user_spec(json!({
            "secret": {"name": USER_SECRET, "template": {"url": "redis://{{ .host }}"}},
            "rotationRequest": "now",
        })),
    )
    .await?;
    let invalid = h
        .wait_for(
            "unknown-field",
            Duration::from_secs(30),
            "InvalidSpec",
            |r| condition_reason(r, "Ready").as_deref() == Some("InvalidSpec"),
        )
        .await?;
    let message = ready_message(&invalid);
    assert!(message.contains("spec.secret.template"), "{message}");
    assert!(message.contains(".host"), "{message}");
    assert_eq!(
        h.secret_value(USER_SECRET, "password").await?.as_deref(),
        Some(USER_PASSWORD)
    );
    assert!(h.redis.auth(USER, USER_PASSWORD).await?);
    h.finish().await
}
