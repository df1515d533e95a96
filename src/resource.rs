//! The `PasswordRotation` custom resource (group `rotator.dev`, version `v1alpha2`): which
//! target, which object there, which Secret, when, and which workloads to roll.

// Each printer column repeats `type_ = ...`, which this lint takes for a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::rotation_target::TargetKind;

/// Annotation that requests one rotation: any token not seen before starts one.
pub const ROTATE_REQUESTED_ANNOTATION: &str = "rotator.dev/rotate-requested";
/// Prefix of the pod-template annotations that restart a workload onto a newly published
/// password: one key per resource, so that resources restarting one workload never undo each
/// other's restarts.
pub const RESTART_ANNOTATION_PREFIX: &str = "rotation.rotator.dev/";

/// `rotation.rotator.dev/<resource name>`; a name longer than an annotation name may be is
/// shortened and made unique with a hash of it.
pub fn restart_annotation_key(resource_name: &str) -> String {
    const MAX: usize = 63;
    if resource_name.len() <= MAX {
        return format!("{RESTART_ANNOTATION_PREFIX}{resource_name}");
    }
    // FNV-1a: stable across releases, which a key that workloads keep must be.
    let hash = resource_name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let head = resource_name[..MAX - 9].trim_end_matches(['-', '.']);
    format!("{RESTART_ANNOTATION_PREFIX}{head}-{hash:08x}")
}
pub const FINALIZER: &str = "rotator.dev/cleanup";
/// Label that puts a resource in one shard: only the operator run with `--shard <value>` acts
/// on it, and an operator run without `--shard` acts only on resources without it. The state
/// Secret of a rotation carries the shard of the operator that staged it.
pub const SHARD_LABEL: &str = "rotator.dev/shard";

/// Rotates the password of a user, database or account of a target and keeps a Secret in step.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rotator.dev",
    version = "v1alpha2",
    kind = "PasswordRotation",
    plural = "passwordrotations",
    shortname = "pwrot",
    namespaced,
    status = "PasswordRotationStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.step"),
    printcolumn(
        name = "Last Rotation",
        type_ = "date",
        json_path = ".status.lastRotationTime"
    ),
    printcolumn(
        name = "Next Rotation",
        type_ = "date",
        json_path = ".status.nextRotationTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.target.account) || (has(self.mode) && self.mode == 'Replace')").message("an ONTAP account holds one password: add-then-delete needs spec.target.alternatingAccounts (two accounts with the same role), or mode: Replace (a short outage until the workloads restart)"))]
#[x_kube(validation = Rule::new("!has(self.target.alternatingAccounts) || !has(self.mode) || self.mode == 'AddThenDelete'").message("alternatingAccounts rotate without an outage: use mode AddThenDelete"))]
pub struct PasswordRotationSpec {
    pub target: TargetRef,
    pub secret: WorkloadSecret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub password: PasswordSpec,
    #[serde(default)]
    pub rollout: Rollout,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// Whether the target must keep the new password across its restarts before the old one
    /// is deleted, where it says (redis: `ACL SAVE`, `CONFIG REWRITE`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub persistence: PersistencePolicy,
    /// Pauses the resource: no rotation starts and a rotation in flight holds at its step.
    #[serde(default)]
    pub suspend: bool,
    /// A token not seen before starts one rotation (for GitOps; kubectl users can set the
    /// `rotator.dev/rotate-requested` annotation instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
}

/// The target, and the object there whose password rotates: a user or a database
/// (`redisSoftware`), a user (`redis`), an account or two that alternate (`ontap`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.user), has(self.databaseUid), has(self.account), has(self.alternatingAccounts)].filter(x, x).size() == 1").message("set exactly one of user, databaseUid, account or alternatingAccounts"))]
pub struct TargetRef {
    #[serde(rename = "ref")]
    pub reference: TargetReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("user must not be empty"))]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_uid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("account must not be empty"))]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) == 2 && self[0] != self[1] && self.all(a, size(a) > 0)").message("alternatingAccounts names two different accounts"))]
    pub alternating_accounts: Option<Vec<String>>,
}

impl TargetRef {
    /// The users, database uids or accounts named, as a target's `allow.objects` matches them.
    pub fn objects(&self) -> Vec<String> {
        let uid = self.database_uid.map(|uid| uid.to_string());
        self.user
            .iter()
            .chain(&uid)
            .chain(&self.account)
            .chain(self.alternating_accounts.iter().flatten())
            .cloned()
            .collect()
    }
}

