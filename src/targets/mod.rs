//! Where passwords live, as cert-manager keeps issuers: one folder per vendor. Each owns its
//! spec section, the Secrets it references, its clients and per-cluster call cap, its identity
//! for conflicts, its capabilities, its failure classification and lockout policy. The engine
//! (`controller`, `rotation`) names no vendor: it sees a [`TargetSpec`] and the
//! [`PasswordTarget`] it connects to. A new vendor is one folder here plus its line in
//! `one_of!`.

pub mod http;
pub mod ontap;
pub mod redis;
pub mod redis_software;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::KubeSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::login_budget::{AdminAccount, Clocks, Lockout, LoginBudgets, Refusal};
use crate::reason::Reason;
use crate::resource::{Mode, TargetRef};
use crate::rotation::CallFailure;
use crate::rotation_target::LockoutPolicy;
use crate::validation::InvalidField;
use crate::{Error, Result};

/// Declares, from one line per vendor, the one-of of a target's spec ([`Connection`]) and
/// the target a resource rotates on ([`Target`]: a connection with the object there).
macro_rules! one_of {
    ($($field:ident: $vendor:ident::$connection:ident => $target:ident as $name:literal,)+) => {
        /// How to reach a password system. Exactly one member is set.
        #[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
        #[serde(rename_all = "camelCase")]
        pub struct Connection {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$vendor::$connection>,
            )+
        }

        impl Connection {
            /// The target for one resource: this connection and the object it names, which
            /// must be one this vendor has.
            pub fn with_object(&self, object: &TargetRef) -> Result<Target, InvalidField> {
                let mut target = Target::default();
                let mut set = 0;
                $(
                    if let Some(connection) = &self.$field {
                        target.$field = Some(connection.with_object(object)?);
                        set += 1;
                    }
                )+
                match set {
                    1 => Ok(target),
                    _ => Err(InvalidField {
                        field: "spec",
                        message: concat!("exactly one of " $(, $name, " ")+, "must be set").into(),
                    }),
                }
            }
        }

        /// What holds the password: a system and the object there. Kept in the state
        /// Secret's plan, in the shape of v1alpha1's `spec.target`.
        #[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
        #[serde(rename_all = "camelCase")]
        pub struct Target {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$vendor::$target>,
            )+
        }

        impl Target {
            /// The members that are set; a resolved target has exactly one.
            pub fn members(&self) -> Vec<&dyn TargetSpec> {
                [$(self.$field.as_ref().map(|t| t as &dyn TargetSpec),)+]
                    .into_iter()
                    .flatten()
                    .collect()
            }
        }
    };
}

one_of! {
    redis_software: redis_software::RedisSoftwareConnection => RedisSoftwareTarget as "redisSoftware",
    redis: redis::RedisConnection => RedisTarget as "redis",
    ontap: ontap::OntapConnection => OntapTarget as "ontap",
}

impl Connection {
    /// The target with a placeholder object (a user or account no system names so): enough
    /// for what concerns the system alone, [`PasswordTarget::describe`], and never used for a
    /// change.
    pub fn for_checks(&self) -> Result<Target, InvalidField> {
        const PLACEHOLDER: &str = "(the target's check)";
        let placeholder = |user: bool| TargetRef {
            reference: crate::resource::TargetReference {
                kind: crate::rotation_target::TargetKind::RotationTarget,
                name: String::new(),
            },
            user: user.then(|| PLACEHOLDER.to_owned()),
            database_uid: None,
            account: (!user).then(|| PLACEHOLDER.to_owned()),
            alternating_accounts: None,
        };
        self.with_object(&placeholder(true))
            .or_else(|_| self.with_object(&placeholder(false)))
    }
}

impl Target {
    /// The one member that is set.
    pub fn selected(&self) -> Result<&dyn TargetSpec, InvalidField> {
        match self.members().as_slice() {
            [one] => Ok(*one),
            _ => Err(InvalidField {
                field: "spec.target",
                message: "exactly one target must be set".into(),
            }),
        }
    }
}

