//! Proof that a new password works before it is published: a Redis `AUTH` on the endpoint
//! the workloads use.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `AUTH [user] password` to `endpoint` (host:port) and succeeds on `+OK`.
pub async fn redis_auth(endpoint: &str, user: Option<&str>, password: &SecretString) -> Result<()> {
    let fail = |detail: String| Error::Verify {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let mut args = vec!["AUTH".as_bytes()];
    if let Some(user) = user {
        args.push(user.as_bytes());
    }
    args.push(password.expose_secret().as_bytes());
    let mut command = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        command.extend_from_slice(arg);
        command.extend_from_slice(b"\r\n");
    }
    let exchange = async {
        let mut stream = TcpStream::connect(endpoint).await?;
        stream.write_all(&command).await?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if reply.starts_with("+OK") {
        Ok(())
    } else {
        // The reply of a refused AUTH never echoes the password, but keep only its first word.
        let word = reply.split_whitespace().next().unwrap_or("no reply");
        Err(fail(format!(
            "AUTH refused ({})",
            word.trim_start_matches('-')
        )))
    }
}
