//! The alert rules (deploy/monitoring/alerts.yaml) and the Grafana dashboard
//! (deploy/monitoring/dashboard.json), against what a real operator exports:
//!
//! * `promtool check rules` accepts the rules, and the Helm chart's copy is identical;
//! * the dashboard is a Grafana dashboard with a `${datasource}` Prometheus variable and
//!   namespace/name variables;
//! * a real run (the harness: control plane, API test server, the operator as a process) with
//!   (a) a resource that rotates on a schedule of 1h and (b) one Blocked by an admin login the
//!   cluster refuses; its /metrics is scraped, every metric the rules and the dashboard name
//!   must be in it, and the scraped samples of the families the rules use become the
//!   `input_series` of a `promtool test rules` file (gauges held constant, timestamps shifted
//!   so that (a)'s nextRotationTime is 1h into the test). It asserts that
//!   PasswordRotationBlocked fires for (b) only, after its `for:`; PasswordRotationOverdue
//!   fires for (a) only once the evaluation time passes nextRotationTime + 1h grace + `for:`;
//!   PasswordRotatorTargetErrors and PasswordRotatorReconcileErrors fire for the run's one
//!   injected 503 (counters grow by the run's counts every minute, as if the run repeated),
//!   not before their `for:`; PasswordRotationDegraded fires after 15 minutes for a copy of
//!   (a)'s real Degraded series set to True (a healthy run has none);
//!   PasswordRotationNotCompleted does not fire; PasswordRotatorTargetNotReady fires for (b)'s
//!   target only; PasswordRotatorTargetAdminPasswordExpiring fires for the admin password the
//!   API server says expires in 10 days, after its `for:`; and
//!   PasswordRotatorTargetCertificateExpiring fires for a copy of the real certificate series
//!   set 10 days ahead. A renamed metric or label fails here.
//!
//! promtool comes from Debian's `prometheus` package, installed when missing by
//! tests/monitoring/promtool.sh.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use password_rotator::resource::Phase;
use rotator_test_support::api_server::FaultRule;
use rotator_test_support::cluster;
use serde_json::{Value, json};

const RULES: &str = "deploy/monitoring/alerts.yaml";
const CHART_RULES: &str = "deploy/helm/password-rotator/files/alerts.yaml";
const DASHBOARD: &str = "deploy/monitoring/dashboard.json";
/// Grace and schedule the rules and this test agree on (PasswordRotationOverdue).
const SCHEDULE_SECONDS: f64 = 3600.0;

fn promtool() -> Result<PathBuf> {
    let script = cluster::repo_root().join("tests/monitoring/promtool.sh");
    let out = std::process::Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(!path.is_empty(), "promtool.sh printed no path");
    Ok(PathBuf::from(path))
}

fn run_promtool(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = std::process::Command::new(promtool()?)
        .args(args)
        .output()
        .context("running promtool")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(cluster::repo_root().join(path)).with_context(|| path.to_owned())
}

fn rules() -> Result<Vec<serde_yaml::Value>> {
    let file: serde_yaml::Value = serde_yaml::from_str(&read(RULES)?)?;
    let mut rules = Vec::new();
    for group in file["groups"].as_sequence().context("groups")? {
        rules.extend(
            group["rules"]
                .as_sequence()
                .context("rules")?
                .iter()
                .cloned(),
        );
    }
    Ok(rules)
}

/// Every `password_rotator_*` name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("password_rotator_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_rules_pass_promtool_and_the_chart_has_the_same() -> Result<()> {
    let path = cluster::repo_root().join(RULES);
    let out = run_promtool(&["check".as_ref(), "rules".as_ref(), path.as_os_str()])?;
    assert!(out.contains("SUCCESS"), "{out}");
    ensure!(
        read(RULES)? == read(CHART_RULES)?,
        "{CHART_RULES} differs from {RULES}: copy it"
    );
    let alerts: BTreeSet<String> = rules()?
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    for alert in [
        "PasswordRotationOverdue",
        "PasswordRotationBlocked",
        "PasswordRotationDegraded",
        "PasswordRotatorTargetErrors",
        "PasswordRotatorReconcileErrors",
    ] {
        ensure!(alerts.contains(alert), "{alert} missing from {RULES}");
    }
    for rule in rules()? {
        let annotations = &rule["annotations"];
        for key in ["summary", "description"] {
            ensure!(annotations[key].is_string(), "{rule:?}: annotation {key}");
        }
        ensure!(
            annotations["description"]
                .as_str()
                .is_some_and(|d| d.contains("Conditions and troubleshooting")),
            "{rule:?}: the description points at the README's troubleshooting table"
        );
    }
    Ok(())
}

