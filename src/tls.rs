//! TLS of the Redis Software client: `caSecret` is a PEM bundle whose certificates are both
//! trust anchors (a CA that signs the cluster's certificate) and pinned certificates (the
//! cluster's own certificate, byte for byte). Pinning is what makes the default self-signed
//! `api` certificate work: it is usually CA:TRUE, which WebPKI refuses as a server certificate,
//! while curl and Go accept it when it is the trusted certificate itself.
//!
//! A refused certificate is described (subject, issuer, SANs, fingerprint, validity, reason) in
//! an [`UntrustedCertificate`] that travels inside the handshake error; find it again with
//! [`untrusted_certificate_in`].

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The description of a refused certificate stays well below the 1 KiB a Kubernetes event
/// message may hold, with room for the sentence around it.
const MAX_DETAIL_CHARS: usize = 600;
const MAX_NAME_CHARS: usize = 80;
const MAX_SANS_CHARS: usize = 120;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("caSecret is not a PEM bundle: {0}")]
    NotPem(String),
    #[error("caSecret holds no PEM certificate")]
    NoCertificate,
    #[error("tls.serverName {0:?} is neither a DNS name nor an IP address")]
    InvalidServerName(String),
    #[error("building the TLS configuration: {0}")]
    Rustls(String),
}

/// The `notAfter` of the certificate a server last presented and was trusted with, shared by
/// the clones of a client: what a target's status shows.
#[derive(Clone, Debug, Default)]
pub struct PresentedCertificate(Arc<Mutex<Option<jiff::Timestamp>>>);

impl PresentedCertificate {
    pub fn not_after(&self) -> Option<jiff::Timestamp> {
        *self.0.lock().expect("not poisoned")
    }

    fn trusted(&self, der: &CertificateDer<'_>) {
        let not_after = X509Certificate::from_der(der.as_ref())
            .ok()
            .and_then(|(_, cert)| {
                jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
            });
        *self.0.lock().expect("not poisoned") = not_after;
    }
}

/// A client configuration that trusts exactly what `ca_pem` holds, and checks the server's
/// certificate against `server_name` when given (otherwise against the host connected to). The
/// certificate it trusts last is kept in `presented`.
pub fn client_config(
    ca_pem: &[u8],
    server_name: Option<&str>,
    presented: PresentedCertificate,
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut verifier = PinningVerifier::new(ca_pem, server_name, &provider)?;
    verifier.presented = presented;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest sets on the configurations it builds itself.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a server certificate was refused, and what the server presented.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct UntrustedCertificate {
    pub detail: String,
}

/// The [`UntrustedCertificate`] somewhere in `error`'s chain of causes, e.g. of a failed request.
pub fn untrusted_certificate_in<'a>(
    error: &'a (dyn StdError + 'static),
) -> Option<&'a UntrustedCertificate> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<UntrustedCertificate>() {
            return Some(found);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            e.downcast_ref::<rustls::Error>()
        {
            return inner.downcast_ref::<UntrustedCertificate>();
        }
        // `io::Error::source` skips the error it wraps, and tokio-rustls reports a failed
        // handshake as an io::Error wrapping the rustls::Error.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            return untrusted_certificate_in(inner);
        }
        next = e.source();
    }
    None
}

#[derive(Debug)]
struct PinningVerifier {
    pinned: Vec<CertificateDer<'static>>,
    /// Verifies chains to the bundle's certificates as roots; `None` when none of them can be
    /// a trust anchor.
    signed_by_bundle: Option<Arc<WebPkiServerVerifier>>,
    /// Checked instead of the host connected to.
    server_name: Option<ServerName<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    presented: PresentedCertificate,
}

impl PinningVerifier {
    fn new(
        ca_pem: &[u8],
        server_name: Option<&str>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsConfigError> {
        let pinned = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::NotPem(e.to_string()))?;
        if pinned.is_empty() {
            return Err(TlsConfigError::NoCertificate);
        }
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(pinned.iter().cloned());
        let signed_by_bundle = if roots.is_empty() {
            None
        } else {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
            Some(verifier)
        };
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|_| TlsConfigError::InvalidServerName(name.to_owned()))
            })
            .transpose()?;
        Ok(Self {
            pinned,
            signed_by_bundle,
            server_name,
            algorithms: provider.signature_verification_algorithms,
            presented: PresentedCertificate::default(),
        })
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        connected_to: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.server_name.as_ref().unwrap_or(connected_to);
        let refusal = if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            match check_pinned(end_entity, name, now) {
                Ok(()) => {
                    self.presented.trusted(end_entity);
                    return Ok(ServerCertVerified::assertion());
                }
                Err(refusal) => refusal,
            }
        } else {
            let Some(verifier) = &self.signed_by_bundle else {
                return Err(untrusted(end_entity, Refusal::NotTrusted));
            };
            match verifier.verify_server_cert(end_entity, intermediates, name, ocsp_response, now) {
                Ok(verified) => {
                    self.presented.trusted(end_entity);
                    return Ok(verified);
                }
                Err(e) => Refusal::from_webpki(e, name),
            }
        };
        Err(untrusted(end_entity, refusal))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A pinned certificate is trusted as it is (whoever issued it, CA:TRUE or not), but must
