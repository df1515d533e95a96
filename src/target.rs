//! Where passwords live, behind one small trait so the engine stays free of any vendor.

use std::sync::Arc;

use jiff::Timestamp;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::login_budget::{AdminAccount, Refusal};
use crate::redis_software::{ApiError, RedisSoftwareClient};
use crate::rotation::CallFailure;
use crate::validation::TargetKind;

/// A password list that can be changed: a Redis Software user or database, and later
/// open-source Redis ACL users or ONTAP accounts.
pub trait PasswordTarget: Send + Sync {
    /// Adds `new` beside the existing passwords; `current` is one of them.
    fn add(
        &self,
        current: &SecretString,
        new: &SecretString,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;

    /// Makes `new` the only password.
    fn replace(
        &self,
        current: &SecretString,
        new: &SecretString,
    ) -> impl Future<Output = Result<(), CallFailure>> + Send;

    /// Removes `old` from the list.
    fn delete(&self, old: &SecretString) -> impl Future<Output = Result<(), CallFailure>> + Send;

    /// The name that goes into the workload Secret's username key, if the target has one.
    fn username(&self) -> Option<&str>;
}

/// A Redis Software user (`/v1/users/password`) or a database's default user
/// (`/v1/bdbs/{uid}/passwords`).
pub struct RedisSoftware {
    pub client: RedisSoftwareClient,
    pub kind: TargetKind,
    /// Shared by every resource that targets the same cluster, so that many rotations at
    /// once do not hammer one cluster.
    pub calls: Arc<Semaphore>,
    /// The failed-login budget of the admin login, shared by every resource that uses it.
    pub account: Arc<AdminAccount>,
    /// Identifies that account in status.
    pub account_key: String,
    /// Hash of the admin credentials this client logs in with.
    pub credentials: String,
    /// `namespace/name` of the resource the calls are for.
    pub resource: String,
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

    /// What the cluster says it is called: the same through any of its nodes or addresses.
    pub async fn identity(&self) -> Result<String, CallFailure> {
        self.within_budget(async {
            self.client
                .get_cluster()
                .await
                .map(|c| c.name)
                .map_err(|e| {
                    let detail = e.to_string();
                    classify(e).unwrap_or(CallFailure::AdminUnauthorized { detail })
                })
        })
        .await
    }

    async fn send(&self, call: Call<'_>) -> Result<(), CallFailure> {
        self.within_budget(self.dispatch(call)).await
    }

    /// Runs `call` within the account's budget: one call at a time per admin login, and
    /// none with credentials that were refused less than a lockout ago.
    async fn within_budget<T>(
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
            .refusal_against(&self.credentials, Timestamp::now())
        {
            return Err(held(refusal));
        }
        let _one = self.account.one_call().await;
        if let Some(refusal) = self
            .account
            .refusal_against(&self.credentials, Timestamp::now())
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
            }),
            Err(CallFailure::Transient { .. } | CallFailure::TlsUntrusted { .. }) => {}
            _ => self.account.accepted(&self.credentials),
        }
        result
    }

    async fn dispatch(&self, call: Call<'_>) -> Result<(), CallFailure> {
        match (&self.kind, call) {
            (TargetKind::User(user), Call::Add { current, new }) => {
                let result = self.client.add_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            (TargetKind::User(user), Call::Replace { current, new }) => {
                let result = self.client.replace_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            (TargetKind::User(user), Call::Delete { old }) => {
                let result = self.client.delete_user_password(user, old).await;
                self.classify_user_call(result).await
            }
            (TargetKind::Database(uid), Call::Add { new, .. }) => {
                database_call(self.client.add_database_password(*uid, new).await)
            }
            (TargetKind::Database(uid), Call::Replace { new, .. }) => {
                database_call(self.client.replace_database_password(*uid, new).await)
            }
            (TargetKind::Database(uid), Call::Delete { old }) => {
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
        return Some(CallFailure::NotComplex);
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
    async fn add(&self, current: &SecretString, new: &SecretString) -> Result<(), CallFailure> {
        self.send(Call::Add { current, new }).await
    }

    async fn replace(&self, current: &SecretString, new: &SecretString) -> Result<(), CallFailure> {
        self.send(Call::Replace { current, new }).await
    }

    async fn delete(&self, old: &SecretString) -> Result<(), CallFailure> {
        self.send(Call::Delete { old }).await
    }

    fn username(&self) -> Option<&str> {
        self.kind.username()
    }
}

/// Database calls carry no password of the admin's choosing in the login, so a 401 is
/// always the admin login.
fn database_call(result: Result<(), ApiError>) -> Result<(), CallFailure> {
    result.map_err(|e| {
        let detail = e.to_string();
        classify(e).unwrap_or(CallFailure::AdminUnauthorized { detail })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_software::Operation;

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
            Some(CallFailure::NotComplex)
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
