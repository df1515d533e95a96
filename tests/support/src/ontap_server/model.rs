//! The cluster's accounts, its password policy and login lockouts.
use std::time::{Duration, Instant};

use super::{LockoutPolicy, OntapServerConfig, PasswordPolicy, Svm};

/// ONTAP refuses longer passwords whatever the policy says.
const MAX_LENGTH: usize = 128;

pub(super) struct Model {
    pub cluster: Svm,
    pub accounts: Vec<Account>,
    pub policy: PasswordPolicy,
    lockout: LockoutPolicy,
}

pub(super) struct Account {
    pub name: String,
    /// The SVM, or the cluster for a cluster-scoped account.
    pub owner: Svm,
    pub cluster_scoped: bool,
    pub role: String,
    password: String,
    /// Earlier passwords, most recent last.
    history: Vec<String>,
    failed_logins: u32,
    locked_until: Option<Instant>,
}

impl Account {
    pub fn is_cluster_admin(&self) -> bool {
        self.cluster_scoped && self.role == "admin"
    }

    /// Whether the account is locked now; an expired lockout starts the count afresh.
    pub fn is_locked(&mut self) -> bool {
        if self
            .locked_until
            .is_some_and(|until| until <= Instant::now())
        {
            self.locked_until = None;
            self.failed_logins = 0;
        }
        self.locked_until.is_some()
    }
}

/// A password the policy refuses: ONTAP's code and message, and what the policy asks for.
pub(super) struct PolicyError {
    pub code: &'static str,
    pub message: String,
    pub arguments: Vec<String>,
}

impl PolicyError {
    fn new(code: &'static str, message: &str, argument: Option<usize>) -> Self {
        PolicyError {
            code,
            message: message.to_owned(),
            arguments: argument.iter().map(usize::to_string).collect(),
        }
    }
}

pub(super) struct LoginStatus {
    pub failed_logins: u32,
    pub locked: bool,
}

impl Model {
    pub fn new(config: &OntapServerConfig) -> anyhow::Result<Model> {
        let cluster = Svm {
            name: config.cluster_name.clone(),
            uuid: config.cluster_uuid.clone(),
        };
        let mut accounts: Vec<Account> = Vec::new();
        for a in &config.accounts {
            let owner = a.owner.clone().unwrap_or_else(|| cluster.clone());
            let mut owners = std::iter::once(&cluster).chain(accounts.iter().map(|b| &b.owner));
            let clash = |o: &&Svm| (o.name == owner.name) != (o.uuid == owner.uuid);
            anyhow::ensure!(
                !owners.any(|o| clash(&o)) && (a.owner.is_none() || owner.uuid != cluster.uuid),
                "SVM {:?} of account {:?} clashes with another SVM or the cluster",
                owner.name,
                a.name
            );
            anyhow::ensure!(
                !accounts
                    .iter()
                    .any(|b| b.owner.uuid == owner.uuid && b.name == a.name),
                "account {:?} of {:?} is configured twice",
                a.name,
                owner.name
            );
            accounts.push(Account {
                name: a.name.clone(),
                owner,
                cluster_scoped: a.owner.is_none(),
                role: a.role.clone(),
                password: a.password.clone(),
                history: Vec::new(),
                failed_logins: 0,
                locked_until: None,
            });
        }
        Ok(Model {
            cluster,
            accounts,
            policy: config.policy.clone(),
            lockout: config.lockout.clone(),
        })
    }