/// still be valid now and for the name.
fn check_pinned(
    der: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), Refusal> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| Refusal::Other(format!("unparsable certificate: {e}")))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(Refusal::NotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(Refusal::Expired);
    }
    webpki::EndEntityCert::try_from(der)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(name))
        .map_err(|_| Refusal::NotValidForName(name.to_str().into_owned()))
}

enum Refusal {
    NotTrusted,
    CaNotPinned,
    NotValidForName(String),
    Expired,
    NotYetValid,
    Other(String),
}

impl Refusal {
    fn from_webpki(error: rustls::Error, name: &ServerName<'_>) -> Self {
        let rustls::Error::InvalidCertificate(error) = error else {
            return Self::Other(error.to_string());
        };
        match error {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Self::NotTrusted,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Self::NotValidForName(name.to_str().into_owned())
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Self::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Self::NotYetValid
            }
            CertificateError::Other(OtherError(cause))
                if matches!(
                    cause.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                Self::CaNotPinned
            }
            other => Self::Other(other.to_string()),
        }
    }

    fn reason(&self) -> String {
        match self {
            Self::NotTrusted => "not signed by caSecret and not pinned in it".into(),
            Self::CaNotPinned => "a CA certificate (CA:TRUE) that is not pinned in caSecret".into(),
            Self::NotValidForName(name) => {
                format!("not valid for name {}", bounded(name, MAX_NAME_CHARS))
            }
            Self::Expired => "expired".into(),
            Self::NotYetValid => "not yet valid".into(),
            Self::Other(text) => bounded(text, MAX_NAME_CHARS),
        }
    }
}

fn untrusted(der: &CertificateDer<'_>, refusal: Refusal) -> rustls::Error {
    let detail = bounded(
        &format!(
            "{}; the server presented {}",
            refusal.reason(),
            describe(der)
        ),
        MAX_DETAIL_CHARS,
    );
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        UntrustedCertificate { detail },
    ))))
}

/// Subject, issuer, SANs, SHA-256 fingerprint and validity of a certificate.
fn describe(der: &CertificateDer<'_>) -> String {
    let fingerprint = fingerprint(der.as_ref());
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return format!("an unparsable certificate, SHA-256 {fingerprint}");
    };
    let validity = cert.validity();
    format!(
        "subject {:?}, issuer {:?}, SANs [{}], SHA-256 {fingerprint}, valid {} to {}",
        bounded(&cert.subject().to_string(), MAX_NAME_CHARS),
        bounded(&cert.issuer().to_string(), MAX_NAME_CHARS),
        bounded(&subject_alternative_names(&cert), MAX_SANS_CHARS),
        rfc3339(validity.not_before.timestamp()),
        rfc3339(validity.not_after.timestamp()),
    )
}

