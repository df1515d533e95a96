//! `spec.ontap` of a target, and the ONTAP account (or two that alternate) a resource rotates.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::Ontap;
use super::client::{Login, OntapClient, OntapConfig};
use crate::login_budget::Lockout;
use crate::reason::Reason;
use crate::resource::Mode;
use crate::resource::TargetRef;
use crate::targets::{
    Accounts, Budget, Connect, PasswordTarget, SecretKeyRef, SecretUse, TargetSpec, TlsSpec,
    ca_pem, credentials_and_ca, login, only_objects, url_address,
};
use crate::validation::InvalidField;
use crate::{Error, Result};

const CREDENTIALS_FIELD: &str = "spec.ontap.credentialsSecret";
const CA_FIELD: &str = "spec.ontap.caSecret";
const URL_FIELD: &str = "spec.ontap.url";
const ALTERNATING_FIELD: &str = "spec.target.alternatingAccounts";

/// `spec.ontap` of a target: a cluster's management address and, usually, an administrator.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('https://') || (self.url.startsWith('http://') && has(self.insecureHttp) && self.insecureHttp)").message("url must start with https:// (http:// only with insecureHttp: true)"))]
pub struct OntapConnection {
    /// The cluster management address, e.g. https://cluster1.example.internal
    pub url: String,
    /// Secret with keys `username` and `password` of a cluster administrator. Without it,
    /// each account changes its own password with its current one (self-service; `account`
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The cluster's certificate (pinned: its exact bytes, e.g. the default self-signed one)
    /// or a CA that signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Allow a plain http:// URL. For tests only.
    #[serde(default)]
    pub insecure_http: bool,
    /// The SVM that owns the accounts, for SVM-scoped accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svm: Option<String>,
}

impl OntapConnection {
    /// The target for one resource: this cluster, and the account or pair it rotates.
    pub fn with_object(&self, object: &TargetRef) -> Result<OntapTarget, InvalidField> {
        only_objects(object, "ontap", &["account", "alternatingAccounts"])?;
        Ok(OntapTarget {
            connection: self.clone(),
            account: object.account.clone(),
            alternating_accounts: object.alternating_accounts.clone(),
        })
    }
}

/// One ONTAP account, or two that alternate, and the cluster that holds them. Kept in the
/// state Secret's plan in the v1alpha1 shape.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OntapTarget {
    #[serde(flatten)]
    pub connection: OntapConnection,
    /// One account, rotated with `mode: Replace` (a short outage until the workloads
    /// restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Two accounts with the same role, used in turn: each rotation gives the standby one the
    /// new password, moves the workloads to it, and then retires the other. No downtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternating_accounts: Option<Vec<String>>,
}

impl OntapTarget {
    fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
        InvalidField {
            field,
            message: message.into(),
        }
    }

    fn url(&self) -> Result<url::Url, InvalidField> {
        let url = url::Url::parse(&self.connection.url)
            .map_err(|e| Self::invalid(URL_FIELD, format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.connection.insecure_http => Ok(url),
            _ => Err(Self::invalid(
                URL_FIELD,
                "must start with https:// (http:// only with insecureHttp: true)",
            )),
        }
    }

    fn names(&self) -> Vec<&str> {
        match (&self.account, &self.alternating_accounts) {
            (Some(account), _) => vec![account.as_str()],
            (None, Some(pair)) => pair.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        }
    }
}

