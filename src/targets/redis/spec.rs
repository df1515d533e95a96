//! `spec.redis` of a target, and the ACL user a resource rotates there.

use std::sync::Mutex;
use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::Redis;
use super::client::{AclAdmin, AclAdminConfig, AclTls};
use crate::login_budget::Lockout;
use crate::reason::Reason;
use crate::resource::TargetRef;
use crate::targets::{
    Budget, Connect, PasswordTarget, SecretKeyRef, SecretUse, TargetSpec, TlsSpec, ca_pem,
    credentials_and_ca, login, only_objects,
};
use crate::validation::InvalidField;
use crate::{Error, Result};

const CREDENTIALS_FIELD: &str = "spec.redis.credentialsSecret";
const CA_FIELD: &str = "spec.redis.caSecret";
const ENDPOINTS_FIELD: &str = "spec.redis.endpoints";

/// `spec.redis` of a target: the nodes of an open-source Redis or Valkey deployment and an
/// ACL admin login.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.caSecret) || (has(self.insecurePlaintext) && self.insecurePlaintext)").message("caSecret is required (TLS), unless insecurePlaintext is true"))]
pub struct RedisConnection {
    /// Nodes as host:port. With `discover`, the replicas and primaries they replicate with and,
    /// in cluster mode, every node of the cluster are found from them. A primary lists only
    /// the replicas connected to it: list every node when a replica that is down must stop a
    /// change rather than go unnoticed.
    #[x_kube(validation = Rule::new("self.size() >= 1").message("at least one endpoint is required"))]
    pub endpoints: Vec<String>,
    /// Find the other nodes of the deployment from the endpoints.
    #[serde(default = "default_true")]
    pub discover: bool,
    /// Secret with keys `username` and `password` of an ACL user allowed
    /// `+acl|getuser +acl|setuser +acl|save +config|get +config|rewrite +info +cluster|shards`.
    pub credentials_secret: String,
    /// TLS: the nodes' certificate (pinned: its exact bytes) or a CA that signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Connect without TLS: the admin password crosses the network in clear text. Needs the
    /// operator's `--allow-insecure-http`.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

impl RedisConnection {
    /// The target for one resource: this deployment, and the ACL user it rotates.
    pub fn with_object(&self, object: &TargetRef) -> Result<RedisTarget, InvalidField> {
        only_objects(object, "redis", &["user"])?;
        Ok(RedisTarget {
            connection: self.clone(),
            user: object.user.clone().unwrap_or_default(),
        })
    }
}

/// An ACL user of a Redis or Valkey deployment. Kept in the state Secret's plan in the
/// v1alpha1 shape.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisTarget {
    #[serde(flatten)]
    pub connection: RedisConnection,
    /// The ACL user whose passwords rotate.
    pub user: String,
}

fn default_true() -> bool {
    true
}

impl TargetSpec for RedisTarget {
    fn vendor(&self) -> &'static str {
        "redis"
    }

    fn validate(&self) -> Result<(), InvalidField> {
        let invalid = |field, message: &str| {
            Err(InvalidField {
                field,
                message: message.into(),
            })
        };
        if self.connection.endpoints.is_empty() {
            return invalid(ENDPOINTS_FIELD, "at least one endpoint is required");
        }
        if let Some(bad) = self.connection.endpoints.iter().find(|e| {
            e.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return invalid(ENDPOINTS_FIELD, &format!("{bad:?} is not host:port"));
        }
        if self.user.is_empty() {
            return invalid("spec.target.user", "must not be empty");
        }
        if self.connection.ca_secret.is_none() && !self.connection.insecure_plaintext {
            return invalid(
                CA_FIELD,
                "is required (TLS), unless insecurePlaintext is true",
            );
        }
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

    /// The endpoints, sorted: two resources that list the same nodes name one deployment.
    fn address(&self) -> String {
        let mut endpoints: Vec<String> = self
            .connection
            .endpoints
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        endpoints.sort();
        endpoints.join(",")
    }

    fn object(&self) -> String {
        format!("user {}", self.user)
    }

    fn username(&self) -> Option<&str> {
        Some(&self.user)
    }

    fn heals(&self) -> bool {
        true
    }

    fn insecure_field(&self) -> Option<&'static str> {
        self.connection
            .insecure_plaintext
            .then_some("spec.redis.insecurePlaintext")
    }

    fn connect(&self, with: Connect<'_>) -> Result<Box<dyn PasswordTarget>> {
        let (username, password) = login(
            with.secrets,
            &self.connection.credentials_secret,
            CREDENTIALS_FIELD,
        )?;
        let tls =
            ca_pem(with.secrets, self.connection.ca_secret.as_ref(), CA_FIELD)?.map(|ca_pem| {
                AclTls {
                    ca_pem,
                    server_name: self
                        .connection
                        .tls
                        .as_ref()
                        .and_then(|t| t.server_name.clone()),
                }
            });
        let deployment = self.address();
        // Redis locks no account: a refused login is only not retried at once.
        let lockout = Lockout {
            failed_logins: None,
            hold: Duration::from_secs(60),
        };
        let budget = Budget::of(&with, &deployment, &username, lockout);
        let config = AclAdminConfig {
            endpoints: self.connection.endpoints.clone(),
            username,
            password,
            tls,
            discover: self.connection.discover,
            timeout: with.settings.request_timeout.min(Duration::from_secs(30)),
        };
        let key = format!(
            "redis|{}|{}|{}",
            with.secrets_namespace, self.connection.credentials_secret, deployment
        );
        let fingerprint = format!(
            "{}|{}|{:?}",
            with.credentials, self.connection.discover, self.connection.tls
        );
        let admin = with.shared.client(key, fingerprint, || {
            AclAdmin::new(config).map_err(|e| Error::Target {
                reason: Reason::InvalidSpec,
                detail: format!("spec.redis: {e}"),
            })
        })?;
        Ok(Box::new(Redis {
            admin,
            user: self.user.clone(),
            budget,
            observer: with.observer,
            persistence: Mutex::new(None),
        }))
    }
}