fn dashboard() -> Result<Value> {
    Ok(serde_json::from_str(&read(DASHBOARD)?)?)
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        ("query", Value::String(s)) if s.contains("password_rotator_") => {
                            out.push(s.clone())
                        }
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_its_variables() -> Result<()> {
    let d = dashboard()?;
    let schema = d["schemaVersion"].as_i64().context("schemaVersion")?;
    ensure!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = d["templating"]["list"].as_array().context("templating")?;
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let datasource = var("datasource").context("no datasource variable")?;
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["namespace", "name", "target"] {
        let v = var(name).with_context(|| format!("no {name} variable"))?;
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
    }
    let panels = d["panels"].as_array().context("panels")?;
    let mut titles = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().context("title")?;
        ensure!(ids.insert(panel["id"].as_i64()), "{title}: duplicate id");
        titles.insert(title);
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().context("targets")?;
        ensure!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            ensure!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: a target without expr"
            );
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    ensure!(titles.len() >= 9, "{titles:?}");
    for title in ["Resources by phase", "Resources by condition"] {
        let panel = panels.iter().find(|p| p["title"] == title).context(title)?;
        let expr = panel["targets"][0]["expr"].as_str().unwrap_or_default();
        ensure!(
            expr.contains("password_rotator_resources"),
            "{title}: not from the counts by target, which every install exports: {expr}"
        );
    }
    // Per-resource panels follow the namespace/name variables, the counts by target (exported
    // with or without per-resource series) the target variable.
    let panel_exprs = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str());
    for expr in panel_exprs {
        if expr.contains("password_rotator_resources") {
            ensure!(expr.contains("$target"), "{expr}: not filtered by $target");
        } else if expr.contains("password_rotator_resource_")
            || expr.contains("rotation_timestamp_seconds")
        {
            ensure!(
                expr.contains("$namespace"),
                "{expr}: not filtered by $namespace"
            );
        }
    }
    Ok(())
}

/// One sample of an OpenMetrics exposition: `name{labels} value`.
struct Sample {
    name: String,
    /// As exposed, without braces (PromQL accepts the same quoting).
    labels: String,
    value: f64,
}

fn parse_samples(text: &str) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("sample {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').context("labels")?),
            None => (series, ""),
        };
        samples.push(Sample {
            name: name.into(),
            labels: labels.into(),
            value: value
                .parse()
                .with_context(|| format!("value of {line:?}"))?,
        });
    }
    Ok(samples)
}

fn label(sample: &Sample, key: &str) -> Option<String> {
    sample
        .labels
        .split("\",")
        .filter_map(|kv| kv.split_once("=\""))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_end_matches('"').to_owned())
}

