//! Open-source Redis and Valkey ACL users. A user holds several passwords natively
//! (`ACL SETUSER u >new`, later `<old`), so add-then-delete needs no vendor API; ACLs are per
//! node, so every change goes to every node of the deployment and is persisted there.

pub mod client;
mod spec;

pub use spec::{RedisConnection, RedisTarget};

use std::sync::Mutex;

use self::client::{AclAdmin, AclError, Applied, Persistence, classify};
use crate::rotation::{CallFailure, NOT_PERSISTED};
use crate::targets::{
    BoxFuture, Budget, Change, Description, Observed, PasswordTarget, RequestObserver,
};

/// The `target` label of this target's calls.
pub const TARGET: &str = "redis";

/// One ACL user on every node of one deployment.
pub struct Redis {
    admin: AclAdmin,
    user: String,
    budget: Budget,
    observer: std::sync::Arc<dyn RequestObserver>,
    /// How the last change was kept across restarts.
    persistence: Mutex<Option<String>>,
}

impl Redis {
    async fn observed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, AclError>>,
    ) -> Result<T, CallFailure> {
        let mut observed = Observed::start(Some(&*self.observer), TARGET, operation);
        let result = call.await;
        observed.status(match &result {
            Ok(_) => "OK",
            Err(e) => kind(e),
        });
        result.map_err(|e| classify(&e))
    }

    async fn change(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<Applied, AclError>>,
    ) -> Result<(), CallFailure> {
        let applied = self.budget.run(self.observed(operation, call)).await?;
        *self.persistence.lock().expect("not poisoned") = Some(describe(&applied.persistence));
        Ok(())
    }
}

/// As status shows it.
fn describe(persistence: &Persistence) -> String {
    match persistence {
        Persistence::AclFile => "AclFile".into(),
        Persistence::ConfigRewrite => "ConfigRewrite".into(),
        Persistence::NotPersisted { why } => format!("{NOT_PERSISTED}: {why}"),
    }
}

/// A short, bounded label of an error for metrics.
fn kind(error: &AclError) -> &'static str {
    match error {
        AclError::Unchanged(cause) | AclError::Incomplete { cause, .. } => kind(cause),
        AclError::Connection { .. } => "connect",
        AclError::Timeout { .. } => "timeout",
        AclError::TlsUntrusted { .. } => "tls_untrusted",
        AclError::AdminRefused { .. } => "WRONGPASS",
        AclError::Server { .. } => "error_reply",
        AclError::UserNotFound { .. } => "user_not_found",
        AclError::LastPassword => "last_password",
        AclError::Config(_) | AclError::Protocol { .. } | AclError::SeveralDeployments(_) => {
            "other"
        }
    }
}

impl PasswordTarget for Redis {
    fn add<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.change(
            "add_password",
            self.admin.add_password(&self.user, change.pending),
        ))
    }

    fn replace<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(self.change(
            "replace_passwords",
            self.admin.replace_passwords(&self.user, change.pending),
        ))
    }

    fn retire<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(
            self.change(
                "remove_password",
                self.admin
                    .remove_password(&self.user, change.previous, change.pending),
            ),
        )
    }

    fn heal<'a>(
        &'a self,
        change: &'a Change<'a>,
    ) -> BoxFuture<'a, Result<Vec<String>, CallFailure>> {
        Box::pin(self.observed("heal", self.admin.heal(&self.user, change.pending)))
    }

    fn roll_back<'a>(&'a self, change: &'a Change<'a>) -> BoxFuture<'a, Result<(), CallFailure>> {
        Box::pin(
            self.change(
                "remove_password",
                self.admin
                    .remove_password(&self.user, change.pending, change.previous),
            ),
        )
    }

    /// The cluster's smallest node id, or the primary's replication id: the one survey of
    /// the nodes [`Self::describe`] makes.
    fn identity(&self) -> BoxFuture<'_, Result<String, CallFailure>> {
        Box::pin(async move { self.describe().await.map(|d| d.identity) })
    }

    /// The identity, the version its nodes run, and the certificate a node presented.
    fn describe(&self) -> BoxFuture<'_, Result<Description, CallFailure>> {
        Box::pin(async {
            let (identity, version) = self
                .budget
                .run(self.observed("identity", self.admin.describe()))
                .await?;
            Ok(Description {
                identity,
                version,
                certificate_expires: self.admin.certificate_expires(),
                admin_password_expires: None,
            })
        })
    }

    fn budget(&self) -> &Budget {
        &self.budget
    }

    fn persistence(&self) -> Option<String> {
        self.persistence.lock().expect("not poisoned").clone()
    }
}
