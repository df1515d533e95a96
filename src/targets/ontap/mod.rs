//! NetApp ONTAP accounts (`POST /api/security/authentication/password`). An account holds one
//! password, so add-then-delete is impossible on one account. Two ways:
//! - `alternatingAccounts: [a, b]`, two accounts with the same role: the standby account gets
//!   the new password, the workloads move to it (user name and password in one write), and
//!   only then the previously active account is retired with a fresh password that only the
//!   state Secret ever holds. No downtime.
//! - `account` with `mode: Replace`: the one password changes at once, a short outage until
//!   the workloads restart. Without `credentialsSecret` the account changes its own password
//!   with its current one (self-service).

pub mod client;
mod spec;

pub use spec::{OntapConnection, OntapTarget};

use secrecy::SecretString;

use self::client::{AccountRef, Login, OntapClient, OntapError, classify};
use crate::rotation::CallFailure;
use crate::targets::{BoxFuture, Budget, Change, Description, PasswordTarget};

/// One ONTAP account, or a pair that alternates.
pub struct Ontap {
    client: OntapClient,
    /// The cluster administrator; `None` for self-service.
    admin: Option<Login>,
    /// The SVM of SVM-scoped accounts.
    svm: Option<String>,
    /// Names the system when it cannot be asked (self-service knows no password to ask with).
    address: String,
    budget: Budget,
}

impl Ontap {
    fn account(&self, name: Option<&str>) -> Result<AccountRef, CallFailure> {
        let name = name.ok_or_else(|| CallFailure::Other {
            detail: "the rotation's state names no account".into(),
        })?;
        Ok(match &self.svm {
            Some(svm) => AccountRef::svm(svm, name),
            None => AccountRef::cluster(name),
        })
    }

    /// Sets `account`'s password to `password`, logged in as the administrator, or else as
    /// the account itself with `current`.
    async fn set(
        &self,
        account: Option<&str>,
        current: &SecretString,
        password: &SecretString,
    ) -> Result<(), CallFailure> {
        let account = self.account(account)?;
        let self_service;
        let login = match &self.admin {
            Some(admin) => admin,
            None => {
                self_service = Login::new(account.name.clone(), current.clone());
                &self_service
            }
        };
        self.budget
            .run(async {
                self.client
                    .change_password(login, &account, password)
                    .await
                    .map_err(|e| self.failure(&e))
            })
            .await
    }

    /// In self-service the login is the account with its current password: a refusal is
    /// that password refused, not an admin's.
    fn failure(&self, error: &OntapError) -> CallFailure {
        match classify(error) {
            CallFailure::AdminUnauthorized { .. } if self.admin.is_none() => {
                CallFailure::PasswordRejected
            }
            other => other,
        }
    }

    /// Gives the account a password that no one holds: it can no longer log in. A replay
    /// finds the same password set already.
    async fn retire_account(
        &self,
        account: Option<&str>,
        change: &Change<'_>,
    ) -> Result<(), CallFailure> {
        let retirement = change.retirement.ok_or_else(|| CallFailure::Other {
            detail: "the rotation's state holds no password to retire the account with".into(),
        })?;
        match self.set(account, change.pending, retirement).await {
            Err(CallFailure::AlreadyPresent) => Ok(()),
            other => other,
        }
    }
}

fn one_password() -> CallFailure {
    CallFailure::Other {
        detail: "an ONTAP account holds one password: adding one needs alternatingAccounts".into(),
    }
}

impl PasswordTarget for Ontap {
    /// The standby account gets the new password; the active one keeps working.
    fn add<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(async move {
            if change.pending_account == change.previous_account {
                return Err(one_password());
            }
            self.set(change.pending_account, change.previous, change.pending)
                .await
        })
    }

    fn replace<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.set(change.pending_account, change.previous, change.pending))
    }

    /// The previously active account is retired.
    fn retire<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(async move {
            if change.pending_account == change.previous_account {
                return Err(one_password());
            }
            self.retire_account(change.previous_account, change).await
        })
    }

    /// The standby account that got the new password is retired again.
    fn roll_back<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(async move {
            if change.pending_account == change.previous_account {
                return Err(one_password());
            }
            self.retire_account(change.pending_account, change).await
        })
    }

    /// `ontap:<cluster uuid>` (`GET /api/cluster`); in self-service, where no password is
    /// at hand to ask with, the address. The one call [`Self::describe`] makes.
    fn identity(&self) -> BoxFuture<'_, Result<String, CallFailure>> {
        Box::pin(async move { self.describe().await.map(|d| d.identity) })
    }

    /// `ontap:<cluster uuid>` (`GET /api/cluster`), its release, and the certificate it
    /// presented; in self-service, where no password is at hand to ask with, the address
    /// only.
    fn describe(&self) -> BoxFuture<'_, Result<Description, CallFailure>> {
        Box::pin(async move {
            let Some(admin) = &self.admin else {
                return Ok(Description {
                    identity: format!("ontap-address:{}", self.address),
                    ..Description::default()
                });
            };
            let cluster = self
                .budget
                .run(async {
                    self.client
                        .cluster(admin)
                        .await
                        .map_err(|e| self.failure(&e))
                })
                .await?;
            Ok(Description {
                identity: format!("ontap:{}", cluster.uuid),
                version: cluster.version.map(|v| v.full),
                certificate_expires: self.client.certificate_expires(),
                admin_password_expires: None,
            })
        })
    }

    fn budget(&self) -> &Budget {
        &self.budget
    }
}
