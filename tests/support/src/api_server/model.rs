//! The cluster's state: password lists (kept equal to redis-server's ACLs) and login lockouts.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{ApiServerConfig, Inner};

pub(super) struct Model {
    pub users: Vec<User>,
    pub databases: Vec<Database>,
}

pub(super) struct User {
    pub uid: u64,
    pub name: String,
    pub email: String,
    pub role: String,
    pub passwords: Vec<String>,
    pub password_issue_date: String,
}

pub(super) struct Database {
    pub uid: u64,
    pub name: String,
    pub acl_user: String,
    pub passwords: Vec<String>,
}

pub(super) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Model {
    /// Gives each user and database ACL user exactly its configured passwords on redis-server.
    pub async fn create(config: &ApiServerConfig) -> anyhow::Result<Model> {
        let users: Vec<User> = config
            .users
            .iter()
            .map(|u| User {
                uid: u.uid,
                name: u.name.clone(),
                email: u.email.clone(),
                role: u.role.clone(),
                passwords: u.passwords.clone(),
                password_issue_date: config
                    .password_issue_dates
                    .get(&u.name)
                    .cloned()
                    .unwrap_or_else(now_rfc3339),
            })
            .collect();
        let databases: Vec<Database> = config
            .databases
            .iter()
            .map(|d| Database {
                uid: d.uid,
                name: d.name.clone(),
                acl_user: d.acl_user.clone(),
                passwords: d.passwords.clone(),
            })
            .collect();
        let acl_users = users.iter().map(|u| (&u.name, &u.passwords));
        for (name, passwords) in
            acl_users.chain(databases.iter().map(|d| (&d.acl_user, &d.passwords)))
        {
            let rules = ["reset", "on", "~*", "&*", "+@all"].map(String::from);
            let rules = rules
                .into_iter()
                .chain(passwords.iter().map(|p| format!(">{p}")));
            acl_setuser(config, name, rules.collect())
                .await
                .with_context(|| format!("creating ACL user {name} on {}", config.redis_addr))?;
        }
        Ok(Model { users, databases })
    }
}

/// `ACL SETUSER user rules...` on the configured redis-server.
pub(super) async fn acl_setuser(
    config: &ApiServerConfig,
    user: &str,
    rules: Vec<String>,
) -> anyhow::Result<()> {
    let mut args = vec!["SETUSER", user];
    args.extend(rules.iter().map(String::as_str));
    config
        .redis_admin
        .acl(&config.redis_addr, &args)
        .await
        .map(drop)
}

/// Why `password` fails the cluster's complexity rules, if it does.
pub(super) fn complexity_problem(password: &str, name: &str, email: &str) -> Option<&'static str> {
    let chars: Vec<char> = password.chars().collect();
    let has = |class: fn(&char) -> bool| chars.iter().any(class);
    if chars.len() < 8 {
        return Some("the password must have at least 8 characters");
    }
    if !has(|c| c.is_uppercase()) {
        return Some("the password must contain an uppercase letter");
    }
    if !has(|c| c.is_lowercase()) {
        return Some("the password must contain a lowercase letter");
    }
    if !has(char::is_ascii_digit) {
        return Some("the password must contain a digit");
    }
    if !has(|c| !c.is_alphanumeric()) {
        return Some("the password must contain a special character");
    }
    if chars.windows(4).any(|w| w.iter().all(|c| *c == w[0])) {
        return Some("the password must not repeat a character more than 3 times in a row");
    }
    let lower = password.to_lowercase();
    for id in [name, email]
        .map(str::to_lowercase)
        .iter()
        .filter(|id| !id.is_empty())
    {
        let reversed: String = id.chars().rev().collect();
        if lower.contains(id.as_str()) || lower.contains(&reversed) {
            return Some(
                "the password must not contain the user's name or email, or their reverse",
            );
        }
    }
    None
}

#[derive(Default)]
pub(super) struct Logins(HashMap<String, LoginRecord>);

#[derive(Default)]
struct LoginRecord {
    failures: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// `GET /test/lockouts` entries; `login` is the account: the admin's email or a user's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStatus {
    pub login: String,
    pub failed_logins: u32,
    pub locked: bool,
}

impl Inner {
    /// The account a login names (the admin's email, or a user's name or email), so that both
    /// spellings share one lockout; an unknown login is its own account.
    pub(super) fn account(&self, login: &str) -> String {
        if login.eq_ignore_ascii_case(&self.config.admin.email) {
            return self.config.admin.email.clone();
        }
        self.config
            .users
            .iter()
            .find(|u| u.name == login || u.email.eq_ignore_ascii_case(login))
            .map_or_else(|| login.to_owned(), |u| u.name.clone())
    }

    fn status_of(&self, account: String, record: &mut LoginRecord) -> LoginStatus {
        let now = Instant::now();
        let window = Duration::from_millis(self.config.lockout.window_ms);
        record.failures.retain(|t| now.duration_since(*t) < window);
        if record.locked_until.is_some_and(|until| until <= now) {
            // An expired lockout starts the count afresh.
            record.locked_until = None;
            record.failures.clear();
        }
        LoginStatus {
            login: account,
            failed_logins: record.failures.len() as u32,
            locked: record.locked_until.is_some(),
        }
    }

    pub(super) fn login_status(&self, login: &str) -> LoginStatus {
        let account = self.account(login);
        match self.logins.lock().unwrap().0.get_mut(&account) {
            Some(record) => self.status_of(account, record),
            None => LoginStatus {
                login: account,
                failed_logins: 0,
                locked: false,
            },
        }
    }

    pub(super) fn login_statuses(&self) -> Vec<LoginStatus> {
        let mut logins = self.logins.lock().unwrap();
        let mut statuses: Vec<_> = logins
            .0
            .iter_mut()
            .map(|(account, record)| self.status_of(account.clone(), record))
            .collect();
        statuses.sort_by(|a, b| a.login.cmp(&b.login));
        statuses
    }

    /// Counts a failed login of `account`, locking it when the policy says so.
    pub(super) fn login_failed(&self, account: &str) {
        let policy = &self.config.lockout;
        let mut logins = self.logins.lock().unwrap();
        let record = logins.0.entry(account.to_owned()).or_default();
        record.failures.push(Instant::now());
        let status = self.status_of(account.to_owned(), record);
        if !status.locked && status.failed_logins >= policy.max_failures {
            record.locked_until = Some(Instant::now() + Duration::from_millis(policy.duration_ms));
        }
    }

    pub(super) fn login_succeeded(&self, account: &str) {
        self.logins.lock().unwrap().0.remove(account);
    }
}