impl TargetSpec for OntapTarget {
    fn vendor(&self) -> &'static str {
        "ontap"
    }

    fn validate(&self) -> Result<(), InvalidField> {
        self.url()?;
        match (&self.account, &self.alternating_accounts) {
            (Some(account), None) if !account.is_empty() => {}
            (None, Some(pair))
                if pair.len() == 2 && pair[0] != pair[1] && pair.iter().all(|a| !a.is_empty()) =>
            {
                if self.connection.credentials_secret.is_none() {
                    return Err(Self::invalid(
                        CREDENTIALS_FIELD,
                        "the target has none, and spec.target.alternatingAccounts needs one: \
                         an administrator sets the standby account's password",
                    ));
                }
            }
            (None, Some(_)) => {
                return Err(Self::invalid(
                    ALTERNATING_FIELD,
                    "names two different accounts",
                ));
            }
            _ => {
                return Err(Self::invalid(
                    "spec.target",
                    "set exactly one of account or alternatingAccounts",
                ));
            }
        }
        Ok(())
    }

    fn supports(&self, mode: Mode) -> Result<(), InvalidField> {
        match (mode, self.alternating_accounts.is_some()) {
            (Mode::AddThenDelete, false) => Err(Self::invalid(
                "spec.mode",
                "an ONTAP account holds one password: add-then-delete needs \
                 spec.target.alternatingAccounts (two accounts with the same role), or \
                 mode: Replace (a short outage until the workloads restart)",
            )),
            (Mode::Replace, true) => Err(Self::invalid(
                "spec.mode",
                "alternatingAccounts rotate without an outage: use mode AddThenDelete",
            )),
            _ => Ok(()),
        }
    }

    fn secrets(&self) -> Vec<SecretUse> {
        credentials_and_ca(
            self.connection.credentials_secret.as_deref(),
            CREDENTIALS_FIELD,
            self.connection.ca_secret.as_ref(),
            CA_FIELD,
        )
    }

    fn address(&self) -> String {
        url_address(&self.connection.url)
    }

    /// Each account on its own: a pair in either order, and one account of it, meet.
    fn holders(&self) -> Vec<String> {
        let svm = self.connection.svm.as_deref().unwrap_or_default();
        self.names()
            .iter()
            .map(|name| format!("account {name} of SVM {svm:?}"))
            .collect()
    }

    fn object(&self) -> String {
        let svm = self
            .connection
            .svm
            .as_ref()
            .map(|svm| format!(" of SVM {svm}"))
            .unwrap_or_default();
        match self.names().as_slice() {
            [one] => format!("account {one}{svm}"),
            names => format!("accounts {}{svm}", names.join(" and ")),
        }
    }

    fn username(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The account in use, which alternates.
    fn publishes_username(&self) -> bool {
        true
    }

    fn logins(&self) -> Vec<String> {
        self.names().into_iter().map(str::to_owned).collect()
    }

    fn accounts(&self, published: Option<&str>) -> Result<Accounts, InvalidField> {
        let Some(pair) = &self.alternating_accounts else {
            return Ok((self.account.clone(), self.account.clone()));
        };
        match pair.iter().position(|a| Some(a.as_str()) == published) {
            Some(active) => Ok((Some(pair[active].clone()), Some(pair[1 - active].clone()))),
            None => Err(Self::invalid(
                "spec.secret",
                // The value is never quoted: a key named wrongly on purpose can make it a
                // password.
                format!(
                    "the workload Secret's user name must be one of {ALTERNATING_FIELD} (the \
                     account the workloads use now); it is {}",
                    if published.is_some() {
                        "another value"
                    } else {
                        "missing"
                    }
                ),
            )),
        }
    }

    fn one_password(&self) -> bool {
        true
    }

    fn insecure_field(&self) -> Option<&'static str> {
        self.connection
            .insecure_http
            .then_some("spec.ontap.insecureHttp")
    }

    fn connect(&self, with: Connect<'_>) -> Result<Box<dyn PasswordTarget>> {
        let invalid_spec = |e: InvalidField| Error::Target {
            reason: Reason::InvalidSpec,
            detail: format!("{}: {}", e.field, e.message),
        };
        let url = self.url().map_err(invalid_spec)?;
        let admin = match &self.connection.credentials_secret {
            Some(name) => {
                let (username, password) = login(with.secrets, name, CREDENTIALS_FIELD)?;
                Some(Login::new(username, password))
            }
            None => None,
        };
        let mut config = OntapConfig::new(url);
        config.ca_pem = ca_pem(with.secrets, self.connection.ca_secret.as_ref(), CA_FIELD)?;
        config.server_name = self
            .connection
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone());
        config.insecure_http = self.connection.insecure_http;
        config.timeout = with.settings.request_timeout;
        let address = self.address();
        let login = admin
            .as_ref()
            .map(|a| a.username.clone())
            .or_else(|| self.account.clone())
            .unwrap_or_default();
        // Lockout is the cluster's policy (`security login role config`: off by default,
        // often a few attempts and tens of minutes where it is set): assume a strict one.
        let lockout = Lockout {
            failed_logins: Some(3),
            hold: Duration::from_secs(31 * 60),
        };
        let budget = Budget::of(&with, &address, &login, lockout);
        let key = format!(
            "ontap|{}|{}|{}|{}",
            with.secrets_namespace,
            self.connection
                .credentials_secret
                .as_deref()
                .unwrap_or_default(),
            self.connection
                .ca_secret
                .as_ref()
                .map_or("", |ca| ca.name.as_str()),
            self.connection.url
        );
        let fingerprint = format!(
            "{}|{}|{:?}",
            with.credentials, self.connection.insecure_http, self.connection.tls
        );
        let observer = with.observer.clone();
        let client = with.shared.client(key, fingerprint, || {
            OntapClient::new(config)
                .map(|c| c.with_observer(observer))
                .map_err(|e| Error::Target {
                    reason: Reason::InvalidSpec,
                    detail: format!("spec.ontap: {e}"),
                })
        })?;
        Ok(Box::new(Ontap {
            client,
            admin,
            svm: self.connection.svm.clone(),
            address,
            budget,
        }))
    }
}