/// Refuses an object field that `vendor` has no such thing for, naming the field.
fn only_objects(
    object: &TargetRef,
    vendor: &str,
    allowed: &[&'static str],
) -> Result<(), InvalidField> {
    let set = [
        ("user", object.user.is_some()),
        ("databaseUid", object.database_uid.is_some()),
        ("account", object.account.is_some()),
        ("alternatingAccounts", object.alternating_accounts.is_some()),
    ];
    match set
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        Some((name, _)) => Err(InvalidField {
            field: "spec.target",
            message: format!(
                "{name} is not an object of a {vendor} target: set {}",
                allowed.join(" or ")
            ),
        }),
        None => Ok(()),
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a vendor's spec section tells the engine.
pub trait TargetSpec: Send + Sync + fmt::Debug {
    /// The member's name in a target's spec, e.g. `redisSoftware`; also the `target` metrics
    /// label.
    fn vendor(&self) -> &'static str;

    /// Checks CEL cannot make, naming the field.
    fn validate(&self) -> Result<(), InvalidField>;

    /// The Secrets (in the target's Secret namespace) it reads.
    fn secrets(&self) -> Vec<SecretUse>;

    /// The system as the spec addresses it (e.g. `host:port`), until it says its own name.
    fn address(&self) -> String;

    /// What in that system holds the passwords, e.g. `user app`.
    fn object(&self) -> String;

    /// What holds passwords in that system, one entry each, normalized: two resources whose
    /// entries meet on one system rotate the same password list, however each names it.
    fn holders(&self) -> Vec<String> {
        vec![self.object()]
    }

    /// The name published beside the password, if the target has one.
    fn username(&self) -> Option<&str>;

    /// Whether the target says when a password expires ([`PasswordTarget::expiry`]).
    fn reports_expiry(&self) -> bool {
        false
    }

    /// Whether a node can come back without the password it was given (ACLs kept per node, a
    /// restart from an older file), so that [`PasswordTarget::heal`] is worth calling while
    /// the workloads roll out.
    fn heals(&self) -> bool {
        false
    }

    /// Whether the workload Secret gets a user name with the password.
    fn publishes_username(&self) -> bool {
        self.username().is_some()
    }

    /// The logins whose passwords rotate: the user, or both alternating accounts; none for a
    /// database's default user.
    fn logins(&self) -> Vec<String> {
        self.username().map(str::to_owned).into_iter().collect()
    }

    /// Strings a generated password must not contain.
    fn forbidden_in_password(&self) -> Vec<String> {
        self.logins()
    }

    /// The accounts of the old and the new password (previous, pending), given the one the
    /// workload Secret names now: both the target's user, except for alternating accounts.
    fn accounts(&self, _published: Option<&str>) -> Result<Accounts, InvalidField> {
        let user = self.username().map(str::to_owned);
        Ok((user.clone(), user))
    }

    /// Whether an account holds one password only, so that the old one is retired by giving
    /// its account a fresh password.
    fn one_password(&self) -> bool {
        false
    }

    /// Refuses a mode the target cannot run without an outage it does not announce.
    fn supports(&self, _mode: Mode) -> Result<(), InvalidField> {
        Ok(())
    }

    /// A field that asks for something an operator flag must allow.
    fn insecure_field(&self) -> Option<&'static str> {
        None
    }

    /// Builds the target from the Secrets it references (read and allowed by the caller).
    fn connect(&self, with: Connect<'_>) -> Result<Box<dyn PasswordTarget>>;
}

/// A key of a Secret, e.g. the CA that signs a server's certificate.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// How a server's certificate is checked.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The name the certificate must be valid for, when the address's host is not in it (a
    /// Service name, an IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// The accounts of the old and the new password: (previous, pending).
pub type Accounts = (Option<String>, Option<String>);

/// A Secret a target reads, and the spec field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretUse {
    pub name: String,
    pub field: &'static str,
}

/// What [`TargetSpec::connect`] gets from the engine.
pub struct Connect<'a> {
    /// The Secrets of [`TargetSpec::secrets`], by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// [`credentials_fingerprint`] of those Secrets.
    pub credentials: &'a str,
    /// Where those Secrets are: resources of one target share its clients.
    pub secrets_namespace: &'a str,
    /// The target's own lockout policy, where it describes one.
    pub lockout: Option<&'a LockoutPolicy>,
    pub shared: &'a Shared,
    pub settings: &'a TargetSettings,
    /// `namespace/name` of the resource the calls are for.
    pub resource: String,
    pub observer: Arc<dyn RequestObserver>,
    /// The refusal a Blocked resource recorded for an account this process has not used yet.
    pub remembered: &'a (dyn Fn(&str) -> Option<Refusal> + Sync),
    /// What the system said it is (its target's `status.identity`), once known: the budget of
    /// an admin login is the system's, however the target addresses it.
    pub system: Option<&'a str>,
}

