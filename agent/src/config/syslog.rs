//! `[[sources.syslog]]`: syslog received over UDP, TCP, TLS (RFC 5425) or a
//! Unix datagram socket.

use super::Size;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSourceConfig {
    /// The source name recorded with every message (1–255 bytes, unique).
    pub name: String,
    /// `udp://ADDR:PORT`, `tcp://ADDR:PORT`, `tls://ADDR:PORT` or
    /// `unix:/PATH` (a datagram socket for local senders).
    pub listen: String,
    /// `tls://`: the server's certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `tls://`: require client certificates signed by this CA (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// Longer messages are kept in parts that say so.
    #[serde(default = "d_max_message")]
    pub max_message_bytes: Size,
    /// `tcp://` and `tls://`: connections served at once; more wait.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// `udp://` and `unix:`: the socket's receive buffer (SO_RCVBUF).
    #[serde(default = "d_receive_buffer")]
    pub receive_buffer: Size,
    /// `unix:`: the socket file's mode, octal.
    #[serde(default = "d_socket_mode")]
    pub socket_mode: String,
}

fn d_max_message() -> Size {
    Size(64 << 10)
}
fn d_max_connections() -> usize {
    256
}
fn d_receive_buffer() -> Size {
    Size(4 << 20)
}
fn d_socket_mode() -> String {
    "0666".into()
}

/// Where a syslog source listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Tls(SocketAddr),
    Unix(PathBuf),
}

impl SyslogSourceConfig {
    pub fn listen(&self) -> Result<Listen, String> {
        let addr = |rest: &str| {
            rest.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "listen {:?}: {e} (write ADDRESS:PORT, e.g. 0.0.0.0:514)",
                    self.listen
                )
            })
        };
        if let Some(rest) = self.listen.strip_prefix("udp://") {
            Ok(Listen::Udp(addr(rest)?))
        } else if let Some(rest) = self.listen.strip_prefix("tcp://") {
            Ok(Listen::Tcp(addr(rest)?))
        } else if let Some(rest) = self.listen.strip_prefix("tls://") {
            Ok(Listen::Tls(addr(rest)?))
        } else if let Some(rest) = self.listen.strip_prefix("unix:") {
            let p = PathBuf::from(rest);
            if !p.is_absolute() {
                return Err(format!(
                    "listen {:?}: the socket path must be absolute",
                    self.listen
                ));
            }
            Ok(Listen::Unix(p))
        } else {
            Err(format!(
                "listen {:?}: use udp://, tcp://, tls:// or unix:/path",
                self.listen
            ))
        }
    }

    /// The socket file mode of `unix:`.
    pub fn mode(&self) -> Result<u32, String> {
        u32::from_str_radix(&self.socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "socket_mode {:?}: write an octal mode such as \"0660\"",
                    self.socket_mode
                )
            })
    }

    pub fn validate(&self) -> Result<(), String> {
        let listen = self.listen()?;
        let tls = matches!(listen, Listen::Tls(_));
        if tls && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err("tls:// needs tls_cert and tls_key".into());
        }
        for p in [&self.tls_cert, &self.tls_key, &self.tls_client_ca]
            .into_iter()
            .flatten()
        {
            if !p.is_file() {
                return Err(format!("{} is not a readable file", p.display()));
            }
        }
        if !tls
            && (self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some())
        {
            return Err(format!(
                "tls_cert, tls_key and tls_client_ca are for tls://, not {}",
                self.listen
            ));
        }
        if self.max_message_bytes.0 < 480 || self.max_message_bytes.0 > 16 << 20 {
            return Err("max_message_bytes must be between 480B and 16MiB".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        self.mode()?;
        Ok(())
    }
}
