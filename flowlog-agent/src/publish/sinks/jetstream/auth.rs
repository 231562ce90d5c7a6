//! How agents and collectors prove who they are to NATS, and how they
//! trust the servers: one token, one NKey seed, or one credentials (JWT +
//! NKey) file; TLS with a CA of the operator's choosing.

use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;

/// Authentication and TLS settings shared by `[jetstream]` and
/// `flowlog collect`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsAuth {
    pub token: Option<String>,
    /// A file holding a user NKey seed (`SU…`), so the seed stays out of
    /// the configuration file.
    pub nkey_seed: Option<PathBuf>,
    pub credentials: Option<PathBuf>,
    /// CA certificate (PEM) the servers' certificates must chain to;
    /// setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("NATS authentication: give one of token, nkey-seed and credentials, not several")]
    Several,
    #[error("NATS NKey seed {path}: {reason}")]
    Seed { path: PathBuf, reason: String },
    #[error("NATS credentials {path}: {source}")]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NatsAuth {
    /// At most one way to authenticate.
    pub fn check(&self) -> Result<(), AuthError> {
        let ways = [
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.credentials.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(AuthError::Several);
        }
        Ok(())
    }

    /// `opts` with these settings applied; files are read now, so a bad one
    /// is reported before any connection attempt.
    pub async fn apply(&self, mut opts: ConnectOptions) -> Result<ConnectOptions, AuthError> {
        self.check()?;
        if let Some(t) = &self.token {
            opts = opts.token(t.clone());
        }
        if let Some(path) = &self.nkey_seed {
            opts = opts.nkey(read_seed(path)?);
        }
        if let Some(path) = &self.credentials {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| AuthError::Credentials {
                    path: path.clone(),
                    source,
                })?;
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        Ok(opts)
    }
}

/// The seed in `path`: one line, a user seed.
fn read_seed(path: &Path) -> Result<String, AuthError> {
    let bad = |reason: String| AuthError::Seed {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let seed = text.trim();
    if !seed.starts_with("SU") {
        return Err(bad("not a user NKey seed (it must begin with SU)".into()));
    }
    Ok(seed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_to_authenticate_at_most() {
        let mut a = NatsAuth {
            token: Some("t".into()),
            ..Default::default()
        };
        assert!(a.check().is_ok());
        a.nkey_seed = Some("seed".into());
        assert!(matches!(a.check(), Err(AuthError::Several)));
    }

    #[test]
    fn a_seed_file_must_hold_a_user_seed() {
        let dir = std::env::temp_dir().join(format!("flowlog-seed-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("seed");
        let _ = std::fs::write(&path, "SAAKEY\n");
        assert!(matches!(read_seed(&path), Err(AuthError::Seed { .. })));
        let _ = std::fs::write(&path, "SUAM4NKEY\n");
        assert_eq!(read_seed(&path).ok().as_deref(), Some("SUAM4NKEY"));
        assert!(read_seed(&dir.join("absent")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