/// Operator-wide settings every target honours.
#[derive(Clone, Debug)]
pub struct TargetSettings {
    pub request_timeout: Duration,
    pub calls_per_cluster: usize,
}

/// The passwords of one rotation, and the accounts they belong to.
pub struct Change<'a> {
    /// The password the workloads ran on when the rotation started.
    pub previous: &'a SecretString,
    /// The new password.
    pub pending: &'a SecretString,
    /// The account `previous` belongs to, where the target has accounts.
    pub previous_account: Option<&'a str>,
    /// The account `pending` goes to: the same as `previous_account`, except for alternating
    /// accounts.
    pub pending_account: Option<&'a str>,
    /// For accounts that hold one password: the fresh password an account is retired with,
    /// kept only in the state Secret, so that a replayed retirement sets the same one.
    pub retirement: Option<&'a SecretString>,
}

/// What a system says about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Description {
    /// As [`PasswordTarget::identity`].
    pub identity: String,
    pub version: Option<String>,
    /// `notAfter` of the certificate it presented.
    pub certificate_expires: Option<Timestamp>,
    /// When the admin login's password expires, where the system says.
    pub admin_password_expires: Option<Timestamp>,
}

/// A password list that can be changed. Every call is safe to replay.
pub trait PasswordTarget: Send + Sync {
    /// Makes `pending` work beside `previous`.
    fn add<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>>;

    /// Makes `pending` the only password: `previous` stops working at once.
    fn replace<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>>;

    /// Makes `previous` stop working, keeping `pending`.
    fn retire<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>>;

    /// Makes `pending` stop working, keeping `previous` (a rotation abandoned before
    /// publishing).
    fn roll_back<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>>;

    /// Gives `pending` back to every reachable node that lacks it, taking nothing away; the
    /// nodes that got it back. For [`TargetSpec::heals`] targets. Never `previous`: an actor
    /// acting on a stale view after another retired it would make it valid again.
    fn heal<'a>(
        &'a self,
        _change: &'a Change<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CallFailure>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether `pending` works now, asked without changing anything; `None` where the
    /// target cannot tell. A retire refused because `previous` was gone already is another
    /// actor's replay of the same retire when `pending` works (see [`crate::rotation::on_retire`]).
    fn accepts_pending<'a>(
        &'a self,
        _change: &'a Change<'a>,
    ) -> BoxFuture<'a, Result<Option<bool>, CallFailure>> {
        Box::pin(async { Ok(None) })
    }

    /// What the system says it is called: the same through any of its nodes or addresses.
    fn identity(&self) -> BoxFuture<'_, Result<String, CallFailure>>;

    /// What holds the passwords, as the system knows it whatever the spec calls it (e.g. a
    /// user's uid), beside [`TargetSpec::holders`]; none where the spec's name is the system's.
    fn canonical_holders(&self) -> BoxFuture<'_, Result<Vec<String>, CallFailure>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// What the system says about itself, for its target's status: a login with the admin
    /// credentials through the budget, so it is also the check that they are accepted.
    fn describe(&self) -> BoxFuture<'_, Result<Description, CallFailure>> {
        Box::pin(async {
            Ok(Description {
                identity: self.identity().await?,
                ..Description::default()
            })
        })
    }

    /// The admin account the calls spend the failed-login budget of.
    fn budget(&self) -> &Budget;

    /// When the password in use expires; `None` when it never does.
    fn expiry(&self) -> BoxFuture<'_, Result<Option<Timestamp>, CallFailure>> {
        Box::pin(async { Ok(None) })
    }

    /// How the last change is kept across a restart of the target, where the target says.
    fn persistence(&self) -> Option<String> {
        None
    }
}

