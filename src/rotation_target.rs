//! The targets the platform team owns, as cert-manager's Issuer and ClusterIssuer:
//! `RotationTarget` (namespaced, serves its own namespace) and `ClusterRotationTarget`
//! (cluster-scoped; its Secrets live in the one namespace the operator is given). A target is
//! the connection to a password system and the policy of who may use it for what; a
//! `PasswordRotation` only names one, and the object there whose password it rotates.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::login_budget::Lockout;
use crate::resource::Mode;
use crate::targets::Connection;

/// Declares a target kind: both kinds have the same spec, but for where they apply.
macro_rules! target_kind {
    ($spec:ident, $kind:literal, $plural:literal, $short:literal, [$($scope:ident)?], $doc:literal,
     $($rule:literal => $message:literal),*) => {
        #[doc = $doc]
        #[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
        #[kube(
            group = "rotator.dev",
            version = "v1alpha2",
            kind = $kind,
            plural = $plural,
            shortname = $short,
            $($scope,)?
            status = "TargetStatus",
            printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
            printcolumn(name = "Identity", type_ = "string", json_path = ".status.identity"),
            printcolumn(name = "Resources", type_ = "integer", json_path = ".status.resources"),
            printcolumn(name = "Certificate Expires", type_ = "date", json_path = ".status.certificateExpiresTime"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
        )]
        #[serde(rename_all = "camelCase")]
        #[x_kube(validation = Rule::new("[has(self.redisSoftware), has(self.redis), has(self.ontap)].filter(x, x).size() == 1").message("exactly one of redisSoftware, redis or ontap must be set"))]
        $(#[x_kube(validation = Rule::new($rule).message($message))])*
        pub struct $spec {
            /// How to reach the system and log in as its administrator.
            #[serde(flatten)]
            pub connection: Connection,
            /// The system's failed-login lockout, where it differs from the vendor's default.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub lockout: Option<LockoutPolicy>,
            /// Who may use the target, for what.
            #[serde(default)]
            pub allow: Allow,
        }
    };
}

target_kind!(
    RotationTargetSpec,
    "RotationTarget",
    "rotationtargets",
    "rtarget",
    [namespaced],
    "A password system that the PasswordRotations of this namespace may use. Its Secrets are \
     in this namespace.",
    "!has(self.allow) || !has(self.allow.namespaces)" =>
        "allow.namespaces is for a ClusterRotationTarget: a RotationTarget serves its own namespace"
);

target_kind!(
    ClusterRotationTargetSpec,
    "ClusterRotationTarget",
    "clusterrotationtargets",
    "crtarget",
    [],
    "A password system that PasswordRotations of the namespaces it allows may use. Its \
     Secrets are in the namespace the operator is given (--cluster-target-namespace).",
    "has(self.allow) && has(self.allow.namespaces)" =>
        "allow.namespaces is required: name the namespaces (or select them by label) that may use this target",
    "has(self.allow) && has(self.allow.objects) && size(self.allow.objects) > 0" =>
        "allow.objects is required: list the users, database uids or accounts tenants may rotate (globs; \"*\" for any)"
);

/// What the operator last saw of a target: written by the operator of its shard only, never
/// by a tenant (the tenants' roles grant no `/status`).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// `Ready`: the admin login was accepted and the certificate trusted when last checked
    /// (at start, every 5 minutes, and when the spec or its Secrets change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the conditions are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the system says it is, the same through any of its addresses: the cluster's name
    /// (Redis Software), `ontap:<uuid>`, a cluster's smallest node id or a primary's
    /// replication id (Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The system's software version, where it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the certificate the system presented stops being valid (`notAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires_time: Option<Time>,
    /// When the admin login's password expires, where the system says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_expires_time: Option<Time>,
    /// The admin login's failed-login budget, shared by every replica, shard and restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_budget: Option<LoginBudgetStatus>,
    /// How many PasswordRotations name this target.
    #[serde(default)]
    pub resources: u32,
    /// A keyed fingerprint of the credentials the last check logged in with (an HMAC keyed by
    /// the Secrets' uids): a restarted operator that finds the same ones does not check again
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_credentials: Option<String>,
}

/// The failed-login budget of a target's admin login.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoginBudgetStatus {
    /// Which admin account (a digest of the system's address and the login name).
    pub account: String,
    /// Logins refused since one was last accepted.
    pub failures: u32,
    /// No login is tried with the refused credentials before this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Time>,
    /// When the last login was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_time: Option<Time>,
    /// A keyed fingerprint of the refused credentials (an HMAC keyed by the Secrets' uids,
    /// never a hash of the password): new credentials may try at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_credentials: Option<String>,
    /// What the refused call was for: a PasswordRotation (`namespace/name`) or the target's
    /// own check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_for: Option<String>,
}

