//! Redis Software (Redis Enterprise): a user's passwords (`/v1/users/password`) or a
//! database's default user (`/v1/bdbs/{uid}/passwords`), through the cluster's REST API.
//! Several passwords at once; the admin login is locked after 5 failed logins.

pub mod client;
mod spec;

pub use spec::{RedisSoftwareConnection, RedisSoftwareTarget};

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;

use self::client::{ApiError, RedisSoftwareClient, User};
use crate::rotation::CallFailure;
use crate::targets::{BoxFuture, Budget, Change, Description, PasswordTarget};

/// What holds the passwords in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Object {
    User(String),
    Database(u64),
}

/// A Redis Software user or database, reached with one admin login.
pub struct RedisSoftware {
    client: RedisSoftwareClient,
    object: Object,
    budget: Budget,
}

/// One call to the password list.
enum Call<'a> {
    Add {
        current: &'a SecretString,
        new: &'a SecretString,
    },
    Replace {
        current: &'a SecretString,
        new: &'a SecretString,
    },
    Delete {
        old: &'a SecretString,
    },
}

impl RedisSoftware {
    /// A 401 on a call that carries a password of the user is ambiguous: either the admin
    /// login or that password was refused. One read with the admin login tells which.
    async fn explain_unauthorized(&self, error: ApiError) -> CallFailure {
        match self.client.list_users().await {
            Ok(_) => CallFailure::PasswordRejected,
            Err(e) if e.is_unauthorized() => CallFailure::AdminUnauthorized {
                detail: e.to_string(),
            },
            // A block as well, and the more useful explanation.
            Err(ApiError::TlsUntrusted { detail, .. }) => CallFailure::TlsUntrusted { detail },
            // Retrying fast could be retrying a refused admin login: take it as one.
            Err(e) => CallFailure::AdminUnauthorized {
                detail: format!(
                    "{error}, and the admin read that would tell a refused admin login from a \
                     refused old password failed too ({e})"
                ),
            },
        }
    }

    async fn send(&self, call: Call<'_>) -> Result<(), CallFailure> {
        self.budget.run(self.dispatch(call)).await
    }

    async fn dispatch(&self, call: Call<'_>) -> Result<(), CallFailure> {
        match (&self.object, call) {
            (Object::User(user), Call::Add { current, new }) => {
                let result = self.client.add_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            (Object::User(user), Call::Replace { current, new }) => {
                let result = self.client.replace_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            (Object::User(user), Call::Delete { old }) => {
                let result = self.client.delete_user_password(user, old).await;
                self.classify_user_call(result).await
            }
            (Object::Database(uid), Call::Add { new, .. }) => {
                database_call(self.client.add_database_password(*uid, new).await)
            }
            (Object::Database(uid), Call::Replace { new, .. }) => {
                database_call(self.client.replace_database_password(*uid, new).await)
            }
            (Object::Database(uid), Call::Delete { old }) => {
                database_call(self.client.delete_database_password(*uid, old).await)
            }
        }
    }

    async fn classify_user_call(&self, result: Result<(), ApiError>) -> Result<(), CallFailure> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_unauthorized() => Err(self.explain_unauthorized(e).await),
            Err(e) => Err(classify(e).unwrap_or(CallFailure::Other {
                detail: "unexpected answer".into(),
            })),
        }
    }
}

/// Maps what every Redis Software password call can answer; `None` for a 401, which only
/// the caller can explain.
fn classify(error: ApiError) -> Option<CallFailure> {
    if let ApiError::TlsUntrusted { detail, .. } = error {
        return Some(CallFailure::TlsUntrusted { detail });
    }
    if error.is_new_password_same_as_current() {
        return Some(CallFailure::AlreadyPresent);
    }
    if error.is_cannot_delete_last_password() {
        return Some(CallFailure::LastPassword);
    }
    if error.error_code() == Some("password_not_complex") {
        return Some(CallFailure::NotComplex {
            detail: "password_not_complex: the cluster's password complexity rules".into(),
        });
    }
    if error.is_retryable() {
        return Some(CallFailure::Transient {
            detail: error.to_string(),
        });
    }
    let detail = error.to_string();
    match error.status() {
        Some(401) => None,
        Some(403) => Some(CallFailure::Forbidden { detail }),
        Some(404) => Some(CallFailure::NotFound { detail }),
        Some(406) => Some(CallFailure::PasswordRejected),
        _ => Some(CallFailure::Other { detail }),
    }
}