/// A fingerprint of the referenced Secrets' data, an HMAC-SHA256 keyed with their uids: it
/// changes when, and only when, one of them changes its data (or is made anew). It is kept in
/// a status every reader of the resource sees, where a plain hash could be checked against
/// guessed passwords; the uids that key it are seen only by those who may read the Secrets.
pub fn credentials_fingerprint(secrets: &BTreeMap<String, Secret>) -> String {
    use hmac::{Hmac, Mac};
    let mut key = Vec::new();
    for secret in secrets.values() {
        let uid = secret.metadata.uid.as_deref().unwrap_or_default();
        key.extend((uid.len() as u64).to_be_bytes());
        key.extend(uid.as_bytes());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    for (name, secret) in secrets {
        let data = secret.data.iter().flatten();
        let parts = std::iter::once(name.as_bytes())
            .chain(data.flat_map(|(key, value)| [key.as_bytes(), value.0.as_slice()]));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
    }
    let tag = mac.finalize().into_bytes();
    tag.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Sees every request a target client sends, e.g. to count them in metrics.
pub trait RequestObserver: Send + Sync + fmt::Debug {
    fn started(&self, target: &'static str, operation: &'static str);
    /// Called once per [`started`](Self::started). `status` is what the server answered
    /// ("200", "401", "OK", "WRONGPASS"), a transport failure ("timeout", "connect"), or
    /// "cancelled" when the request was dropped before it ended.
    fn finished(
        &self,
        target: &'static str,
        operation: &'static str,
        status: &str,
        elapsed: Duration,
    );
}

/// Reports the end of a request to the observer, also when the request future is dropped.
pub struct Observed<'a> {
    observer: Option<&'a dyn RequestObserver>,
    target: &'static str,
    operation: &'static str,
    started: Instant,
    status: String,
}

impl<'a> Observed<'a> {
    pub fn start(
        observer: Option<&'a dyn RequestObserver>,
        target: &'static str,
        operation: &'static str,
    ) -> Self {
        if let Some(o) = observer {
            o.started(target, operation);
        }
        Self {
            observer,
            target,
            operation,
            started: Instant::now(),
            status: "cancelled".into(),
        }
    }

    pub fn status(&mut self, status: impl Into<String>) {
        self.status = status.into();
    }
}

impl Drop for Observed<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.observer {
            o.finished(
                self.target,
                self.operation,
                &self.status,
                self.started.elapsed(),
            );
        }
    }
}

/// What targets share across resources: call caps per cluster, failed-login budgets per
/// admin account, and clients (so that resources sharing credentials share connections).
#[derive(Default)]
pub struct Shared {
    calls: Mutex<HashMap<String, Arc<Semaphore>>>,
    logins: LoginBudgets,
    clients: Mutex<HashMap<String, KeptClient>>,
}

/// A client, and a fingerprint of what it was built from.
type KeptClient = (String, Arc<dyn Any + Send + Sync>);

impl Shared {
    /// The cap on calls in flight at once to `cluster`.
    pub fn calls(&self, cluster: &str, limit: usize) -> Arc<Semaphore> {
        self.calls
            .lock()
            .expect("not poisoned")
            .entry(cluster.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone()
    }

    /// The client kept under `key`, built anew when `fingerprint` (what it was built from)
    /// changed.
    pub fn client<T: Clone + Send + Sync + 'static>(
        &self,
        key: String,
        fingerprint: String,
        build: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if let Some((known, client)) = clients.get(&key)
            && *known == fingerprint
            && let Some(client) = client.downcast_ref::<T>()
        {
            return Ok(client.clone());
        }
        let client = build()?;
        clients.insert(key, (fingerprint, Arc::new(client.clone())));
        Ok(client)
    }