/// Who may use a target, for what. A `PasswordRotation` the policy does not allow gets
/// `Ready=False` `TargetNotAllowed` naming the rule; no call is made and no Secret written.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allow {
    /// The namespaces whose PasswordRotations may use a ClusterRotationTarget: those named,
    /// and those the selector matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<AllowedNamespaces>,
    /// The users, database uids and accounts that may be rotated, exact or as globs (`*` any
    /// run of characters, `?` one). Any object when empty (RotationTarget only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 256))]
    pub objects: Vec<String>,
    /// The modes resources may use: `Replace` (every old password dies at once) only where
    /// listed.
    #[serde(default = "default_modes")]
    pub modes: Vec<Mode>,
    /// Whether resources may render more keys of their Secret from a template.
    #[serde(default = "default_true")]
    pub templates: bool,
}

impl Default for Allow {
    fn default() -> Self {
        Self {
            namespaces: None,
            objects: Vec::new(),
            modes: default_modes(),
            templates: true,
        }
    }
}

fn default_modes() -> Vec<Mode> {
    vec![Mode::AddThenDelete]
}

fn default_true() -> bool {
    true
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces with these labels (`{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The system's failed-login lockout: after `failures` refused logins within `window`, the
/// account is locked for `duration`. Each vendor has a default (Redis Software: 5 in 15m lock
/// for 30m); a system configured otherwise is described here, not assumed.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockoutPolicy {
    /// Refused logins that lock the account; 0 when the system locks none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<GoDuration>,
}

impl LockoutPolicy {
    /// `default` with what this policy says put over it. The hold outlasts the lockout by a
    /// minute, for clocks that differ.
    pub fn over(&self, default: Lockout) -> Lockout {
        let hold = self
            .duration
            .as_ref()
            .and_then(|d| d.parse().ok())
            .map_or(default.hold, |d: Duration| d + Duration::from_secs(60));
        Lockout {
            failed_logins: match self.failures {
                Some(0) => None,
                Some(n) => Some(n),
                None => default.failed_logins,
            },
            hold,
        }
    }
}

/// Which kind of target a `PasswordRotation` names.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    RotationTarget,
    ClusterRotationTarget,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::RotationTarget => "RotationTarget",
            TargetKind::ClusterRotationTarget => "ClusterRotationTarget",
        })
    }
}

/// A target as a resource sees it: whichever kind, its spec and where its Secrets are.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetView<'a> {
    pub kind: TargetKind,
    pub name: &'a str,
    pub connection: &'a Connection,
    pub lockout: Option<&'a LockoutPolicy>,
    pub allow: &'a Allow,
}

impl TargetView<'_> {
    pub fn of_namespaced(target: &RotationTarget) -> TargetView<'_> {
        TargetView {
            kind: TargetKind::RotationTarget,
            name: target.metadata.name.as_deref().unwrap_or_default(),
            connection: &target.spec.connection,
            lockout: target.spec.lockout.as_ref(),
            allow: &target.spec.allow,
        }
    }

    pub fn of_cluster(target: &ClusterRotationTarget) -> TargetView<'_> {
        TargetView {
            kind: TargetKind::ClusterRotationTarget,
            name: target.metadata.name.as_deref().unwrap_or_default(),
            connection: &target.spec.connection,
            lockout: target.spec.lockout.as_ref(),
            allow: &target.spec.allow,
        }
    }
}

/// What a resource asks of its target, for the policy to judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Request<'a> {
    pub namespace: &'a str,
    /// The namespace's labels, when known (a selector needs them).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The users, database uids or accounts the resource rotates.
    pub objects: Vec<String>,
    pub mode: Mode,
    pub templates: bool,
}

/// A rule of a target's policy that refuses a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAllowed {
    /// The rule, e.g. `spec.allow.objects`.
    pub rule: &'static str,
    pub message: String,
}

/// Whether `target`'s policy lets `request` use it.
pub fn check(target: &TargetView<'_>, request: &Request<'_>) -> Result<(), NotAllowed> {
    let refuse = |rule, message: String| {
        Err(NotAllowed {
            rule,
            message: format!("{} {}: {message}", target.kind, target.name),
        })
    };
    let allow = target.allow;
    if target.kind == TargetKind::ClusterRotationTarget {
        let namespaces = allow.namespaces.clone().unwrap_or_default();
        let named = namespaces.names.iter().any(|n| n == request.namespace);
        let selected = namespaces.selector.as_ref().is_some_and(|selector| {
            request
                .namespace_labels
                .is_some_and(|labels| selects(selector, labels))
        });
        if !named && !selected {
            return refuse(
                "spec.allow.namespaces",
                format!("namespace {} is not allowed", request.namespace),
            );
        }
    }
    let objects_listed =
        target.kind == TargetKind::ClusterRotationTarget || !allow.objects.is_empty();
    if objects_listed
        && let Some(object) = request
            .objects
            .iter()
            .find(|object| !allow.objects.iter().any(|glob| glob_matches(glob, object)))
    {
        return refuse(
            "spec.allow.objects",
            format!("{object} matches none of the allowed objects"),
        );
    }
    if !allow.modes.contains(&request.mode) {
        return refuse(
            "spec.allow.modes",
            format!("mode {:?} is not allowed", request.mode),
        );
    }
    if request.templates && !allow.templates {
        return refuse(
            "spec.allow.templates",
            "templates are not allowed (spec.secret.template)".into(),
        );
    }
    Ok(())
}

/// Whether a label selector selects `labels`; an unknown operator selects nothing.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (glob, text): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    // The classic two-pointer match, backtracking to the last `*` only.
    let (mut g, mut t, mut star, mut resume) = (0, 0, None, 0);
    while t < text.len() {
        if g < glob.len() && (glob[g] == '?' || glob[g] == text[t]) {
            g += 1;
            t += 1;
        } else if g < glob.len() && glob[g] == '*' {
            star = Some(g);
            resume = t;
            g += 1;
        } else if let Some(s) = star {
            g = s + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    use super::*;

    fn connection() -> Connection {
        serde_json::from_value(json!({"redis": {"endpoints": ["r:6379"], "credentialsSecret": "a", "insecurePlaintext": true}})).unwrap()
    }

    fn request(namespace: &str, objects: &[&str], mode: Mode) -> Request<'static> {
        Request {
            namespace: Box::leak(namespace.to_owned().into_boxed_str()),
            namespace_labels: None,
            objects: objects.iter().map(|o| o.to_string()).collect(),
            mode,
            templates: false,
        }
    }

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(glob_matches("orders-*", "orders-app"));
        assert!(glob_matches("orders-*", "orders-"));
        assert!(!glob_matches("orders-*", "order-app"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*-app-*", "x-app-y"));
        assert!(!glob_matches("admin", "admin2"));
        assert!(glob_matches("3", "3"));
    }

    #[test]
    fn a_cluster_target_serves_only_the_namespaces_it_allows() {
        let connection = connection();
        let allow = Allow {
            namespaces: Some(AllowedNamespaces {
                names: vec!["shop".into()],
                selector: Some(LabelSelector {
                    match_labels: Some([("team".to_owned(), "payments".to_owned())].into()),
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "env".into(),
                        operator: "NotIn".into(),
                        values: Some(vec!["dev".into()]),
                    }]),
                }),
            }),
            objects: vec!["*".into()],
            ..Allow::default()
        };
        let target = TargetView {
            kind: TargetKind::ClusterRotationTarget,
            name: "rs-prod",
            connection: &connection,
            lockout: None,
            allow: &allow,
        };
        assert_eq!(
            check(&target, &request("shop", &["u"], Mode::AddThenDelete)),
            Ok(())
        );
        let refused = check(&target, &request("other", &["u"], Mode::AddThenDelete));
        assert_eq!(
            refused,
            Err(NotAllowed {
                rule: "spec.allow.namespaces",
                message: "ClusterRotationTarget rs-prod: namespace other is not allowed".into()
            })
        );
        let payments: BTreeMap<String, String> =
            [("team".to_owned(), "payments".to_owned())].into();
        let mut labelled = request("billing", &["u"], Mode::AddThenDelete);
        labelled.namespace_labels = Some(&payments);
        assert_eq!(check(&target, &labelled), Ok(()));
        let dev: BTreeMap<String, String> = [
            ("team".to_owned(), "payments".to_owned()),
            ("env".to_owned(), "dev".to_owned()),
        ]
        .into();
        labelled.namespace_labels = Some(&dev);
        assert!(check(&target, &labelled).is_err());
    }

    #[test]
    fn objects_modes_and_templates_outside_the_policy_are_refused_by_rule() {
        let connection = connection();
        let allow = Allow {
            objects: vec!["orders-*".into()],
            templates: false,
            ..Allow::default()
        };
        let target = TargetView {
            kind: TargetKind::RotationTarget,
            name: "rs",
            connection: &connection,
            lockout: None,
            allow: &allow,
        };
        let rule = |r: &Request<'_>| check(&target, r).err().map(|e| e.rule);
        assert_eq!(
            rule(&request("shop", &["orders-app"], Mode::AddThenDelete)),
            None
        );
        assert_eq!(
            rule(&request(
                "shop",
                &["orders-a", "admin"],
                Mode::AddThenDelete
            )),
            Some("spec.allow.objects")
        );
        assert_eq!(
            rule(&request("shop", &["orders-app"], Mode::Replace)),
            Some("spec.allow.modes")
        );
        let mut templated = request("shop", &["orders-app"], Mode::AddThenDelete);
        templated.templates = true;
        assert_eq!(rule(&templated), Some("spec.allow.templates"));
        let open = Allow::default();
        let any = TargetView {
            allow: &open,
            ..target.clone()
        };
        assert_eq!(
            check(&any, &request("shop", &["whatever"], Mode::AddThenDelete)),
            Ok(()),
            "a namespaced target without objects allows any"
        );
    }
}