impl PasswordTarget for RedisSoftware {
    fn add<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.send(Call::Add {
            current: change.previous,
            new: change.pending,
        }))
    }

    fn replace<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.send(Call::Replace {
            current: change.previous,
            new: change.pending,
        }))
    }

    fn retire<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.send(Call::Delete {
            old: change.previous,
        }))
    }

    fn roll_back<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.send(Call::Delete {
            old: change.pending,
        }))
    }

    /// For a user: adding `pending` with `pending` as the current password, which the API
    /// refuses either way, and the refusal tells. `new_password_same_as_current` means the
    /// user has it; a refused current password means it does not. A database's passwords
    /// cannot be asked.
    fn accepts_pending<'a>(
        &'a self,
        change: &'a Change<'a>,
    ) -> BoxFuture<'a, Result<Option<bool>, CallFailure>> {
        Box::pin(async move {
            if let Object::Database(_) = self.object {
                return Ok(None);
            }
            let probe = Call::Add {
                current: change.pending,
                new: change.pending,
            };
            match self.send(probe).await {
                Err(CallFailure::AlreadyPresent) => Ok(Some(true)),
                Err(CallFailure::PasswordRejected) => Ok(Some(false)),
                Err(failure) => Err(failure),
                Ok(()) => Err(CallFailure::Other {
                    detail: "the cluster accepted a password identical to a current one".into(),
                }),
            }
        })
    }

    /// What the cluster says it is called (`GET /v1/cluster`): the same through any of its
    /// nodes or addresses.
    fn identity(&self) -> BoxFuture<'_, Result<String, CallFailure>> {
        Box::pin(self.budget.run(async {
            self.client
                .get_cluster()
                .await
                .map(|c| c.name)
                .map_err(admin_call)
        }))
    }

    fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The user's `password_issue_date` plus the cluster's `password_expiration_duration`.
    fn expiry(&self) -> BoxFuture<'_, Result<Option<Timestamp>, CallFailure>> {
        Box::pin(self.budget.run(async {
            let Object::User(user) = &self.object else {
                return Ok(None);
            };
            let days = self
                .client
                .password_expiration_days()
                .await
                .map_err(admin_call)?;
            if !matches!(days, Some(1..)) {
                return Ok(None);
            }
            let found = self.client.find_user(user).await.map_err(admin_call)?;
            match password_expiry(found.as_ref(), days) {
                Err(()) => Err(CallFailure::Other {
                    detail: format!("user {user} has no readable password_issue_date"),
                }),
                Ok(expiry) => Ok(expiry),
            }
        }))
    }

    /// A user by its uid, its name and its email: a resource that names it either way, and
    /// did not look it up, meets one of these.
    fn canonical_holders(&self) -> BoxFuture<'_, Result<Vec<String>, CallFailure>> {
        Box::pin(self.budget.run(async {
            let Object::User(user) = &self.object else {
                return Ok(Vec::new());
            };
            let found = self.client.find_user(user).await.map_err(admin_call)?;
            Ok(found
                .map(|u| {
                    vec![
                        format!("user uid {}", u.uid),
                        format!("user {}", u.name),
                        format!("user {}", u.email.to_ascii_lowercase()),
                    ]
                })
                .unwrap_or_default())
        }))
    }

    /// The cluster's name, the lowest version of its nodes, the certificate it presented, and
    /// when the admin's own password expires under the cluster's policy.
    fn describe(&self) -> BoxFuture<'_, Result<Description, CallFailure>> {
        Box::pin(self.budget.run(async {
            let cluster = self.client.get_cluster().await.map_err(admin_call)?;
            let version = self.client.software_version().await.map_err(admin_call)?;
            let admin = self
                .client
                .find_user(self.client.admin_login())
                .await
                .map_err(admin_call)?;
            let days = cluster.password_expiration_duration;
            Ok(Description {
                identity: cluster.name,
                version,
                certificate_expires: self.client.certificate_expires(),
                admin_password_expires: password_expiry(admin.as_ref(), days).unwrap_or(None),
            })
        }))
    }
}