    /// The failed-login budget of `account` (see [`crate::login_budget::account_key`]).
    pub fn account(
        &self,
        account: &str,
        lockout: Lockout,
        remembered: impl FnOnce() -> Option<Refusal>,
    ) -> Arc<AdminAccount> {
        self.logins
            .account(account, lockout, Timestamp::now(), remembered)
    }
}

/// Runs a target's calls within its cluster's call cap and its admin account's failed-login
/// budget (see [`crate::login_budget`]): none with credentials that were refused less than a
/// lockout ago.
pub struct Budget {
    pub calls: Arc<Semaphore>,
    pub account: Arc<AdminAccount>,
    /// Identifies the account in status.
    pub account_key: String,
    /// [`credentials_fingerprint`] of what the calls log in with.
    pub credentials: String,
    /// `namespace/name` of the resource the calls are for.
    pub resource: String,
    /// How long a refused login holds back the same credentials.
    pub hold: Duration,
}

impl Budget {
    /// The budget of `login` on the system at `address` (known by its identity once it said
    /// it), for the resource `with` is for, under the target's lockout policy (the vendor's
    /// `default` unless the target describes its own).
    pub fn of(with: &Connect<'_>, address: &str, login: &str, default: Lockout) -> Budget {
        let lockout = with.lockout.map_or(default, |policy| policy.over(default));
        let system = with.system.unwrap_or(address);
        let account = crate::login_budget::account_key(system, login);
        Budget {
            calls: with.shared.calls(address, with.settings.calls_per_cluster),
            account: with
                .shared
                .account(&account, lockout, || (with.remembered)(&account)),
            account_key: account,
            credentials: with.credentials.to_owned(),
            resource: with.resource.clone(),
            hold: lockout.hold,
        }
    }

    pub async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, CallFailure>>,
    ) -> Result<T, CallFailure> {
        let held = |refusal: Refusal| CallFailure::AdminUnauthorized {
            detail: format!(
                "these admin credentials were refused at {} (for PasswordRotation {}); no \
                 login is tried with them before {}",
                refusal.at,
                refusal.by,
                refusal.until()
            ),
        };
        if let Some(refusal) = self
            .account
            .refusal_against(&self.credentials, Clocks::now())
        {
            return Err(held(refusal));
        }
        let _account = self.account.permit(&self.credentials).await;
        if let Some(refusal) = self
            .account
            .refusal_against(&self.credentials, Clocks::now())
        {
            return Err(held(refusal));
        }
        let _permit = self.calls.acquire().await.expect("never closed");
        let result = call.await;
        match &result {
            Err(CallFailure::AdminUnauthorized { .. }) => self.account.refused(Refusal {
                at: Timestamp::now(),
                credentials: self.credentials.clone(),
                by: self.resource.clone(),
                hold: self.hold,
            }),
            Err(CallFailure::Transient { .. } | CallFailure::TlsUntrusted { .. }) => {}
            _ => self.account.accepted(&self.credentials),
        }
        result
    }
}

/// `host:port` of a URL, lowercased, with the scheme's default port: how a spec addresses a
/// cluster until it says its own name.
pub fn url_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => format!(
            "{}:{}",
            url.host_str().unwrap_or_default().to_ascii_lowercase(),
            url.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => url.to_owned(),
    }
}

/// The credentials Secret and, when set, the CA Secret, with the fields that name them.
pub fn credentials_and_ca(
    credentials: Option<&str>,
    credentials_field: &'static str,
    ca: Option<&SecretKeyRef>,
    ca_field: &'static str,
) -> Vec<SecretUse> {
    let credentials = credentials.map(|name| SecretUse {
        name: name.to_owned(),
        field: credentials_field,
    });
    let ca = ca.map(|ca| SecretUse {
        name: ca.name.clone(),
        field: ca_field,
    });
    credentials.into_iter().chain(ca).collect()
}

