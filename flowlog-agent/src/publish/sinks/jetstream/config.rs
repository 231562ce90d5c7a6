//! `[jetstream]`: the servers, subject, stream, credentials and queue
//! bound, checked before the agent starts.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::auth::NatsAuth;

/// `[jetstream]`: publishing every window's records to NATS JetStream
/// (off without `servers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JetStreamFile {
    /// Also publish every window to this NATS JetStream server, e.g.
    /// `nats://10.0.0.5:4222` (repeatable for a cluster; the file's
    /// [jetstream] section has every setting).
    #[serde(default)]
    #[arg(id = "jetstream-server", long = "jetstream-server")]
    pub servers: Vec<String>,
    /// Subject prefix: records go to `<subject>.<flow-log-id>`.
    #[arg(skip)]
    pub subject: Option<String>,
    /// Stream to create if missing (subjects `<subject>.>`).
    #[arg(skip)]
    pub stream: Option<String>,
    /// Replicas of that stream (1, 3 or 5).
    #[arg(skip)]
    pub replicas: Option<u32>,
    /// Authentication: a token, a file holding a user NKey seed, or a
    /// credentials (JWT + NKey) file.
    #[arg(skip)]
    pub token: Option<String>,
    #[arg(skip)]
    pub nkey_seed: Option<PathBuf>,
    #[arg(skip)]
    pub credentials: Option<PathBuf>,
    /// TLS: CA certificate file for the servers (implies TLS).
    #[arg(skip)]
    pub tls_ca: Option<PathBuf>,
    /// Bound of the on-disk queue of windows JetStream has not acknowledged.
    #[arg(id = "jetstream-queue-bytes", long = "jetstream-queue-bytes")]
    pub queue_bytes: Option<u64>,
    /// JetStream's duplicate window: a resend within it is recognised.
    #[arg(skip)]
    pub duplicate_window_secs: Option<u64>,
}

/// Validated JetStream settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStream {
    pub servers: Vec<String>,
    pub subject: String,
    pub stream: String,
    pub replicas: u32,
    pub auth: NatsAuth,
    pub queue_bytes: u64,
    pub duplicate_window: Duration,
}

pub const DEFAULT_JETSTREAM_SUBJECT: &str = "flowlog.records";
pub const DEFAULT_JETSTREAM_STREAM: &str = "FLOWLOG";
/// 1 GiB of queued windows.
pub const DEFAULT_JETSTREAM_QUEUE_BYTES: u64 = 1 << 30;
const DEFAULT_DUPLICATE_WINDOW_SECS: u64 = 3600;

impl JetStreamFile {
    /// The settings, `None` without servers; the message says what is
    /// wrong otherwise.
    pub fn validate(self) -> Result<Option<JetStream>, String> {
        let invalid = |m: String| Err(m);
        if self.servers.is_empty() {
            return Ok(None);
        }
        for s in &self.servers {
            let rest = s.split_once("://").map_or(s.as_str(), |(scheme, rest)| {
                if matches!(scheme, "nats" | "tls") {
                    rest
                } else {
                    ""
                }
            });
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return invalid(format!("jetstream server {s:?} must look like nats://host:port"));
            }
        }
        let subject = self.subject.unwrap_or_else(|| DEFAULT_JETSTREAM_SUBJECT.into());
        let token_ok =
            |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !subject.split('.').all(token_ok) {
            return invalid(format!(
                "jetstream subject {subject:?} must be dot-separated tokens of letters, digits, '-' and '_'"
            ));
        }
        let stream = self.stream.unwrap_or_else(|| DEFAULT_JETSTREAM_STREAM.into());
        if !token_ok(&stream) || stream.len() > 64 {
            return invalid(format!(
                "jetstream stream {stream:?} must be 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        let replicas = self.replicas.unwrap_or(1);
        if !matches!(replicas, 1 | 3 | 5) {
            return invalid(format!("jetstream replicas must be 1, 3 or 5, got {replicas}"));
        }
        let auth = NatsAuth {
            token: self.token,
            nkey_seed: self.nkey_seed,
            credentials: self.credentials,
            tls_ca: self.tls_ca,
        };
        if let Err(e) = auth.check() {
            return invalid(format!("jetstream: {e}"));
        }
        let queue_bytes = self.queue_bytes.unwrap_or(DEFAULT_JETSTREAM_QUEUE_BYTES);
        if queue_bytes < 1 << 16 {
            return invalid(format!(
                "jetstream queue-bytes must be at least 65536, got {queue_bytes}"
            ));
        }
        let dup = self
            .duplicate_window_secs
            .unwrap_or(DEFAULT_DUPLICATE_WINDOW_SECS);
        if !(1..=7 * 86_400).contains(&dup) {
            return invalid(format!(
                "jetstream duplicate-window-secs must be 1 to 604800, got {dup}"
            ));
        }
        Ok(Some(JetStream {
            servers: self.servers,
            subject,
            stream,
            replicas,
            auth,
            queue_bytes,
            duplicate_window: Duration::from_secs(dup),
        }))
    }
}