/// The DNS names and IP addresses, as openssl shows them: `DNS:a, IP:127.0.0.1`.
fn subject_alternative_names(cert: &X509Certificate<'_>) -> String {
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return String::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
            GeneralName::IPAddress(bytes) => ip_address(bytes).map(|ip| format!("IP:{ip}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Upper-case hex bytes joined by colons, as `openssl x509 -fingerprint -sha256` prints them.
pub fn fingerprint(der: &[u8]) -> String {
    let mut text = String::with_capacity(32 * 3);
    for (i, byte) in Sha256::digest(der).iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        write!(text, "{byte:02X}").expect("writing to a String");
    }
    text
}

fn rfc3339(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .map_or_else(|_| format!("@{unix_seconds}"), |t| t.to_string())
}

fn bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rotator_test_support::certs;

    use super::*;

    const YEAR: u64 = 365 * 24 * 3600;

    fn verifier(bundle: &str, server_name: Option<&str>) -> PinningVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        PinningVerifier::new(bundle.as_bytes(), server_name, &provider).unwrap()
    }

    /// Verifies `cert_pem` as presented by `host`, `years` from now; the refusal's detail.
    fn verify_in(
        v: &PinningVerifier,
        cert_pem: &str,
        host: &str,
        years: i64,
    ) -> Result<(), String> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let shift = Duration::from_secs(years.unsigned_abs() * YEAR);
        let now = UnixTime::now().as_secs();
        let now = Duration::from_secs(now);
        let at = if years < 0 { now - shift } else { now + shift };
        v.verify_server_cert(&cert, &[], &name, &[], UnixTime::since_unix_epoch(at))
            .map(drop)
            .map_err(|e| {
                untrusted_certificate_in(&e)
                    .expect("described")
                    .detail
                    .clone()
            })
    }

    fn verify(v: &PinningVerifier, cert_pem: &str, host: &str) -> Result<(), String> {
        verify_in(v, cert_pem, host, 0)
    }

    fn refused_because(result: Result<(), String>, reason: &str) {
        let detail = result.expect_err(reason);
        assert!(detail.starts_with(&format!("{reason}; ")), "{detail}");
    }

    #[test]
    fn a_pinned_self_signed_ca_certificate_is_accepted_for_its_names_only() {
        let sans = ["DNS:rs.example.internal", "IP:10.0.0.1"];
        let pem = certs::self_signed("rs.example.internal", &sans)
            .unwrap()
            .cert_pem;
        let pinned = verifier(&pem, None);
        assert_eq!(verify(&pinned, &pem, "rs.example.internal"), Ok(()));
        assert_eq!(verify(&pinned, &pem, "10.0.0.1"), Ok(()));
        refused_because(
            verify(&pinned, &pem, "10.0.0.2"),
            "not valid for name 10.0.0.2",
        );
        refused_because(verify_in(&pinned, &pem, "10.0.0.1", 2), "expired");
        refused_because(verify_in(&pinned, &pem, "10.0.0.1", -1), "not yet valid");

        let by_name = verifier(&pem, Some("rs.example.internal"));
        assert_eq!(verify(&by_name, &pem, "10.0.0.2"), Ok(()));
        let by_other_name = verifier(&pem, Some("other.example.internal"));
        refused_because(
            verify(&by_other_name, &pem, "rs.example.internal"),
            "not valid for name other.example.internal",
        );
    }

    #[test]
    fn a_ca_signed_certificate_is_verified_against_the_bundle() {
        let sans = ["DNS:localhost", "IP:127.0.0.1"];
        let (ca, server) = certs::ca_signed("localhost", &sans).unwrap();
        let signed = verifier(&ca, None);
        assert_eq!(verify(&signed, &server.cert_pem, "localhost"), Ok(()));
        assert_eq!(verify(&signed, &server.cert_pem, "127.0.0.1"), Ok(()));
        refused_because(
            verify(&signed, &server.cert_pem, "10.0.0.2"),
            "not valid for name 10.0.0.2",
        );
        refused_because(
            verify_in(&signed, &server.cert_pem, "localhost", 2),
            "expired",
        );
        let by_name = verifier(&ca, Some("localhost"));
        assert_eq!(verify(&by_name, &server.cert_pem, "10.0.0.2"), Ok(()));
    }

    #[test]
    fn an_untrusted_certificate_is_described() {
        let sans = ["DNS:rs.example.internal", "IP:10.0.0.1"];
        let (_, server) = certs::ca_signed("rs.example.internal", &sans).unwrap();
        let other = certs::self_signed("other", &["DNS:other"])
            .unwrap()
            .cert_pem;
        let v = verifier(&other, None);
        let detail = verify(&v, &server.cert_pem, "rs.example.internal").unwrap_err();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        let fingerprint = fingerprint(&der);
        assert_eq!(fingerprint.len(), 32 * 3 - 1);
        for part in [
            "not signed by caSecret and not pinned in it; the server presented ",
            "subject \"CN=rs.example.internal\", issuer \"CN=openssl test CA\", ",
            "SANs [DNS:rs.example.internal, IP:10.0.0.1], ",
            &format!("SHA-256 {fingerprint}, valid 20"),
        ] {
            assert!(detail.contains(part), "{part:?} not in {detail}");
        }

        // Another self-signed certificate is CA:TRUE too, and is not pinned.
        let unpinned = certs::self_signed("rs", &["DNS:rs"]).unwrap().cert_pem;
        refused_because(
            verify(&v, &unpinned, "rs"),
            "a CA certificate (CA:TRUE) that is not pinned in caSecret",
        );
    }

    #[test]
    fn descriptions_are_bounded() {
        let label = "y".repeat(60);
        let names: Vec<String> = (0..40)
            .map(|i| format!("DNS:{i}.{label}.example"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let cert = certs::self_signed(&label, &names).unwrap().cert_pem;
        let v = verifier(&cert, None);
        let host = format!("{label}.{label}.{label}.example");
        let detail = verify(&v, &cert, &host).unwrap_err();
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS + 1, "{detail}");
        assert!(detail.contains("SHA-256 "), "{detail}");
    }

    #[test]
    fn bad_bundles_are_refused() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let new = |pem: &str, name| PinningVerifier::new(pem.as_bytes(), name, &provider).map(drop);
        assert!(matches!(new("", None), Err(TlsConfigError::NoCertificate)));
        assert!(matches!(
            new("not a pem", None),
            Err(TlsConfigError::NoCertificate)
        ));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(new(broken, None), Err(TlsConfigError::NotPem(_))));
        let pem = certs::self_signed("a", &["DNS:a.example"])
            .unwrap()
            .cert_pem;
        assert!(matches!(
            new(&pem, Some("not a name!")),
            Err(TlsConfigError::InvalidServerName(_))
        ));
    }
}