/// A `RotationTarget` of the resource's namespace, or a `ClusterRotationTarget`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct TargetReference {
    pub kind: TargetKind,
    #[x_kube(validation = Rule::new("size(self) > 0").message("name must not be empty"))]
    pub name: String,
}

/// The Secret the workloads read, in the resource's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.previousPasswordKey) || (self.previousPasswordKey != self.passwordKey && self.previousPasswordKey != self.usernameKey)").message("previousPasswordKey must differ from passwordKey and usernameKey"))]
#[x_kube(validation = Rule::new("!has(self.template) || self.template.all(k, k != self.passwordKey && k != self.usernameKey && (!has(self.previousPasswordKey) || k != self.previousPasswordKey))").message("template keys must differ from passwordKey, usernameKey and previousPasswordKey"))]
#[x_kube(validation = Rule::new("!has(self.template) || self.template.all(k, !self.template[k].contains('-----BEGIN'))").message("a template renders .username, .password and text, never a PEM block (-----BEGIN): a Secret a tenant can write must not carry a certificate or key"))]
pub struct WorkloadSecret {
    pub name: String,
    #[serde(default = "default_password_key")]
    pub password_key: String,
    /// Key that receives the user name (user targets only).
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// More keys rendered from the credentials in the same write as the password, e.g.
    /// `url: "rediss://{{ .username }}:{{ .password | urlquery }}@cache:6380"`. Fields:
    /// `.username`, `.password`; function: `urlquery`. At most 16 keys of 4096 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub template: BTreeMap<String, String>,
    /// Also keep the old password under this key, from publishing until just before it is
    /// deleted, for clients that can try two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_password_key: Option<String>,
}

fn default_password_key() -> String {
    "password".into()
}

fn default_username_key() -> String {
    "username".into()
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.every) && has(self.cron))").message("set at most one of every or cron"))]
pub struct Schedule {
    /// Rotate this long after the last rotation, e.g. 720h. At least 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("every must be at least 1h"))]
    pub every: Option<GoDuration>,
    /// Standard 5-field cron expression, in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Each scheduled rotation starts up to this much later, by an amount fixed per resource
    /// (from its namespace and name), so that resources on one schedule do not all rotate at
    /// once. E.g. 2h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<GoDuration>,
    /// Where the target says when the password expires (Redis Software users, with the
    /// cluster's password expiration policy): rotate this long before it does. Default 72h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_expiry: Option<GoDuration>,
    /// When a scheduled rotation may start (UTC): a rotation due outside waits for the window
    /// to open; one in flight always finishes; requests start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// Days and hours (UTC) when a scheduled rotation may start.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// The days, e.g. [Saturday, Sunday]; every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// "HH:MM-HH:MM", start included, end excluded; it may wrap past midnight
    /// ("22:00-04:00"). A start belongs to the day it falls on. The whole day when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$') && self.split('-')[0] != self.split('-')[1]").message("hours must be HH:MM-HH:MM (UTC), with a start other than its end"))]
    pub hours: Option<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub fn to_jiff(self) -> jiff::civil::Weekday {
        match self {
            Weekday::Monday => jiff::civil::Weekday::Monday,
            Weekday::Tuesday => jiff::civil::Weekday::Tuesday,
            Weekday::Wednesday => jiff::civil::Weekday::Wednesday,
            Weekday::Thursday => jiff::civil::Weekday::Thursday,
            Weekday::Friday => jiff::civil::Weekday::Friday,
            Weekday::Saturday => jiff::civil::Weekday::Saturday,
            Weekday::Sunday => jiff::civil::Weekday::Sunday,
        }
    }
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSpec {
    /// Length of generated passwords, 16..128.
    #[serde(default = "default_length")]
    #[x_kube(validation = Rule::new("self >= 16 && self <= 128").message("length must be between 16 and 128"))]
    pub length: u32,
}

impl Default for PasswordSpec {
    fn default() -> Self {
        Self {
            length: default_length(),
        }
    }
}

fn default_length() -> u32 {
    32
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.overlap) <= duration(self.timeout)").message("overlap must not exceed timeout"))]
pub struct Rollout {
    /// Restarted after publishing; the old password is kept until each has rolled out.
    #[serde(default)]
    pub workloads: Vec<WorkloadRef>,
    /// Both passwords stay valid at least this long after publishing.
    #[serde(default = "default_overlap")]
    pub overlap: GoDuration,
    /// Past this, the resource is Degraded; the old password is still kept.
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            workloads: Vec::new(),
            overlap: default_overlap(),
            timeout: default_timeout(),
        }
    }
}

