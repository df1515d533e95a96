//! The endpoints: `/v1/users[/{uid}]`, `/v1/users/password`, `/v1/bdbs[/{uid}]`,
//! `/v1/bdbs/{uid}/passwords`, and the unauthenticated control calls under `/test/`.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, body::Incoming, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    FaultRule, Inner,
    faults::basic_auth,
    model::{Model, User, acl_setuser, complexity_problem, now_rfc3339},
};

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: Bytes, json: bool) -> Resp {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if json {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
    }
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    respond(status, body.into(), true)
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(status, &json!({ "error_code": code, "message": message }))
}

fn empty(status: StatusCode) -> Resp {
    respond(status, Bytes::new(), false)
}

fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "invalid_parameters", message)
}

fn ok() -> Resp {
    json(StatusCode::OK, &json!({}))
}

/// The string fields of a JSON object body; anything else counts as missing.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8]) -> Option<Fields> {
        serde_json::from_slice(body).ok().map(Fields)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

pub(super) async fn control(inner: &Inner, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    match (parts.method, parts.uri.path()) {
        (Method::POST, "/test/faults") => {
            let Ok(body) = body.collect().await else {
                return bad_request("unreadable body");
            };
            match serde_json::from_slice::<FaultRule>(&body.to_bytes()) {
                Ok(rule) => {
                    inner.faults.lock().unwrap().push(rule);
                    ok()
                }
                Err(e) => bad_request(&format!("invalid fault rule: {e}")),
            }
        }
        (Method::GET, "/test/faults") => json(StatusCode::OK, &*inner.faults.lock().unwrap()),
        (Method::DELETE, "/test/faults") => {
            inner.faults.lock().unwrap().clear();
            ok()
        }
        (Method::GET, "/test/requests") => json(StatusCode::OK, &*inner.requests.lock().unwrap()),
        (Method::DELETE, "/test/requests") => {
            inner.requests.lock().unwrap().clear();
            ok()
        }
        (Method::GET, "/test/lockouts") => json(StatusCode::OK, &inner.login_statuses()),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such control endpoint",
        ),
    }
}

struct Caller {
    admin: bool,
    /// Index into `Model::users`; `None` for the configured admin.
    user: Option<usize>,
}

enum Refused {
    Credentials,
    Locked,
}

impl Refused {
    fn response(self) -> Resp {
        match self {
            Refused::Credentials => empty(StatusCode::UNAUTHORIZED),
            Refused::Locked => {
                let message = "the user is locked after too many failed logins";
                error(StatusCode::UNAUTHORIZED, "user_locked", message)
            }
        }
    }
}

fn authenticate(inner: &Inner, model: &Model, headers: &HeaderMap) -> Result<Caller, Refused> {
    let (login, password) = basic_auth(headers).ok_or(Refused::Credentials)?;
    let account = inner.account(&login);
    if inner.login_status(&login).locked {
        return Err(Refused::Locked);
    }
    let caller = if account == inner.config.admin.email {
        (password == inner.config.admin.password).then_some(Caller {
            admin: true,
            user: None,
        })
    } else {
        let index = model.users.iter().position(|u| u.name == account);
        index
            .filter(|i| model.users[*i].passwords.contains(&password))
            .map(|i| Caller {
                admin: model.users[i].role == "admin",
                user: Some(i),
            })
    };
    match caller {
        Some(caller) => {
            inner.login_succeeded(&account);
            Ok(caller)
        }
        None => {
            inner.login_failed(&account);
            Err(Refused::Credentials)
        }
    }
}

fn user_json(user: &User) -> Value {
    json!({
        "uid": user.uid,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "auth_method": "regular",
        "status": "active",
        "password_issue_date": user.password_issue_date,
    })
}

