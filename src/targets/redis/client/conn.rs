//! One authenticated connection to one node, plain or TLS; every step has a timeout.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::AclError;
use super::resp::{self, MAX_REPLY_BYTES, Value};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Whether a command carries a password: the error reply of one is never kept, since Redis
/// may echo the offending argument in it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Secret {
    Carried,
    Absent,
}

pub(super) struct Conn {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
    node: String,
    timeout: Duration,
}

impl Conn {
    /// Connects to `node` (host:port) and logs in as the admin.
    pub(super) async fn open(
        node: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        username: &str,
        password: &SecretString,
        after: Duration,
    ) -> Result<Conn, AclError> {
        let connecting = timeout(after, TcpStream::connect(node)).await;
        let tcp = connecting
            .map_err(|_| AclError::Timeout {
                node: node.to_owned(),
                operation: "connect".into(),
                after,
            })?
            .map_err(|e| AclError::Connection {
                node: node.to_owned(),
                detail: e.to_string(),
            })?;
        // Admin replies are small and latency matters more than throughput.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(config) => Box::new(handshake(node, tcp, config, after).await?),
        };
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            node: node.to_owned(),
            timeout: after,
        };
        let login = [
            b"AUTH".as_slice(),
            username.as_bytes(),
            password.expose_secret().as_bytes(),
        ];
        match conn.call(&login, Secret::Carried).await {
            Ok(_) => Ok(conn),
            Err(AclError::Server { node, code, .. }) => Err(AclError::AdminRefused { node, code }),
            Err(e) => Err(e),
        }
    }

    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// Sends one command and reads its reply; an error reply becomes [`AclError::Server`].
    pub(super) async fn call(&mut self, args: &[&[u8]], secret: Secret) -> Result<Value, AclError> {
        let command = label(args);
        let after = self.timeout;
        let exchange = async {
            self.stream.write_all(&resp::encode(args)).await?;
            self.stream.flush().await?;
            self.read_reply().await
        };
        let reply = timeout(after, exchange)
            .await
            .map_err(|_| AclError::Timeout {
                node: self.node.clone(),
                operation: command.clone(),
                after,
            })?
            .map_err(|e| match e {
                ReadError::Io(e) => AclError::Connection {
                    node: self.node.clone(),
                    detail: e.to_string(),
                },
                ReadError::Malformed(e) => AclError::Protocol {
                    node: self.node.clone(),
                    command: command.clone(),
                    detail: e.to_string(),
                },
            })?;
        match reply {
            Value::Error(text) => {
                let code = text.split_whitespace().next().unwrap_or("ERR").to_owned();
                let message = match secret {
                    Secret::Carried => None,
                    Secret::Absent => Some(bounded(&text, 200)),
                };
                Err(AclError::Server {
                    node: self.node.clone(),
                    command,
                    code,
                    message,
                })
            }
            reply => Ok(reply),
        }
    }

    async fn read_reply(&mut self) -> Result<Value, ReadError> {
        loop {
            if let Some((value, used)) = resp::parse(&self.buf).map_err(ReadError::Malformed)? {
                self.buf.drain(..used);
                return Ok(value);
            }
            if self.buf.len() > MAX_REPLY_BYTES {
                return Err(ReadError::Malformed(resp::Malformed("reply too large")));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Malformed(resp::Malformed),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

async fn handshake(
    node: &str,
    tcp: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    after: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, AclError> {
    let host = host_of(node);
    // The verifier checks `tls.serverName` when set; this name only goes into SNI.
    let name = ServerName::try_from(host.to_owned()).map_err(|_| AclError::Connection {
        node: node.to_owned(),
        detail: format!("{host:?} is not a valid TLS server name"),
    })?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    timeout(after, connector.connect(name, tcp))
        .await
        .map_err(|_| AclError::Timeout {
            node: node.to_owned(),
            operation: "TLS handshake".into(),
            after,
        })?
        .map_err(|e| match crate::tls::untrusted_certificate_in(&e) {
            Some(untrusted) => AclError::TlsUntrusted {
                node: node.to_owned(),
                detail: untrusted.detail.clone(),
            },
            None => AclError::Connection {
                node: node.to_owned(),
                detail: format!("TLS handshake: {e}"),
            },
        })
}

/// The host of `host:port` or `[v6]:port`, without brackets.
fn host_of(node: &str) -> &str {
    let host = node.rsplit_once(':').map_or(node, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The command's name for errors: its first word, and the subcommand of container commands.
/// Neither is ever a password.
fn label(args: &[&[u8]]) -> String {
    let word = |i: usize| String::from_utf8_lossy(args.get(i).copied().unwrap_or_default());
    let first = word(0).to_ascii_uppercase();
    if matches!(first.as_str(), "ACL" | "CONFIG" | "CLUSTER") {
        format!("{first} {}", word(1).to_ascii_uppercase())
    } else {
        first
    }
}

pub(super) fn bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("10.0.0.1:6379"), "10.0.0.1");
        assert_eq!(host_of("[::1]:6379"), "::1");
        assert_eq!(host_of("redis.example:6380"), "redis.example");
    }

    #[test]
    fn labels_never_include_arguments() {
        assert_eq!(label(&[b"acl", b"setuser", b"u", b">pw"]), "ACL SETUSER");
        assert_eq!(label(&[b"AUTH", b"admin", b"pw"]), "AUTH");
        assert_eq!(label(&[b"INFO", b"server"]), "INFO");
    }
}

#[cfg(test)]
mod server_tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    const PASSWORD: &str = "s3cret-Known-Password";

    /// A server that answers each command with the next of `replies`, echoing the password the
    /// way `ACL SETUSER` echoes a bad modifier.
    async fn server(replies: &'static [&'static str]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            for reply in replies {
                // Skip one command: its `*n` header and n bulk strings of two lines each.
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                let args: usize = line.trim_start_matches('*').trim().parse().unwrap();
                for _ in 0..args * 2 {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                }
                stream.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    async fn open(addr: &str) -> Result<Conn, AclError> {
        let password = SecretString::from(PASSWORD);
        Conn::open(addr, None, "admin", &password, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn error_replies_to_commands_with_a_password_are_reduced_to_their_code() {
        let addr = server(&[
            "+OK\r\n",
            "-ERR Error in ACL SETUSER modifier '>s3cret-Known-Password': bad\r\n",
            "-ERR unknown subcommand 'x'\r\n",
        ])
        .await;
        let mut conn = open(&addr).await.unwrap();
        let args = [
            b"ACL".as_slice(),
            b"SETUSER",
            b"u",
            b">s3cret-Known-Password",
        ];
        let error = conn.call(&args, Secret::Carried).await.unwrap_err();
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(text.contains("ACL SETUSER"), "{text}");
        }
        let error = conn
            .call(&[b"ACL", b"X"], Secret::Absent)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("unknown subcommand"), "{error}");
    }

    #[tokio::test]
    async fn a_refused_login_keeps_only_the_code() {
        let addr = server(&["-WRONGPASS s3cret-Known-Password is wrong\r\n"]).await;
        let error = open(&addr).await.err().unwrap();
        assert!(
            matches!(&error, AclError::AdminRefused { code, .. } if code == "WRONGPASS"),
            "{error:?}"
        );
        assert!(!format!("{error:?}").contains(PASSWORD));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let password = SecretString::from(PASSWORD);
        let opened = Conn::open(&addr, None, "admin", &password, Duration::from_millis(200));
        let error = opened.await.err().unwrap();
        assert!(matches!(error, AclError::Timeout { .. }), "{error:?}");
        drop(listener);
    }
}
