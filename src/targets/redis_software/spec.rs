//! `spec.redisSoftware` of a target, and the user or database a resource rotates there.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::client::{ClientConfig, PasswordBodyShape, RedisSoftwareClient};
use super::{Object, RedisSoftware};
use crate::login_budget::Lockout;
use crate::reason::Reason;
use crate::resource::TargetRef;
use crate::targets::{
    Budget, Connect, PasswordTarget, SecretKeyRef, SecretUse, TargetSpec, TlsSpec, ca_pem,
    credentials_and_ca, login, only_objects, url_address,
};
use crate::validation::InvalidField;
use crate::{Error, Result};

const CREDENTIALS_FIELD: &str = "spec.redisSoftware.credentialsSecret";
const CA_FIELD: &str = "spec.redisSoftware.caSecret";
const URL_FIELD: &str = "spec.redisSoftware.url";

/// `spec.redisSoftware` of a target: a cluster's REST API and an admin login.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('https://') || (self.url.startsWith('http://') && has(self.insecureHttp) && self.insecureHttp)").message("url must start with https:// (http:// only with insecureHttp: true)"))]
pub struct RedisSoftwareConnection {
    /// REST API base URL, e.g. https://cluster.example.internal:9443
    pub url: String,
    /// Secret with keys `username` and `password` of an admin.
    pub credentials_secret: String,
    /// The cluster's certificate (pinned: its exact bytes, e.g. the default self-signed `api`
    /// certificate) or a CA that signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Allow a plain http:// URL. For tests only.
    #[serde(default)]
    pub insecure_http: bool,
    /// Body shape of /v1/users/password requests: Legacy {username, old_password, new_password}
    /// or Caller {new_password, username}, for newer clusters.
    #[serde(default)]
    pub password_body: PasswordBodyShape,
}

impl RedisSoftwareConnection {
    /// The target for one resource: this connection, and the user or database it rotates.
    pub fn with_object(&self, object: &TargetRef) -> Result<RedisSoftwareTarget, InvalidField> {
        only_objects(object, "redisSoftware", &["user", "databaseUid"])?;
        Ok(RedisSoftwareTarget {
            connection: self.clone(),
            user: object.user.clone(),
            database_uid: object.database_uid,
        })
    }
}

/// A Redis Software user or database's default user, and the cluster that holds it. Kept in
/// the state Secret's plan in the v1alpha1 shape, so a rotation staged before the upgrade
/// finishes after it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSoftwareTarget {
    #[serde(flatten)]
    pub connection: RedisSoftwareConnection,
    /// Rotate this user's passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Or rotate the default user's passwords of this database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_uid: Option<u64>,
}

impl RedisSoftwareTarget {
    fn object_kind(&self) -> Result<Object, InvalidField> {
        match (&self.user, self.database_uid) {
            (Some(user), None) if !user.is_empty() => Ok(Object::User(user.clone())),
            (None, Some(uid)) => Ok(Object::Database(uid)),
            _ => Err(InvalidField {
                field: "spec.target",
                message: "exactly one of user or databaseUid must be set".into(),
            }),
        }
    }

    fn url(&self) -> Result<url::Url, InvalidField> {
        let url = url::Url::parse(&self.connection.url).map_err(|e| InvalidField {
            field: URL_FIELD,
            message: format!("not a URL: {e}"),
        })?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.connection.insecure_http => Ok(url),
            _ => Err(InvalidField {
                field: URL_FIELD,
                message: "must start with https:// (http:// only with insecureHttp: true)".into(),
            }),
        }
    }
}

fn invalid_spec(e: InvalidField) -> Error {
    Error::Target {
        reason: Reason::InvalidSpec,
        detail: format!("{}: {}", e.field, e.message),
    }
}

impl TargetSpec for RedisSoftwareTarget {
    fn vendor(&self) -> &'static str {
        "redisSoftware"
    }

    fn validate(&self) -> Result<(), InvalidField> {
        self.object_kind()?;
        self.url()?;
        Ok(())
    }

    fn secrets(&self) -> Vec<SecretUse> {
        credentials_and_ca(
            Some(&self.connection.credentials_secret),
            CREDENTIALS_FIELD,
            self.connection.ca_secret.as_ref(),
            CA_FIELD,
        )
    }

    fn address(&self) -> String {
        url_address(&self.connection.url)
    }

    /// A user named by its email, which the cluster matches whatever its case, in lower
    /// case.
    fn holders(&self) -> Vec<String> {
        match self.object_kind() {
            Ok(Object::User(user)) if user.contains('@') => {
                vec![format!("user {}", user.to_ascii_lowercase())]
            }
            _ => vec![self.object()],
        }
    }

    fn object(&self) -> String {
        match self.object_kind() {
            Ok(Object::User(user)) => format!("user {user}"),
            Ok(Object::Database(uid)) => format!("database {uid}"),
            Err(_) => String::new(),
        }
    }

    fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A user's password expires under the cluster's policy; a database's does not.
    fn reports_expiry(&self) -> bool {
        self.user.is_some()
    }

    fn insecure_field(&self) -> Option<&'static str> {
        self.connection
            .insecure_http
            .then_some("spec.redisSoftware.insecureHttp")
    }

    fn connect(&self, with: Connect<'_>) -> Result<Box<dyn PasswordTarget>> {
        let object = self.object_kind().map_err(invalid_spec)?;
        let url = self.url().map_err(invalid_spec)?;
        let (username, password) = login(
            with.secrets,
            &self.connection.credentials_secret,
            CREDENTIALS_FIELD,
        )?;
        let ca_pem = ca_pem(with.secrets, self.connection.ca_secret.as_ref(), CA_FIELD)?;
        let cluster = self.address();
        // 5 failed logins in 15 minutes lock an account for 30 minutes.
        let lockout = Lockout {
            failed_logins: Some(5),
            hold: Duration::from_secs(31 * 60),
        };
        let budget = Budget::of(&with, &cluster, &username, lockout);
        let mut config = ClientConfig::new(url, username, password);
        config.ca_pem = ca_pem;
        config.insecure_http = self.connection.insecure_http;
        config.server_name = self
            .connection
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone());
        config.body_shape = self.connection.password_body;
        config.request_timeout = with.settings.request_timeout;
        // Resources that share credentials share one client, and so its connections: a
        // burst of rotations makes no TLS handshake per rotation. Changed Secret data or
        // settings build a new one.
        let key = format!(
            "redisSoftware|{}|{}|{}|{}",
            with.secrets_namespace,
            self.connection.credentials_secret,
            self.connection
                .ca_secret
                .as_ref()
                .map_or("", |ca| ca.name.as_str()),
            self.connection.url
        );
        let fingerprint = format!(
            "{}|{:?}|{}|{:?}",
            with.credentials,
            self.connection.password_body,
            self.connection.insecure_http,
            self.connection.tls
        );
        let observer = with.observer.clone();
        let client = with.shared.client(key, fingerprint, || {
            RedisSoftwareClient::new(config)
                .map(|c| c.with_observer(observer))
                .map_err(|e| Error::Target {
                    reason: Reason::InvalidSpec,
                    detail: e.to_string(),
                })
        })?;
        Ok(Box::new(RedisSoftware {
            client,
            object,
            budget,
        }))
    }
}
