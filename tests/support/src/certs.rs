//! Certificates made by the real `openssl` binary, the way users and Redis Software make them:
//! `openssl req -x509` marks a self-signed certificate CA:TRUE, which is what the cluster's
//! default `api` certificate looks like.
use std::{path::Path, process::Command};

use anyhow::{Context, bail};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=<cn>
/// -addext subjectAltName=<sans>`, with `sans` such as `["DNS:localhost", "IP:127.0.0.1"]`.
pub fn self_signed(cn: &str, sans: &[&str]) -> anyhow::Result<CertifiedKey> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    openssl(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
            ])
            .args(["-subj", &format!("/CN={cn}")])
            .args(san_args(sans))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    read_pair(&cert, &key)
}

/// A CA made by `openssl req -x509`, and a server certificate for `cn` and `sans` that it
/// signs with `openssl x509 -req` (CA:FALSE, serverAuth). Returns the CA's PEM and the server's
/// certificate and key.
pub fn ca_signed(cn: &str, sans: &[&str]) -> anyhow::Result<(String, CertifiedKey)> {
    let dir = tempfile::tempdir()?;
    let path = |name: &str| dir.path().join(name);
    openssl(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
            ])
            .args(["-subj", "/CN=openssl test CA"])
            .arg("-keyout")
            .arg(path("ca-key.pem"))
            .arg("-out")
            .arg(path("ca.pem")),
    )?;
    openssl(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(path("key.pem"))
            .arg("-out")
            .arg(path("server.csr")),
    )?;
    let mut extensions = "basicConstraints=critical,CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=serverAuth\n"
        .to_owned();
    if !sans.is_empty() {
        extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    std::fs::write(path("server.ext"), extensions)?;
    openssl(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "365", "-set_serial", "2"])
            .arg("-in")
            .arg(path("server.csr"))
            .arg("-CA")
            .arg(path("ca.pem"))
            .arg("-CAkey")
            .arg(path("ca-key.pem"))
            .arg("-extfile")
            .arg(path("server.ext"))
            .arg("-out")
            .arg(path("cert.pem")),
    )?;
    let ca_pem = std::fs::read_to_string(path("ca.pem"))?;
    Ok((ca_pem, read_pair(&path("cert.pem"), &path("key.pem"))?))
}

/// `openssl x509 -noout -text` of a PEM certificate.
pub fn text(cert_pem: &str) -> anyhow::Result<String> {
    x509(cert_pem, &["-text"])
}

/// The SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it
/// (`AB:CD:...`).
pub fn sha256_fingerprint(cert_pem: &str) -> anyhow::Result<String> {
    let out = x509(cert_pem, &["-fingerprint", "-sha256"])?;
    let (_, fingerprint) = out
        .trim()
        .split_once('=')
        .with_context(|| format!("unexpected openssl output {out:?}"))?;
    Ok(fingerprint.to_owned())
}

/// `openssl x509 -noout <args>` of a PEM certificate.
fn x509(cert_pem: &str, args: &[&str]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, cert_pem)?;
    openssl(
        Command::new("openssl")
            .args(["x509", "-noout"])
            .args(args)
            .arg("-in")
            .arg(&cert),
    )
}

fn san_args(sans: &[&str]) -> Vec<String> {
    if sans.is_empty() {
        Vec::new()
    } else {
        vec![
            "-addext".into(),
            format!("subjectAltName={}", sans.join(",")),
        ]
    }
}

/// Runs the command; its stdout, or an error with its stderr.
fn openssl(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .context("running openssl: not installed? `make deps` installs it")?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    Ok(CertifiedKey {
        cert_pem: std::fs::read_to_string(cert)?,
        key_pem: std::fs::read_to_string(key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_are_ca_true_like_redis_softwares() {
        let made = self_signed(
            "rs.example.internal",
            &["DNS:rs.example.internal", "IP:127.0.0.1"],
        )
        .unwrap();
        assert!(made.key_pem.contains("PRIVATE KEY"));
        let text = text(&made.cert_pem).unwrap();
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(
            text.contains("DNS:rs.example.internal, IP Address:127.0.0.1"),
            "{text}"
        );
    }

    #[test]
    fn ca_signed_server_certificates_are_ca_false() {
        let (ca_pem, server) = ca_signed("localhost", &["DNS:localhost", "IP:127.0.0.1"]).unwrap();
        assert!(text(&ca_pem).unwrap().contains("CA:TRUE"));
        let text = text(&server.cert_pem).unwrap();
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("Issuer: CN = openssl test CA"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
    }
}
