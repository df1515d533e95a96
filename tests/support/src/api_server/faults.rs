//! Fault injection and the request log around the /v1 endpoints.
use std::{io, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use serde::{Deserialize, Serialize};

use super::{Inner, routes};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with a JSON error body; nothing is applied.
    Status,
    /// Wait `millis`, then handle the request. The handling runs to completion even when the
    /// client gave up meanwhile: a timed-out request may still have been applied.
    Delay,
    /// Close the connection without a response; nothing is applied.
    Drop,
    /// Handle the request fully, then close the connection without a response.
    DropAfterApply,
}

/// Applies to the next `count` /v1 requests matching `method` and `path_prefix` (when given).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRule {
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    /// For `status`; 503 when absent.
    #[serde(default)]
    pub status: Option<u16>,
    /// For `delay`.
    #[serde(default)]
    pub millis: Option<u64>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    fn new(kind: FaultKind, count: u32) -> Self {
        FaultRule {
            kind,
            count,
            status: None,
            millis: None,
            method: None,
            path_prefix: None,
        }
    }

    pub fn status(status: u16, count: u32) -> Self {
        FaultRule {
            status: Some(status),
            ..Self::new(FaultKind::Status, count)
        }
    }

    pub fn delay(millis: u64, count: u32) -> Self {
        FaultRule {
            millis: Some(millis),
            ..Self::new(FaultKind::Delay, count)
        }
    }

    pub fn drop(count: u32) -> Self {
        Self::new(FaultKind::Drop, count)
    }

    pub fn drop_after_apply(count: u32) -> Self {
        Self::new(FaultKind::DropAfterApply, count)
    }

    /// Restricts the rule to requests with this method and a path starting with `path_prefix`.
    pub fn on(self, method: &str, path_prefix: &str) -> Self {
        FaultRule {
            method: Some(method.to_owned()),
            path_prefix: Some(path_prefix.to_owned()),
            ..self
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.count > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// One /v1 request as the server saw it: no bodies, no passwords.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// `None` when the connection was dropped instead of answering.
    pub status: Option<u16>,
    pub dropped: bool,
    /// The Basic-auth login (user name part only).
    pub login: Option<String>,
    pub fault: Option<FaultKind>,
}

impl Inner {
    fn take_fault(&self, method: &Method, path: &str) -> Option<FaultRule> {
        let mut faults = self.faults.lock().unwrap();
        let index = faults.iter().position(|rule| rule.matches(method, path))?;
        faults[index].count -= 1;
        let rule = faults[index].clone();
        if rule.count == 0 {
            faults.remove(index);
        }
        Some(rule)
    }
}

pub(super) fn basic_auth(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (login, password) = decoded.split_once(':')?;
    Some((login.to_owned(), password.to_owned()))
}

pub(super) async fn serve_v1(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, io::Error> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let fault = inner.take_fault(&parts.method, &path);
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        status: None,
        dropped: false,
        login: basic_auth(&parts.headers).map(|(login, _)| login),
        fault: fault.as_ref().map(|f| f.kind),
    };
    let log = |record: RequestRecord| {
        let RequestRecord {
            method,
            path,
            status,
            login,
            fault,
            ..
        } = &record;
        tracing::info!(method, path, status, login, ?fault, "request");
        inner.requests.lock().unwrap().push(record);
    };
    let dropped = || io::Error::other("connection dropped by fault injection");

    match fault.as_ref().map(|f| f.kind) {
        Some(FaultKind::Status) => {
            let status = fault.and_then(|f| f.status).unwrap_or(503);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            record.status = Some(status.as_u16());
            log(record);
            return Ok(routes::error(
                status,
                "injected_fault",
                "fault injected by the test server",
            ));
        }
        Some(FaultKind::Drop) => {
            record.dropped = true;
            log(record);
            return Err(dropped());
        }
        _ => {}
    }

    let body = Limited::new(body, 1 << 20)
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    let delay = fault
        .as_ref()
        .filter(|f| f.kind == FaultKind::Delay)
        .and_then(|f| f.millis);
    // A task of its own, so that a client that hangs up does not cancel a change half-way.
    let handler = inner.clone();
    let response = tokio::spawn(async move {
        if let Some(millis) = delay {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        routes::handle(&handler, &parts.method, &path, &parts.headers, &body).await
    })
    .await
    .map_err(io::Error::other)?;

    if record.fault == Some(FaultKind::DropAfterApply) {
        record.dropped = true;
        log(record);
        return Err(dropped());
    }
    record.status = Some(response.status().as_u16());
    log(record);
    Ok(response)
}
