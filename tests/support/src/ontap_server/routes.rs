//! The endpoints: `GET /api/cluster`, `POST /api/security/authentication/password`,
//! `GET /api/security/accounts/{owner.uuid}/{name}`, and the unauthenticated control calls
//! `/test/faults`, `/test/requests` and `/test/policy`.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{HeaderMap, Method, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{FaultRule, Inner, PasswordPolicy, Resp, basic_auth, model::Model};

const PASSWORD: &str = "/api/security/authentication/password";
const ACCOUNTS: &str = "/api/security/accounts/";

fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/hal+json"),
    );
    response
}

/// ONTAP's error body.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    target: Option<&str>,
    arguments: &[String],
) -> Resp {
    let mut error = json!({ "code": code, "message": message });
    if let Some(target) = target {
        error["target"] = json!(target);
    }
    if !arguments.is_empty() {
        let arguments: Vec<_> = arguments
            .iter()
            .map(|a| json!({ "code": "", "message": a }))
            .collect();
        error["arguments"] = json!(arguments);
    }
    json(status, &json!({ "error": error }))
}

fn not_found(target: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "4",
        "entry doesn't exist",
        Some(target),
        &[],
    )
}

fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "262179", message, None, &[])
}

fn unauthorized() -> Resp {
    let message = "User is not authorized";
    error(StatusCode::UNAUTHORIZED, "6", message, None, &[])
}

fn forbidden() -> Resp {
    let message = "not authorized for that command";
    error(StatusCode::FORBIDDEN, "6", message, None, &[])
}

pub(super) fn control(inner: &Inner, method: &Method, path: &str, body: &[u8]) -> Resp {
    let ok = || json(StatusCode::OK, &json!({}));
    match (method, path) {
        (&Method::POST, "/test/faults") => match serde_json::from_slice::<FaultRule>(body) {
            Ok(rule) => {
                inner.faults.lock().unwrap().push(rule);
                ok()
            }
            Err(e) => bad_request(&format!("invalid fault rule: {e}")),
        },
        (&Method::GET, "/test/faults") => json(StatusCode::OK, &*inner.faults.lock().unwrap()),
        (&Method::DELETE, "/test/faults") => {
            inner.faults.lock().unwrap().clear();
            ok()
        }
        (&Method::GET, "/test/requests") => json(StatusCode::OK, &*inner.requests.lock().unwrap()),
        (&Method::DELETE, "/test/requests") => {
            inner.requests.lock().unwrap().clear();
            ok()
        }
        (&Method::GET, "/test/policy") => json(StatusCode::OK, &inner.model.lock().unwrap().policy),
        (&Method::PUT, "/test/policy") => match serde_json::from_slice::<PasswordPolicy>(body) {
            Ok(policy) => {
                inner.model.lock().unwrap().policy = policy;
                ok()
            }
            Err(e) => bad_request(&format!("invalid policy: {e}")),
        },
        _ => not_found("path"),
    }
}

pub(super) fn handle(
    inner: &Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Resp {
    let mut model = inner.model.lock().unwrap();
    let caller =
        basic_auth(headers).and_then(|(login, password)| model.authenticate(&login, &password));
    let Some(caller) = caller else {
        return unauthorized();
    };
    let path = path.trim_end_matches('/');
    match (method, path) {
        (&Method::GET, "/api/cluster") => json(
            StatusCode::OK,
            &json!({
                "name": model.cluster.name,
                "uuid": model.cluster.uuid,
                "version": {
                    "full": "NetApp Release 9.15.1: Wed Jun 26 19:15:36 UTC 2024",
                    "generation": 9,
                    "major": 15,
                    "minor": 1,
                },
            }),
        ),
        (&Method::POST, PASSWORD) => change_password(&mut model, caller, body),
        (&Method::GET, _) if path.starts_with(ACCOUNTS) => {
            if !model.accounts[caller].is_cluster_admin() {
                return forbidden();
            }
            let found = path[ACCOUNTS.len()..]
                .split_once('/')
                .and_then(|(owner, name)| model.find(owner, name));
            match found {
                Some(index) => account_json(&mut model, index),
                None => not_found("name"),
            }
        }
        (_, "/api/cluster" | PASSWORD) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "3",
            "method not allowed",
            None,
            &[],
        ),
        _ => not_found("path"),
    }
}

fn account_json(model: &mut Model, index: usize) -> Resp {
    let account = &mut model.accounts[index];
    let locked = account.is_locked();
    let scope = if account.cluster_scoped {
        "cluster"
    } else {
        "svm"
    };
    json(
        StatusCode::OK,
        &json!({
            "name": account.name,
            "owner": { "name": account.owner.name, "uuid": account.owner.uuid },
            "role": { "name": account.role },
            "scope": scope,
            "locked": locked,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    name: String,
    #[serde(default)]
    owner: Option<Owner>,
    password: String,
    #[serde(default)]
    password_hash_algorithm: Option<String>,
}

#[derive(Deserialize)]
struct Owner {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
}

/// `POST /api/security/authentication/password`: a cluster admin changes any account's
/// password, any account its own.
fn change_password(model: &mut Model, caller: usize, body: &[u8]) -> Resp {
    let body: PasswordBody = match serde_json::from_slice(body) {
        Ok(body) => body,
        // serde's message would quote the body, i.e. the password.
        Err(_) => return bad_request("the body must be {name, owner?, password}"),
    };
    if let Some(algorithm) = body.password_hash_algorithm.as_deref()
        && !matches!(algorithm, "sha512" | "sha256")
    {
        let message = "password_hash_algorithm must be sha512 or sha256";
        return error(
            StatusCode::BAD_REQUEST,
            "262179",
            message,
            Some("password_hash_algorithm"),
            &[],
        );
    }
    let target = match &body.owner {
        Some(owner) => model
            .owner(owner.name.as_deref(), owner.uuid.as_deref())
            .map(|svm| model.find(&svm.uuid, &body.name)),
        // Without an owner: the caller itself, or else a cluster-scoped account.
        None if model.accounts[caller].name == body.name => Some(Some(caller)),
        None => Some(model.find(&model.cluster.uuid, &body.name)),
    };
    if !model.accounts[caller].is_cluster_admin() && target != Some(Some(caller)) {
        return forbidden();
    }
    let index = match target {
        None => return not_found("owner"),
        Some(None) => return not_found("name"),
        Some(Some(index)) => index,
    };
    if let Err(refused) = model.check(index, &body.password) {
        return error(
            StatusCode::BAD_REQUEST,
            refused.code,
            &refused.message,
            Some("password"),
            &refused.arguments,
        );
    }
    model.set_password(index, &body.password);
    let account = &model.accounts[index];
    let location = format!("{ACCOUNTS}{}/{}", account.owner.uuid, account.name);
    let mut response = json(StatusCode::CREATED, &json!({}));
    if let Ok(location) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