fn default_overlap() -> GoDuration {
    GoDuration::from_secs(300)
}

fn default_timeout() -> GoDuration {
    GoDuration::from_secs(1800)
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub name: String,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Add the new password beside the old one; delete the old one after the rollout.
    #[default]
    AddThenDelete,
    /// One PUT: every old password dies at once. For compromised credentials; causes a
    /// short outage until the workloads restart.
    Replace,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PersistencePolicy {
    /// A node that could not persist the change holds the rotation before the old password
    /// is deleted (`Degraded` `NotPersisted`): deleted but not persisted, it would come back
    /// when that node restarts. Persisting is tried again until it works.
    #[default]
    Required,
    /// Go on regardless: for servers that keep no ACL file or config file by design.
    Optional,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Authenticate with the new password before publishing it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    /// host:port of a Redis endpoint of the database; the new password must pass `AUTH` there.
    pub endpoint: String,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordRotationStatus {
    /// The shard of the operator that acts on this resource (`--shard`); absent: the
    /// unsharded operator's. Another shard's operator that sees no status of the target's
    /// shard for a while says the resource is unserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<String>,
    /// Why the rotation in flight started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_time: Option<Time>,
    /// The workload Secret's resourceVersion once it held the new password and the workloads
    /// were restarted for it. Any later write to the Secret (a revert put right again while
    /// the operator was away, another controller) may have been read by a pod starting then:
    /// the workloads restart once more before the old password goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_secret_version: Option<String>,
    /// What the cluster says it is called (Redis Software: `GET /v1/cluster`), recorded when a
    /// rotation starts: two addresses of one cluster are one target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// What holds the passwords there, as the spec names it and as the system knows it (e.g.
    /// a Redis Software user's uid), recorded when a rotation starts: a user named by its name
    /// and by its email are one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
    /// How the target keeps password changes across its restarts, where it says (redis:
    /// `AclFile`, `ConfigRewrite`, or `NotPersisted: <why>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<String>,
    /// When the password in use expires, where the target says (Redis Software users:
    /// `password_issue_date` plus the cluster's `password_expiration_duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_expires_time: Option<Time>,
    /// When the target was last asked when the password expires: once for a new resource,
    /// then at the end of each rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_expiry_checked_time: Option<Time>,
    /// When the workload Secret was seen not holding the new password after publishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_time: Option<Time>,
    /// Workloads are restarted once per rotation, and once more after each healed drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_round: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// Last `spec.rotationRequest` token acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotation_request: Option<String>,
    /// Last `rotator.dev/rotate-requested` annotation token acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotate_annotation: Option<String>,
    /// When the resource became Blocked, and a fingerprint of the credentials and CA Secrets'
    /// data then (an HMAC keyed with their uids, never a plain hash of a password): it is
    /// retried when that data changes or after a wait longer than a lockout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_credentials_hash: Option<String>,
    /// The admin account (a hash of cluster and login) whose refusal blocked the resource:
    /// every resource using that account holds back, across restarts too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Rotating,
    Blocked,
}

/// Steps of a rotation, in order. Each is recorded when its effect is done, except
/// `Retired`, which is recorded before the DELETE is sent so that a replay knows it as one.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Step {
    Staged,
    /// Replace mode: recorded before the PUT, so that a replay knows itself.
    Replacing,
    Added,
    Verified,
    /// Recorded by earlier versions before the workload Secret was written; read as Added.
    /// (The state Secret now keeps the workload Secret's resourceVersion from Stage instead.)
    Publishing,
    Published,
    RolledOut,
    Retired,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Staged => "Staged",
            Step::Replacing => "Replacing",
            Step::Added => "Added",
            Step::Verified => "Verified",
            Step::Publishing => "Publishing",
            Step::Published => "Published",
            Step::RolledOut => "RolledOut",
            Step::Retired => "Retired",
        }
    }
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::Rotating => "Rotating",
            Phase::Blocked => "Blocked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_annotation_keys_are_valid_and_distinct() {
        assert_eq!(
            restart_annotation_key("orders-cache"),
            "rotation.rotator.dev/orders-cache"
        );
        let long_a = format!("{}-a", "x".repeat(80));
        let long_b = format!("{}-b", "x".repeat(80));
        let (a, b) = (
            restart_annotation_key(&long_a),
            restart_annotation_key(&long_b),
        );
        assert_ne!(a, b);
        for key in [a, b] {
            let name = key.strip_prefix(RESTART_ANNOTATION_PREFIX).unwrap();
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            );
        }
    }
}