    /// The account a Basic-auth login names: the cluster-scoped one, or else the only
    /// SVM-scoped one of that name.
    pub fn find_login(&self, login: &str) -> Option<usize> {
        let named = || {
            self.accounts
                .iter()
                .enumerate()
                .filter(|(_, a)| a.name == login)
        };
        if let Some((i, _)) = named().find(|(_, a)| a.cluster_scoped) {
            return Some(i);
        }
        let mut svm_scoped = named().map(|(i, _)| i);
        match (svm_scoped.next(), svm_scoped.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    }

    pub fn password_is(&self, login: &str, password: &str) -> bool {
        self.find_login(login)
            .is_some_and(|i| self.accounts[i].password == password)
    }

    pub fn status(&mut self, login: &str) -> LoginStatus {
        match self.find_login(login) {
            Some(i) => {
                let account = &mut self.accounts[i];
                let locked = account.is_locked();
                LoginStatus {
                    failed_logins: account.failed_logins,
                    locked,
                }
            }
            None => LoginStatus {
                failed_logins: 0,
                locked: false,
            },
        }
    }

    /// The account logged in as, counting a failed login against it; `None` when refused.
    pub fn authenticate(&mut self, login: &str, password: &str) -> Option<usize> {
        let index = self.find_login(login)?;
        let account = &mut self.accounts[index];
        if account.is_locked() {
            return None;
        }
        if account.password == password {
            account.failed_logins = 0;
            return Some(index);
        }
        account.failed_logins += 1;
        let policy = &self.lockout;
        if policy.max_failures > 0 && account.failed_logins >= policy.max_failures {
            account.locked_until = Some(Instant::now() + Duration::from_millis(policy.duration_ms));
        }
        None
    }

    /// The SVM (or the cluster) that `name` and `uuid` both name, where given.
    pub fn owner(&self, name: Option<&str>, uuid: Option<&str>) -> Option<Svm> {
        if name.is_none() && uuid.is_none() {
            return None;
        }
        std::iter::once(&self.cluster)
            .chain(self.accounts.iter().map(|a| &a.owner))
            .find(|o| name.is_none_or(|n| o.name == n) && uuid.is_none_or(|u| o.uuid == u))
            .cloned()
    }

    pub fn find(&self, owner_uuid: &str, name: &str) -> Option<usize> {
        self.accounts
            .iter()
            .position(|a| a.owner.uuid == owner_uuid && a.name == name)
    }

    /// Why the policy refuses `new` as the password of account `index`, if it does.
    pub fn check(&self, index: usize, new: &str) -> Result<(), PolicyError> {
        let (policy, account) = (&self.policy, &self.accounts[index]);
        let length = new.chars().count();
        let composition = policy
            .min_length
            .max(policy.min_special + if policy.alphanumeric { 2 } else { 0 });
        if composition > MAX_LENGTH {
            let message = "Defined password composition exceeds the maximum password length of \
                           128 characters.";
            return Err(PolicyError::new("7077941", message, Some(composition)));
        }
        if length > MAX_LENGTH {
            let message = "The password exceeds maximum supported length.";
            return Err(PolicyError::new("7077940", message, Some(MAX_LENGTH)));
        }
        if length < policy.min_length {
            let message = "The minimum length for new password does not meet the policy.";
            return Err(PolicyError::new(
                "7077919",
                message,
                Some(policy.min_length),
            ));
        }
        if new.to_lowercase().contains(&account.name.to_lowercase()) {
            let message = "The password cannot contain the username.";
            return Err(PolicyError::new("7077918", message, None));
        }
        let letters_and_digits =
            new.chars().any(char::is_alphabetic) && new.chars().any(|c| c.is_ascii_digit());
        if policy.alphanumeric && !letters_and_digits {
            let message = "The new password must have both letters and numbers.";
            return Err(PolicyError::new("7077920", message, None));
        }
        if new.chars().filter(|c| !c.is_alphanumeric()).count() < policy.min_special {
            let message =
                "The minimum number of special characters required do not meet the policy.";
            return Err(PolicyError::new(
                "7077921",
                message,
                Some(policy.min_special),
            ));
        }
        if account.password == new {
            let message = "The new password must be different to the old password.";
            return Err(PolicyError::new("7077925", message, None));
        }
        let earlier = policy.history.saturating_sub(1);
        if account.history.iter().rev().take(earlier).any(|p| p == new) {
            let message = format!(
                "The new password must be different than last {} passwords.",
                policy.history
            );
            return Err(PolicyError {
                message,
                ..PolicyError::new("7077924", "", Some(policy.history))
            });
        }
        Ok(())
    }

    pub fn set_password(&mut self, index: usize, new: &str) {
        let account = &mut self.accounts[index];
        let old = std::mem::replace(&mut account.password, new.to_owned());
        account.history.push(old);
    }
}