pub(super) async fn handle(
    inner: &Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Resp {
    // One request at a time: a change is applied to redis-server and then to the model
    // under the same lock, so the two never disagree.
    let mut model = inner.model.lock().await;
    let caller = match authenticate(inner, &model, headers) {
        Ok(caller) => caller,
        Err(refused) => return refused.response(),
    };
    let segments: Vec<&str> = path
        .strip_prefix("/v1/")
        .unwrap_or_default()
        .trim_end_matches('/')
        .split('/')
        .collect();
    let writes = matches!(*method, Method::POST | Method::PUT | Method::DELETE);
    let uid = |s: &str| s.parse::<u64>().ok();
    match (method, segments.as_slice()) {
        (&Method::GET, ["cluster"]) => json(
            StatusCode::OK,
            &json!({
                "name": inner.config.cluster_name,
                "password_expiration_duration": inner.config.password_expiration_days,
            }),
        ),
        (&Method::GET, ["users"]) => {
            // The cluster administrator is listed too, as on a real cluster.
            let admin = json!({
                "uid": 0,
                "name": "admin",
                "email": inner.config.admin.email,
                "role": "admin",
                "auth_method": "regular",
                "status": "active",
                "password_issue_date": inner.config.password_issue_dates
                    .get(&inner.config.admin.email)
                    .cloned()
                    .unwrap_or_else(|| inner.started.clone()),
            });
            let users = std::iter::once(admin).chain(model.users.iter().map(user_json));
            json(StatusCode::OK, &users.collect::<Vec<_>>())
        }
        (&Method::GET, ["nodes"]) => json(
            StatusCode::OK,
            &json!([{"uid": 1, "software_version": inner.config.software_version}]),
        ),
        (&Method::GET, ["users", id]) => {
            match model.users.iter().find(|u| Some(u.uid) == uid(id)) {
                Some(user) => json(StatusCode::OK, &user_json(user)),
                None => error(StatusCode::NOT_FOUND, "user_not_found", "no such user"),
            }
        }
        (_, ["users", "password"]) if writes => {
            user_password(inner, &mut model, &caller, method, body).await
        }
        (&Method::GET, ["bdbs"]) => {
            let dbs: Vec<_> = model
                .databases
                .iter()
                .map(|d| json!({ "uid": d.uid, "name": d.name }))
                .collect();
            json(StatusCode::OK, &dbs)
        }
        (&Method::GET, ["bdbs", id]) => {
            match model.databases.iter().find(|d| Some(d.uid) == uid(id)) {
                Some(db) => json(StatusCode::OK, &json!({ "uid": db.uid, "name": db.name })),
                None => error(StatusCode::NOT_FOUND, "bdb_not_found", "no such database"),
            }
        }
        (_, ["bdbs", id, "passwords"]) if writes => match uid(id) {
            Some(uid) => bdb_password(inner, &mut model, &caller, method, uid, body).await,
            None => error(StatusCode::NOT_FOUND, "bdb_not_found", "no such database"),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

async fn apply(inner: &Inner, acl_user: &str, rules: Vec<String>) -> Result<(), Resp> {
    acl_setuser(&inner.config, acl_user, rules)
        .await
        .map_err(|e| {
            // Only the kind: redis-server's messages may quote the ACL rule, i.e. a password.
            let kind = e
                .downcast_ref::<redis::RedisError>()
                .map(|e| format!("{:?}", e.kind()));
            tracing::error!(
                acl_user,
                "applying a password change to redis-server failed: {kind:?}"
            );
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "applying the change to the database failed",
            )
        })
}

/// `POST|PUT|DELETE /v1/users/password`, in the older (`username`, `old_password`,
/// `new_password`) and the newer (`new_password`, optional `username`) body shapes.
async fn user_password(
    inner: &Inner,
    model: &mut Model,
    caller: &Caller,
    method: &Method,
    body: &[u8],
) -> Resp {
    let Some(fields) = Fields::parse(body) else {
        return bad_request("the body must be a JSON object");
    };
    let (username, old, new) = (
        fields.get("username"),
        fields.get("old_password"),
        fields.get("new_password"),
    );
    let target = match username {
        Some(name) => model
            .users
            .iter()
            .position(|u| u.name == name || u.email.eq_ignore_ascii_case(name)),
        None => caller.user,
    };
    if !caller.admin && (target.is_none() || target != caller.user) {
        return empty(StatusCode::FORBIDDEN);
    }
    let Some(index) = target else {
        return match username {
            Some(_) => error(StatusCode::NOT_FOUND, "user_not_found", "no such user"),
            None => bad_request("username is required"),
        };
    };
    let user = &model.users[index];
    if let Some(old) = old
        && !user.passwords.iter().any(|p| p == old)
    {
        inner.login_failed(&user.name);
        return empty(StatusCode::UNAUTHORIZED);
    }
    let rules = match (method, old, new) {
        (&Method::DELETE, None, _) => return bad_request("old_password is required"),
        (&Method::DELETE, Some(_), _) if user.passwords.len() == 1 => {
            let message = "cannot delete the last password of a user";
            return error(
                StatusCode::BAD_REQUEST,
                "cannot_delete_last_password",
                message,
            );
        }
        (&Method::DELETE, Some(old), _) => vec![format!("<{old}")],
        (_, _, None) => return bad_request("new_password is required"),
        (_, _, Some(new)) => {
            if inner.config.password_complexity
                && let Some(problem) = complexity_problem(new, &user.name, &user.email)
            {
                return error(StatusCode::BAD_REQUEST, "password_not_complex", problem);
            }
            if user.passwords.iter().any(|p| p == new) {
                let message = "the new password is identical to one of the current passwords";
                return error(
                    StatusCode::BAD_REQUEST,
                    "new_password_same_as_current",
                    message,
                );
            }
            match *method {
                Method::PUT => vec!["resetpass".to_owned(), format!(">{new}")],
                _ => vec![format!(">{new}")],
            }
        }
    };
    if let Err(response) = apply(inner, &user.name, rules).await {
        return response;
    }
    let user = &mut model.users[index];
    match (method, old, new) {
        (&Method::DELETE, Some(old), _) => user.passwords.retain(|p| p != old),
        (&Method::PUT, _, Some(new)) => user.passwords = vec![new.to_owned()],
        (_, _, Some(new)) => user.passwords.push(new.to_owned()),
        _ => unreachable!("rejected above"),
    }
    user.password_issue_date = now_rfc3339();
    ok()
}

/// `POST|PUT|DELETE /v1/bdbs/{uid}/passwords` with `{"password": ...}`: needs `update_bdb`
/// (role admin); applied to the database's ACL user.
async fn bdb_password(
    inner: &Inner,
    model: &mut Model,
    caller: &Caller,
    method: &Method,
    uid: u64,
    body: &[u8],
) -> Resp {
    if !caller.admin {
        return empty(StatusCode::FORBIDDEN);
    }
    let Some(index) = model.databases.iter().position(|d| d.uid == uid) else {
        return error(StatusCode::NOT_FOUND, "bdb_not_found", "no such database");
    };
    let Some(fields) = Fields::parse(body) else {
        return bad_request("the body must be a JSON object");
    };
    let Some(password) = fields.get("password") else {
        return bad_request("password is required");
    };
    let db = &model.databases[index];
    let known = db.passwords.iter().any(|p| p == password);
    let rules = match *method {
        Method::POST if known => {
            let message = "the new password is identical to one of the current passwords";
            return error(
                StatusCode::BAD_REQUEST,
                "new_password_same_as_current",
                message,
            );
        }
        Method::POST => vec![format!(">{password}")],
        Method::PUT => vec!["resetpass".to_owned(), format!(">{password}")],
        _ if !known => {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                "password_not_found",
                "the password is not one of the database's",
            );
        }
        _ if db.passwords.len() == 1 => {
            let message = "cannot delete the last password of a database";
            return error(
                StatusCode::BAD_REQUEST,
                "cannot_delete_last_password",
                message,
            );
        }
        _ => vec![format!("<{password}")],
    };
    if let Err(response) = apply(inner, &db.acl_user, rules).await {
        return response;
    }
    let db = &mut model.databases[index];
    match *method {
        Method::POST => db.passwords.push(password.to_owned()),
        Method::PUT => db.passwords = vec![password.to_owned()],
        _ => db.passwords.retain(|p| p != password),
    }
    ok()
}