/// Refuses to rotate the login the target itself logs in with (its credentials Secret's
/// `username`), whatever the target's policy allows: its new password would be published
/// into a tenant's Secret.
pub fn not_its_own_admin(
    target: &dyn TargetSpec,
    secrets: &BTreeMap<String, Secret>,
) -> Result<()> {
    let admin = target
        .secrets()
        .into_iter()
        .filter(|used| used.field.ends_with(".credentialsSecret"))
        .find_map(|used| login(secrets, &used.name, used.field).ok())
        .map(|(username, _)| username);
    match admin {
        Some(admin) if target.logins().contains(&admin) => Err(Error::Target {
            reason: Reason::TargetNotAllowed,
            detail: format!(
                "spec.target: {} is the login of the target's own administrator \
                 (credentialsSecret): its password is never rotated into a workload Secret",
                target.object()
            ),
        }),
        _ => Ok(()),
    }
}

/// The `username` and `password` keys of a credentials Secret the target read.
pub fn login(
    secrets: &BTreeMap<String, Secret>,
    name: &str,
    field: &str,
) -> Result<(String, SecretString)> {
    let text = |key: &str| -> Result<String> {
        String::from_utf8(secret_key(secrets, name, key, field)?.to_vec()).map_err(|_| {
            Error::Secret {
                name: name.to_owned(),
                problem: format!("key {key} is not UTF-8 ({field})"),
            }
        })
    };
    Ok((text("username")?, SecretString::from(text("password")?)))
}

/// The PEM bundle of a CA Secret the target read, when the spec names one.
pub fn ca_pem(
    secrets: &BTreeMap<String, Secret>,
    ca: Option<&SecretKeyRef>,
    field: &str,
) -> Result<Option<Vec<u8>>> {
    ca.map(|ca| secret_key(secrets, &ca.name, &ca.key, field).map(<[u8]>::to_vec))
        .transpose()
}

/// A key of a Secret the target read, or an error naming the Secret and the field.
pub fn secret_key<'a>(
    secrets: &'a BTreeMap<String, Secret>,
    name: &str,
    key: &str,
    field: &str,
) -> Result<&'a [u8]> {
    let secret = secrets.get(name).ok_or_else(|| Error::Secret {
        name: name.to_owned(),
        problem: format!("not found ({field})"),
    })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.as_slice())
        .ok_or_else(|| Error::Secret {
            name: name.to_owned(),
            problem: format!("has no key {key} ({field})"),
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn secrets(entries: &[(&str, &str, &[u8])]) -> BTreeMap<String, Secret> {
        let mut all: BTreeMap<String, Secret> = BTreeMap::new();
        for (name, key, value) in entries {
            all.entry(name.to_string())
                .or_default()
                .data
                .get_or_insert_default()
                .insert(key.to_string(), ByteString(value.to_vec()));
        }
        all
    }

    #[test]
    fn credentials_fingerprints_change_with_the_data_and_are_keyed_by_the_uids() {
        let with_uid = |entries: &[(&str, &str, &[u8])], uid: &str| {
            let mut all = secrets(entries);
            for secret in all.values_mut() {
                secret.metadata.uid = Some(uid.into());
                secret.metadata.resource_version = Some(uid.len().to_string());
            }
            all
        };
        let a = credentials_fingerprint(&with_uid(&[("admin", "password", b"pw")], "u1"));
        assert_eq!(
            a,
            credentials_fingerprint(&with_uid(&[("admin", "password", b"pw")], "u1"))
        );
        assert_ne!(
            a,
            credentials_fingerprint(&with_uid(&[("admin", "password", b"pw2")], "u1"))
        );
        assert_ne!(
            a,
            credentials_fingerprint(&with_uid(&[("admin", "password", b"pw")], "u2")),
            "keyed: without the uid, a guessed password cannot be checked against it"
        );
        assert_ne!(
            a,
            credentials_fingerprint(&with_uid(
                &[("admin", "password", b"pw"), ("ca", "ca.crt", b"c")],
                "u1"
            ))
        );
        assert_ne!(
            credentials_fingerprint(&with_uid(&[("admin", "ab", b"c")], "u1")),
            credentials_fingerprint(&with_uid(&[("admin", "a", b"bc")], "u1"))
        );
    }
}