/// The operator's /metrics, once `ready` holds for it.
async fn scrape(h: &common::Harness, ready: impl Fn(&str) -> bool) -> Result<String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = h.operator_log(1);
        let addr = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned);
        if let Some(addr) = addr
            && let Ok(response) = http.get(format!("http://{addr}/metrics")).send().await
        {
            let text = response.text().await?;
            if ready(&text) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!("the metrics never showed what was expected:\n{text}");
            }
        } else if Instant::now() > deadline {
            bail!("the operator serves no /metrics; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An annotation as Prometheus renders it: `{{ $labels.x }}`, `{{ $value | humanize }}` and
/// `{{ $value | humanizeDuration }}` (whole seconds).
fn render(template: &str, labels: &BTreeMap<&str, String>, value: f64) -> String {
    let mut text = template.to_owned();
    for (key, value) in labels {
        text = text.replace(&format!("{{{{ $labels.{key} }}}}"), value);
    }
    text = text.replace("{{ $value | humanize }}", &humanize(value));
    text = text.replace(
        "{{ $value | humanizeDuration }}",
        &humanize_duration(value as i64),
    );
    assert!(!text.contains("{{"), "cannot render {template}");
    text
}

/// Go's `%.4g` for 1 <= |v| < 1000 (what humanize leaves): 4 significant digits, trailing
/// zeros dropped.
fn go_g4(v: f64) -> String {
    let exponent = format!("{v:.3e}")
        .split_once('e')
        .and_then(|(_, e)| e.parse::<i32>().ok())
        .unwrap_or(0);
    assert!(
        (0..4).contains(&exponent),
        "{v}: not in the range humanize leaves"
    );
    let fixed = format!("{v:.*}", (3 - exponent) as usize);
    if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        fixed
    }
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
fn humanize(mut v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g4(v))
}

/// The expected alert `alert` with `labels` (severity added) and `value`, annotations
/// rendered from the rules file.
fn expected(
    rules: &[serde_yaml::Value],
    alert: &str,
    labels: &[(&str, &str)],
    value: f64,
) -> Result<Value> {
    let rule = rules
        .iter()
        .find(|r| r["alert"].as_str() == Some(alert))
        .with_context(|| format!("no rule {alert}"))?;
    let mut all: BTreeMap<&str, String> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    for (k, v) in rule["labels"].as_mapping().context("labels")? {
        all.insert(
            k.as_str().context("label")?,
            v.as_str().context("label")?.into(),
        );
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in rule["annotations"].as_mapping().context("annotations")? {
        let key = k.as_str().context("annotation")?;
        let template = v.as_str().context("annotation")?;
        annotations.insert(key.into(), json!(render(template, &all, value)));
    }
    Ok(json!({"exp_labels": all, "exp_annotations": annotations}))
}

/// Prometheus's humanizeDuration, for whole seconds of a minute or more.
fn humanize_duration(seconds: i64) -> String {
    let (days, rest) = (seconds / 86400, seconds % 86400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, secs) = (rest / 60, rest % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m {secs}s")
    } else if hours > 0 {
        format!("{hours}h {minutes}m {secs}s")
    } else {
        format!("{minutes}m {secs}s")
    }
}

#[test]
fn humanize_is_prometheus_humanize() {
    for (v, text) in [
        (15.0, "15"),
        (1.0 / 60.0, "16.67m"),
        (0.05, "50m"),
        (1234.0, "1.234k"),
        (999.94, "999.9"),
        (2.5, "2.5"),
    ] {
        assert_eq!(humanize(v), text, "{v}");
    }
    assert_eq!(humanize_duration(4800), "1h 20m 0s");
    assert_eq!(humanize_duration(90061), "1d 1h 1m 1s");
}

#[tokio::test]
async fn the_alerts_and_the_dashboard_hold_against_a_real_run() -> Result<()> {
    // The admin's password was issued 80 days ago under a 90-day policy: 10 days left.
    let admin_issued = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(80 * 24);
    let admin_issued = jiff::Timestamp::from_second(admin_issued.as_second())?;
    let mut h = common::Harness::configured("alerts", |config| {
        config.password_expiration_days = 90;
        config
            .password_issue_dates
            .insert(common::ADMIN_EMAIL.into(), admin_issued.to_string());
    })
    .await?;
    // (b) logs in with an admin the cluster does not know: Blocked, Unauthorized. Another
    // account than (a)'s, so that (a) never waits on its failed-login budget.
    h.put_secret(
        "rs-admin-unknown",
        &[
            ("username", "nobody@cluster.test"),
            ("password", "Wrong-Admin-Pass-7m"),
        ],
    )
    .await?;
    h.start_operator()?;
    // The target's own check first, so that the one 503 meets the rotation: a target error
    // and a reconcile error, retried.
    h.wait_target(common::TARGET, Duration::from_secs(60), "Ready", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await?;
    h.api.inject(FaultRule::status(503, 1));
    h.create_rotation(
        "scheduled",
        h.user_spec(json!({"schedule": {"every": "1h"}, "rotationRequest": "first"})),
    )
    .await?;
    h.wait_rotated("scheduled", Duration::from_secs(60)).await?;
    let mut connection = h.rs_connection();
    connection["credentialsSecret"] = json!("rs-admin-unknown");
    h.put_target("unknown-admin", json!({"redisSoftware": connection}))
        .await?;
    let spec = h.database_spec(
        json!({"target": {"ref": {"name": "unknown-admin"}}, "rotationRequest": "first"}),
    );
    h.create_rotation("blocked", spec).await?;
    h.wait_for("blocked", Duration::from_secs(60), "Blocked", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(Phase::Blocked)
    })
    .await?;
    let ns = h.ns().to_owned();
    let blocked_line = format!(
        "password_rotator_resource_phase{{namespace=\"{ns}\",name=\"blocked\",phase=\"Blocked\"}} 1"
    );
    let target_line = |name: &str, ready: u8| {
        format!(
            "password_rotator_target_ready{{kind=\"RotationTarget\",namespace=\"{ns}\",name=\"{name}\"}} {ready}"
        )
    };
    let (rs_ready, unknown_not_ready) = (
        target_line(common::TARGET, 1),
        target_line("unknown-admin", 0),
    );
    let text = scrape(&h, |t| {
        t.lines().any(|l| l == blocked_line)
            && t.lines().any(|l| l == rs_ready)
            && t.lines().any(|l| l == unknown_not_ready)
    })
    .await?;
    let samples = parse_samples(&text)?;
    let exported: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();

    // Every metric the rules and the dashboard name is exported by the real operator.
    let rules = rules()?;
    let mut rule_metrics = BTreeSet::new();
    for rule in &rules {
        let expr = rule["expr"].as_str().context("expr")?;
        let names = metric_names(expr);
        ensure!(!names.is_empty(), "{expr}: names no metric");
        rule_metrics.extend(names);
    }
    for name in &rule_metrics {
        ensure!(
            exported.contains(name.as_str()),
            "the rules use {name}, which the operator does not export:\n{text}"
        );
    }
    for expr in dashboard_exprs(&dashboard()?) {
        for name in metric_names(&expr) {
            ensure!(
                exported.contains(name.as_str()),
                "the dashboard uses {name} ({expr}), which the operator does not export:\n{text}"
            );
        }
    }

    // (a)'s next rotation is its last one + 1h; the test's clock starts 1h before it.
    let resource_value = |family: &str, name: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == family
                    && label(s, "namespace").as_deref() == Some(ns.as_str())
                    && label(s, "name").as_deref() == Some(name)
            })
            .map(|s| s.value)
            .with_context(|| format!("no {family} of {name}:\n{text}"))
    };
    let next = resource_value(
        "password_rotator_next_rotation_timestamp_seconds",
        "scheduled",
    )?;
    let last = resource_value(
        "password_rotator_last_successful_rotation_timestamp_seconds",
        "scheduled",
    )?;
    ensure!(
        (next - last - SCHEDULE_SECONDS).abs() < 1.0,
        "next {next} is not last {last} + 1h"
    );
    ensure!(
        resource_value(
            "password_rotator_next_rotation_timestamp_seconds",
            "blocked"
        )
        .is_err(),
        "a resource without schedule has no next rotation"
    );
    let base = next.round() - SCHEDULE_SECONDS;

    let minutes = 180;
    let mut input_series: Vec<Value> = samples
        .iter()
        .filter(|s| rule_metrics.contains(&s.name))
        .map(|s| {
            // Gauges held constant (timestamps shifted); counters grow by the run's count
            // every minute, as if the run repeated.
            let values = if s.name.ends_with("_timestamp_seconds") {
                format!("{}+0x{minutes}", s.value.round() - base)
            } else if s.name.ends_with("_total") {
                format!("0+{}x{minutes}", s.value)
            } else {
                format!("{}+0x{minutes}", s.value)
            };
            json!({"series": format!("{}{{{}}}", s.name, s.labels), "values": values})
        })
        .collect();

    let blocked = expected(
        &rules,
        "PasswordRotationBlocked",
        &[
            ("namespace", &ns),
            ("name", "blocked"),
            ("reason", "Unauthorized"),
        ],
        1.0,
    )?;
    // At 140 min, nextRotationTime (60 min) is 80 min in the past: 1h grace + 10 min `for:`
    // passed.
    let overdue = expected(
        &rules,
        "PasswordRotationOverdue",
        &[("namespace", &ns), ("name", "scheduled")],
        140.0 * 60.0 - SCHEDULE_SECONDS,
    )?;
    // The run's 503 (and any timeouts, refused connections) per minute: a rate over 0.01/s.
    let mut target_errors = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "password_rotator_target_requests_total")
    {
        let status = label(s, "status").context("status")?;
        let failed = (status.len() == 3 && status.starts_with('5'))
            || status == "timeout"
            || status == "connect";
        if failed && s.value / 60.0 > 0.01 {
            let operation = label(s, "operation").context("operation")?;
            target_errors.push(expected(
                &rules,
                "PasswordRotatorTargetErrors",
                &[
                    ("target", &label(s, "target").context("target")?),
                    ("operation", &operation),
                    ("status", &status),
                ],
                s.value / 60.0,
            )?);
        }
    }
    ensure!(
        samples.iter().any(|s| {
            s.name == "password_rotator_target_requests_total"
                && label(s, "status").as_deref() == Some("503")
        }),
        "the injected 503 is not counted:\n{text}"
    );
    // The run's reconcile errors per minute, of each kind: 15 per 15 minutes at least.
    let mut reconcile_errors = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.name == "password_rotator_reconcile_errors_total" && s.value > 0.0)
    {
        let kind = label(s, "kind").context("kind")?;
        reconcile_errors.push(expected(
            &rules,
            "PasswordRotatorReconcileErrors",
            &[("kind", &kind)],
            15.0 * s.value,
        )?);
    }
    ensure!(
        !reconcile_errors.is_empty(),
        "the 503 made no reconcile error:\n{text}"
    );
    // No resource of a healthy run is Degraded. The rule's selector is checked on a copy of
    // (a)'s real Degraded series (family and label keys as exported) made Degraded=True
    // RolloutTimeout, for a resource "degraded", since the same transition time.
    let degraded_since = samples
        .iter()
        .find(|s| {
            s.name == "password_rotator_resource_condition_last_transition_timestamp_seconds"
                && label(s, "name").as_deref() == Some("scheduled")
                && label(s, "type").as_deref() == Some("Degraded")
        })
        .with_context(|| format!("no Degraded condition of scheduled:\n{text}"))?;
    let degraded_labels = degraded_since
        .labels
        .replace("name=\"scheduled\"", "name=\"degraded\"")
        .replace("status=\"False\"", "status=\"True\"")
        .replace("reason=\"AsExpected\"", "reason=\"RolloutTimeout\"");
    ensure!(
        degraded_labels.contains("reason=\"RolloutTimeout\""),
        "{degraded_labels}"
    );
    let degraded_at = degraded_since.value.round() - base;
    input_series.push(json!({
        "series": format!("{}{{{degraded_labels}}}", degraded_since.name),
        "values": format!("{degraded_at}+0x{minutes}"),
    }));
    let degraded = expected(
        &rules,
        "PasswordRotationDegraded",
        &[
            ("namespace", &ns),
            ("name", "degraded"),
            ("reason", "RolloutTimeout"),
        ],
        20.0 * 60.0 - degraded_at,
    )?;
    // Targets: unknown-admin is not Ready; rs's admin password expires in 10 days (a real
    // series); its certificate does not expire soon, so a copy of its real certificate
    // series for a target "expiring" is set to 10 days after the test's start.
    let on_target = |alert: &str, name: &str, value: f64| {
        expected(
            &rules,
            alert,
            &[
                ("kind", "RotationTarget"),
                ("namespace", &ns),
                ("name", name),
            ],
            value,
        )
    };
    let not_ready = on_target("PasswordRotatorTargetNotReady", "unknown-admin", 0.0)?;
    let admin_expiry = samples
        .iter()
        .find(|s| {
            s.name == "password_rotator_target_admin_password_expiry_timestamp_seconds"
                && label(s, "name").as_deref() == Some(common::TARGET)
        })
        .with_context(|| format!("no admin password expiry of {}:\n{text}", common::TARGET))?;
    ensure!(
        admin_expiry.value.round() as i64
            == (admin_issued + jiff::SignedDuration::from_hours(90 * 24)).as_second(),
        "the admin password expires 90 days after its issue: {}",
        admin_expiry.value
    );
    let admin_expiry_at = admin_expiry.value.round() - base;
    let admin_expiring = on_target(
        "PasswordRotatorTargetAdminPasswordExpiring",
        common::TARGET,
        admin_expiry_at - 70.0 * 60.0,
    )?;
    let certificate = samples
        .iter()
        .find(|s| {
            s.name == "password_rotator_target_certificate_expiry_timestamp_seconds"
                && label(s, "name").as_deref() == Some(common::TARGET)
        })
        .with_context(|| format!("no certificate expiry of {}:\n{text}", common::TARGET))?;
    let expiring_at = 10.0 * 86400.0;
    input_series.push(json!({
        "series": format!(
            "{}{{{}}}",
            certificate.name,
            certificate.labels.replace(
                &format!("name=\"{}\"", common::TARGET),
                "name=\"expiring\""
            )
        ),
        "values": format!("{expiring_at}+0x{minutes}"),
    }));
    let certificate_expiring = on_target(
        "PasswordRotatorTargetCertificateExpiring",
        "expiring",
        expiring_at - 70.0 * 60.0,
    )?;
    let none: Vec<Value> = Vec::new();
    let mut alert_tests = vec![
        json!({"eval_time": "4m", "alertname": "PasswordRotationBlocked", "exp_alerts": none}),
        json!({"eval_time": "10m", "alertname": "PasswordRotationBlocked", "exp_alerts": [blocked]}),
        json!({"eval_time": "140m", "alertname": "PasswordRotationBlocked", "exp_alerts": [blocked]}),
        json!({"eval_time": "10m", "alertname": "PasswordRotationOverdue", "exp_alerts": none}),
        // Due at 60 min, past the grace at 120 min, pending until 130 min.
        json!({"eval_time": "125m", "alertname": "PasswordRotationOverdue", "exp_alerts": none}),
        json!({"eval_time": "140m", "alertname": "PasswordRotationOverdue", "exp_alerts": [overdue]}),
    ];
    alert_tests.extend([
        json!({"eval_time": "5m", "alertname": "PasswordRotatorTargetErrors", "exp_alerts": none}),
        json!({"eval_time": "140m", "alertname": "PasswordRotatorTargetErrors", "exp_alerts": target_errors}),
        json!({"eval_time": "10m", "alertname": "PasswordRotatorReconcileErrors", "exp_alerts": none}),
        json!({"eval_time": "140m", "alertname": "PasswordRotatorReconcileErrors", "exp_alerts": reconcile_errors}),
    ]);
    alert_tests.extend([
        json!({"eval_time": "10m", "alertname": "PasswordRotationDegraded", "exp_alerts": none}),
        json!({"eval_time": "20m", "alertname": "PasswordRotationDegraded", "exp_alerts": [degraded]}),
    ]);
    alert_tests.extend([
        json!({"eval_time": "5m", "alertname": "PasswordRotatorTargetNotReady", "exp_alerts": none}),
        json!({"eval_time": "15m", "alertname": "PasswordRotatorTargetNotReady", "exp_alerts": [not_ready]}),
        json!({"eval_time": "30m", "alertname": "PasswordRotatorTargetAdminPasswordExpiring", "exp_alerts": none}),
        json!({"eval_time": "70m", "alertname": "PasswordRotatorTargetAdminPasswordExpiring", "exp_alerts": [admin_expiring]}),
        json!({"eval_time": "30m", "alertname": "PasswordRotatorTargetCertificateExpiring", "exp_alerts": none}),
        json!({"eval_time": "70m", "alertname": "PasswordRotatorTargetCertificateExpiring", "exp_alerts": [certificate_expiring]}),
    ]);
    // Blocked and succeeded rotations only: no rotation abandoned or rolled back.
    alert_tests.push(json!({
        "eval_time": "140m",
        "alertname": "PasswordRotationNotCompleted",
        "exp_alerts": none,
    }));
    // With series per resource, the rules on the counts by target stay silent.
    for alert in [
        "PasswordRotationsOverdueOnTarget",
        "PasswordRotationsBlockedOnTarget",
        "PasswordRotationsDegradedOnTarget",
    ] {
        alert_tests.push(json!({"eval_time": "140m", "alertname": alert, "exp_alerts": none}));
    }

    // Without them (--per-resource-metrics=false): the same run's counts by target, and a
    // copy of rs's real Degraded count made Degraded=True RolloutTimeout since (a)'s time.
    let per_resource = |name: &str| {
        name.starts_with("password_rotator_resource_")
            || name == "password_rotator_next_rotation_timestamp_seconds"
            || name == "password_rotator_last_successful_rotation_timestamp_seconds"
    };
    let mut by_target_series: Vec<Value> = input_series
        .iter()
        .filter(|series| {
            let name = series["series"].as_str().unwrap_or_default();
            !per_resource(name.split('{').next().unwrap_or_default())
        })
        .cloned()
        .collect();
    let degraded_on_target = samples
        .iter()
        .find(|s| {
            s.name == "password_rotator_resources_condition_earliest_transition_timestamp_seconds"
                && label(s, "target").as_deref() == Some(common::TARGET)
                && label(s, "type").as_deref() == Some("Degraded")
        })
        .with_context(|| format!("no Degraded count of {}:\n{text}", common::TARGET))?;
    by_target_series.push(json!({
        "series": format!(
            "{}{{{}}}",
            degraded_on_target.name,
            degraded_on_target
                .labels
                .replace("status=\"False\"", "status=\"True\"")
                .replace("reason=\"AsExpected\"", "reason=\"RolloutTimeout\"")
        ),
        "values": format!("{degraded_at}+0x{minutes}"),
    }));
    let expected_on = |alert: &str, target: &str, reason: Option<&str>, value: f64| {
        let mut labels = vec![
            ("target_kind", "RotationTarget"),
            ("target_namespace", ns.as_str()),
            ("target", target),
        ];
        labels.extend(reason.map(|reason| ("reason", reason)));
        expected(&rules, alert, &labels, value)
    };
    let blocked_on_target = expected_on(
        "PasswordRotationsBlockedOnTarget",
        "unknown-admin",
        Some("Unauthorized"),
        1.0,
    )?;
    let overdue_on_target = expected_on(
        "PasswordRotationsOverdueOnTarget",
        common::TARGET,
        None,
        140.0 * 60.0 - SCHEDULE_SECONDS,
    )?;
    let degraded_on_target = expected_on(
        "PasswordRotationsDegradedOnTarget",
        common::TARGET,
        Some("RolloutTimeout"),
        20.0 * 60.0 - degraded_at,
    )?;
    let by_target_tests = vec![
        json!({"eval_time": "4m", "alertname": "PasswordRotationsBlockedOnTarget", "exp_alerts": none}),
        json!({"eval_time": "10m", "alertname": "PasswordRotationsBlockedOnTarget", "exp_alerts": [blocked_on_target]}),
        json!({"eval_time": "125m", "alertname": "PasswordRotationsOverdueOnTarget", "exp_alerts": none}),
        json!({"eval_time": "140m", "alertname": "PasswordRotationsOverdueOnTarget", "exp_alerts": [overdue_on_target]}),
        json!({"eval_time": "10m", "alertname": "PasswordRotationsDegradedOnTarget", "exp_alerts": none}),
        json!({"eval_time": "20m", "alertname": "PasswordRotationsDegradedOnTarget", "exp_alerts": [degraded_on_target]}),
        json!({"eval_time": "140m", "alertname": "PasswordRotationBlocked", "exp_alerts": none}),
        json!({"eval_time": "140m", "alertname": "PasswordRotationOverdue", "exp_alerts": none}),
    ];
    let test_file = json!({
        "rule_files": [cluster::repo_root().join(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": alert_tests,
            },
            {
                "interval": "1m",
                "input_series": by_target_series,
                "alert_rule_test": by_target_tests,
            },
        ],
    });
    let dir = cluster::repo_root().join("target/alerts-test");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{ns}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&test_file)?)?;
    let out = run_promtool(&["test".as_ref(), "rules".as_ref(), path.as_os_str()])?;
    assert!(out.contains("SUCCESS"), "{out}");
    h.finish().await
}