/// A failed call that names no password of the admin's choosing: a 401 is the admin login.
fn admin_call(e: ApiError) -> CallFailure {
    let detail = e.to_string();
    classify(e).unwrap_or(CallFailure::AdminUnauthorized { detail })
}

/// When `user`'s password expires after `days` (none when 0 or absent); `Err` when the user
/// or its `password_issue_date` cannot be read.
fn password_expiry(user: Option<&User>, days: Option<u64>) -> Result<Option<Timestamp>, ()> {
    let Some(days @ 1..) = days else {
        return Ok(None);
    };
    let issued = user
        .and_then(|u| u.password_issue_date.as_deref())
        .and_then(|d| d.parse::<Timestamp>().ok())
        .ok_or(())?;
    Ok(issued
        .checked_add(SignedDuration::from_hours(24 * days as i64))
        .ok())
}

/// Database calls carry no password of the admin's choosing in the login, so a 401 is
/// always the admin login.
fn database_call(result: Result<(), ApiError>) -> Result<(), CallFailure> {
    result.map_err(admin_call)
}

#[cfg(test)]
mod tests {
    use super::client::Operation;
    use super::*;

    fn status(status: u16, code: Option<&str>) -> ApiError {
        ApiError::Status {
            operation: Operation::AddUserPassword,
            status,
            error_code: code.map(str::to_owned),
            message: None,
        }
    }

    #[test]
    fn classifies_the_documented_answers() {
        assert_eq!(
            classify(status(400, Some("new_password_same_as_current"))),
            Some(CallFailure::AlreadyPresent)
        );
        assert_eq!(
            classify(status(400, Some("cannot_delete_last_password"))),
            Some(CallFailure::LastPassword)
        );
        assert_eq!(
            classify(status(400, Some("password_not_complex"))),
            Some(CallFailure::NotComplex {
                detail: "password_not_complex: the cluster's password complexity rules".into()
            })
        );
        assert_eq!(
            classify(status(406, None)),
            Some(CallFailure::PasswordRejected)
        );
        assert_eq!(classify(status(401, None)), None);
        assert!(matches!(
            classify(status(503, None)),
            Some(CallFailure::Transient { .. })
        ));
        assert!(matches!(
            classify(status(404, None)),
            Some(CallFailure::NotFound { .. })
        ));
        assert!(matches!(
            classify(status(403, None)),
            Some(CallFailure::Forbidden { .. })
        ));
        assert!(matches!(
            classify(ApiError::Timeout {
                operation: Operation::DeleteUserPassword
            }),
            Some(CallFailure::Transient { .. })
        ));
    }

    #[test]
    fn an_untrusted_certificate_is_reported_as_such() {
        let untrusted = || ApiError::TlsUntrusted {
            operation: Operation::AddDatabasePassword,
            detail: "expired; the server presented subject \"CN=rs\"".into(),
        };
        let expected = CallFailure::TlsUntrusted {
            detail: "expired; the server presented subject \"CN=rs\"".into(),
        };
        assert_eq!(classify(untrusted()), Some(expected.clone()));
        assert_eq!(database_call(Err(untrusted())), Err(expected));
    }

    #[test]
    fn a_database_401_is_the_admin_login() {
        assert!(matches!(
            database_call(Err(status(401, None))),
            Err(CallFailure::AdminUnauthorized { .. })
        ));
    }
}
