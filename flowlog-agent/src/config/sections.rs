//! The `[api]` and `[metrics]` sections: each read from the file and from
//! flags as one type, and checked by its own `validate`. The sinks' sections
//! (`[output]`, `[jetstream]`, `logstore-buffer-records`) live with their
//! sinks under `publish/sinks/`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::API_SOCKET;
use crate::api::Listeners;

/// Time one GetLogs query may take by default.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 60;
/// Longest Unix socket path the kernel takes (sun_path less its NUL, with
/// some room).
const SOCKET_PATH_MAX: usize = 100;

/// `[api]`: the control API's listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiOptions {
    /// Unix socket path (default `<data-dir>/api.sock`), mode 0600; the
    /// global `--socket` flag sets it.
    #[serde(default)]
    #[arg(skip)]
    pub socket: Option<PathBuf>,
    /// Also serve the API on this TCP address (signed requests only).
    #[serde(default)]
    #[arg(id = "api-listen", long = "api-listen")]
    pub listen: Option<SocketAddr>,
    /// Allow --api-listen beyond loopback.
    #[serde(default)]
    #[arg(id = "allow-remote-api", long = "allow-remote-api")]
    pub allow_remote: bool,
    /// Seconds one GetLogs query may take in all, waiting for its turn,
    /// planning and opening files included (default 60).
    #[serde(default)]
    #[arg(long)]
    pub query_timeout_secs: Option<u64>,
    /// PEM certificate chain of the TCP API (with --api-tls-key: TLS).
    #[serde(default)]
    #[arg(id = "api-tls-cert", long = "api-tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TCP API.
    #[serde(default)]
    #[arg(id = "api-tls-key", long = "api-tls-key")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP beyond loopback (secrets cross the network in clear).
    #[serde(default)]
    #[arg(id = "api-allow-plain-http", long = "api-allow-plain-http")]
    pub allow_plain_http: bool,
}

impl ApiOptions {
    /// The listeners and the query time limit; the message says what is
    /// wrong otherwise.
    pub fn validate(self, data_dir: &Path) -> Result<(Listeners, Duration), String> {
        let query_timeout_secs = self.query_timeout_secs.unwrap_or(DEFAULT_QUERY_TIMEOUT_SECS);
        if !(1..=3600).contains(&query_timeout_secs) {
            return Err(format!(
                "api.query-timeout-secs must be between 1 and 3600, got {query_timeout_secs}"
            ));
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("api.tls-cert and api.tls-key go together".into()),
        };
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && self.allow_remote
            && tls.is_none()
            && !self.allow_plain_http
        {
            return Err(format!(
                "api.listen = {addr} beyond loopback needs TLS: set api.tls-cert and api.tls-key, or api.allow-plain-http = true"
            ));
        }
        let socket = self.socket.unwrap_or_else(|| data_dir.join(API_SOCKET));
        if socket.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(format!(
                "API socket path {} is too long for a Unix socket",
                socket.display()
            ));
        }
        let listeners = Listeners {
            socket,
            tcp: self.listen,
            allow_remote: self.allow_remote,
            tls,
            allow_plain_http: self.allow_plain_http,
        };
        Ok((listeners, Duration::from_secs(query_timeout_secs)))
    }
}

/// `[metrics]`: the Prometheus metrics listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsOptions {
    /// Serve Prometheus metrics on this address (loopback unless the file
    /// sets metrics.allow-remote).
    #[serde(default)]
    #[arg(id = "metrics-listen", long = "metrics-listen")]
    pub listen: Option<SocketAddr>,
    /// Allow `listen` beyond loopback.
    #[serde(default)]
    #[arg(skip)]
    pub allow_remote: bool,
}

impl MetricsOptions {
    /// The address to serve on, if any.
    pub fn validate(self) -> Result<Option<SocketAddr>, String> {
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !self.allow_remote
        {
            return Err(format!(
                "metrics.listen {addr} is not a loopback address; set metrics.allow-remote = true to expose it"
            ));
        }
        Ok(self.listen)
    }
}
