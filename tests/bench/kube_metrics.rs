//! Kubernetes writes, counted by kube-apiserver itself: `apiserver_request_total` from
//! `GET /metrics`, summed over the write verbs, by resource. The metric has no namespace
//! label, so a delta counts every client's writes: the bench keeps its measurement windows
//! free of its own writes (or subtracts them) and reports other test namespaces it saw.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use kube::Client;
use kube::api::ListParams;

/// The verb labels that change state (APPLY is server-side apply; CREATE/UPDATE do not
/// appear in current kube-apiserver versions but are listed to be safe).
pub const WRITE_VERBS: &[&str] = &[
    "POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE",
];

/// Resources the operator writes.
pub const OPERATOR_RESOURCES: &[&str] = &[
    "passwordrotations",
    "secrets",
    "events",
    "deployments",
    "statefulsets",
    "daemonsets",
];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    /// `resource` for one object, `namespace`/`cluster` for a collection.
    pub scope: String,
}

impl Key {
    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// A write verb, except a DELETE of a whole collection (the namespace controller
    /// emptying deleted namespaces; the operator never deletes collections).
    pub fn is_write(&self) -> bool {
        WRITE_VERBS.contains(&self.verb.as_str()) && !self.is_delete_collection()
    }

    pub fn is_delete_collection(&self) -> bool {
        self.verb == "DELETE" && self.scope != "resource"
    }

    pub fn is_operator_resource(&self) -> bool {
        OPERATOR_RESOURCES.contains(&self.resource.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot(pub BTreeMap<Key, f64>);

pub async fn snapshot(client: &Client) -> Result<Snapshot> {
    let request = kube::core::Request::new("/metrics")
        .list(&ListParams::default())
        .context("building GET /metrics")?;
    let text = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.request_text(request),
    )
    .await
    .context("GET /metrics timed out")?
    .context("GET /metrics")?;
    Ok(parse(&text))
}

pub fn parse(text: &str) -> Snapshot {
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let key = Key {
            verb: get("verb"),
            resource: get("resource"),
            subresource: get("subresource"),
            scope: get("scope"),
        };
        *totals.entry(key).or_insert(0.0) += value;
    }
    Snapshot(totals)
}

/// `a="x",b="y\"z"` -> {a: x, b: y"z}
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// Writes between two snapshots, by `resource[/subresource]`, restricted by `keep`.
pub fn write_delta(
    before: &Snapshot,
    after: &Snapshot,
    keep: impl Fn(&Key) -> bool,
) -> BTreeMap<String, u64> {
    let mut by_resource = BTreeMap::new();
    for (key, value) in &after.0 {
        if !key.is_write() || !keep(key) {
            continue;
        }
        let delta = value - before.0.get(key).copied().unwrap_or(0.0);
        if delta >= 0.5 {
            *by_resource.entry(key.resource_path()).or_insert(0) += delta.round() as u64;
        }
    }
    by_resource
}

/// Requests between two snapshots, by `VERB resource[/subresource]`, restricted by `keep`.
pub fn delta_by_verb(
    before: &Snapshot,
    after: &Snapshot,
    keep: impl Fn(&Key) -> bool,
) -> BTreeMap<String, u64> {
    let mut by_verb = BTreeMap::new();
    for (key, value) in &after.0 {
        if !keep(key) {
            continue;
        }
        let delta = value - before.0.get(key).copied().unwrap_or(0.0);
        if delta >= 0.5 {
            *by_verb
                .entry(format!("{} {}", key.verb, key.resource_path()))
                .or_insert(0) += delta.round() as u64;
        }
    }
    by_verb
}

/// Every verb label the apiserver has reported so far.
pub fn verbs_seen(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot.0.keys().map(|k| k.verb.clone()).collect()
}
