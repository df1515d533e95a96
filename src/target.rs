//! Where passwords live, behind one small trait so the engine stays free of any vendor.

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Semaphore;

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
            Err(e) => classify(e).unwrap_or(CallFailure::Transient {
                detail: error.to_string(),
            }),
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
        let _permit = self.calls.acquire().await.expect("never closed");
        match &self.kind {
            TargetKind::User(user) => {
                let result = self.client.add_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            TargetKind::Database(uid) => {
                database_call(self.client.add_database_password(*uid, new).await)
            }
        }
    }

    async fn replace(&self, current: &SecretString, new: &SecretString) -> Result<(), CallFailure> {
        let _permit = self.calls.acquire().await.expect("never closed");
        match &self.kind {
            TargetKind::User(user) => {
                let result = self.client.replace_user_password(user, current, new).await;
                self.classify_user_call(result).await
            }
            TargetKind::Database(uid) => {
                database_call(self.client.replace_database_password(*uid, new).await)
            }
        }
    }

    async fn delete(&self, old: &SecretString) -> Result<(), CallFailure> {
        let _permit = self.calls.acquire().await.expect("never closed");
        match &self.kind {
            TargetKind::User(user) => {
                let result = self.client.delete_user_password(user, old).await;
                self.classify_user_call(result).await
            }
            TargetKind::Database(uid) => {
                database_call(self.client.delete_database_password(*uid, old).await)
            }
        }
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
    fn a_database_401_is_the_admin_login() {
        assert!(matches!(
            database_call(Err(status(401, None))),
            Err(CallFailure::AdminUnauthorized { .. })
        ));
    }
}
