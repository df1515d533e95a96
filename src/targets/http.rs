//! What the clients of REST targets share: an HTTP client that trusts exactly the CA or pinned
//! certificate it is given, and error texts that can never carry a password.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::tls;

const REDACTED: &str = "[redacted]";
/// Server messages in errors are cut after this many characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// How a target's REST API is reached.
pub struct Endpoint<'a> {
    pub url: &'a Url,
    /// What the server's certificate must be signed by or pinned as (PEM); required for https.
    pub ca_pem: Option<&'a [u8]>,
    /// The name the certificate must be valid for, instead of the URL's host.
    pub server_name: Option<&'a str>,
    pub insecure_http: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Where the certificate the server presents is kept.
    pub presented: tls::PresentedCertificate,
}

/// A client for `endpoint`: https verified against exactly `ca_pem` (nothing built in), no
/// redirects, http only when allowed. The error says what is wrong with the configuration.
pub fn client(endpoint: &Endpoint<'_>) -> Result<reqwest::Client, String> {
    let url = endpoint.url;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not contain credentials".into());
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(endpoint.connect_timeout)
        .timeout(endpoint.request_timeout);
    match url.scheme() {
        "https" => {
            let pem = endpoint.ca_pem.ok_or(
                "caSecret is required: the cluster's certificate is self-signed by default and \
                 TLS is always verified",
            )?;
            let tls = tls::client_config(pem, endpoint.server_name, endpoint.presented.clone())
                .map_err(|e| e.to_string())?;
            builder = builder.https_only(true).use_preconfigured_tls(tls);
        }
        "http" if endpoint.insecure_http => {}
        "http" => return Err("url uses http: refused unless insecureHttp is true".into()),
        other => return Err(format!("url scheme {other:?} is not http(s)")),
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// Why a request got no answer.
pub enum TransportFailure {
    Timeout,
    /// `detail` says why the certificate was refused and what the server presented.
    TlsUntrusted(String),
    /// Refused, reset, TLS failures, connections closed before a complete response; scrubbed.
    Connect(String),
}

pub fn transport_failure<'a>(
    error: &reqwest::Error,
    secrets: impl IntoIterator<Item = &'a SecretString>,
) -> TransportFailure {
    if error.is_timeout() {
        return TransportFailure::Timeout;
    }
    if let Some(untrusted) = tls::untrusted_certificate_in(error) {
        return TransportFailure::TlsUntrusted(untrusted.detail.clone());
    }
    // The whole source chain: reqwest's own Display hides the cause (e.g. a TLS failure).
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    TransportFailure::Connect(scrub(&detail, secrets))
}

/// Replaces each password, as sent and as JSON escapes it, by `[redacted]`.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a SecretString>) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        let secret = secret.expose_secret();
        if secret.is_empty() {
            continue;
        }
        let escaped = serde_json::to_string(secret).expect("strings serialize");
        let escaped = &escaped[1..escaped.len() - 1];
        text = text.replace(secret, REDACTED).replace(escaped, REDACTED);
    }
    text
}

/// What a server said, scrubbed first and then truncated, so that no prefix of a password
/// can survive a cut.
pub fn server_text<'a>(text: &str, secrets: impl IntoIterator<Item = &'a SecretString>) -> String {
    let mut text = scrub(text, secrets);
    if let Some((i, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(i);
        text.push('…');
    }
    text
}

/// `prefix` and the value, or nothing: for optional parts of error messages.
pub fn opt(prefix: &str, value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!("{prefix}{v}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_as_sent_and_as_json_escapes_them_then_cut() {
        let pw = SecretString::from("Sup3r-\"Secret\"_pw");
        let text = format!(
            "{} and {}",
            "Sup3r-\"Secret\"_pw",
            serde_json::to_string("Sup3r-\"Secret\"_pw").unwrap()
        );
        assert_eq!(scrub(&text, [&pw]), "[redacted] and \"[redacted]\"");
        let long = format!("{}Sup3r-\"Secret\"_pw", "x".repeat(195));
        let cut = server_text(&long, [&pw]);
        assert!(!cut.contains("Sup3r"), "{cut}");
        assert!(cut.ends_with('…'));
    }
}
