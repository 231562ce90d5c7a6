//! Who may use the console, and proof that a change comes from its own page.
//!
//! - On loopback the machine's users are trusted as the API's Unix socket
//!   trusts root: no sign-in.
//! - Beyond loopback a person signs in with an access key (checked against
//!   the data directory's `state.json`, read at each sign-in so a deleted
//!   key stops working); the session is a random token in an `HttpOnly`,
//!   `SameSite=Strict` cookie, kept in memory and ended by signing out, by
//!   its lifetime, or by a restart.
//! - Every request that changes something carries a CSRF token the page
//!   got from `GET /console/api/session`, which another site cannot read.
//! - Requests another site's page makes (`Origin` or `Sec-Fetch-Site` say
//!   so) are refused before anything else, and on loopback a `Host` that is
//!   not this machine's is refused too (DNS rebinding).

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode, header};

use crate::{api::ApiError, state::random};

/// The session cookie's name.
pub const COOKIE: &str = "flowlog_console";
/// The header a changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-flowlog-csrf";
/// A session ends this long after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; sign-ins beyond wait for one to end.
const MAX_SESSIONS: usize = 1024;
/// A failed sign-in answers after this, so guessing is slow.
pub const FAILED_SIGN_IN_DELAY: Duration = Duration::from_secs(1);
const TOKEN_CHARS: usize = 43;

#[derive(Clone, Debug)]
struct Session {
    key_id: String,
    csrf: String,
    expires: Instant,
}

/// What a request is allowed, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The access key signed in with; none on loopback.
    pub key_id: Option<String>,
    /// The CSRF token changes must carry.
    pub csrf: String,
}

/// The console's sessions and the rules for its listener.
pub struct Sessions {
    listen: SocketAddr,
    /// Beyond loopback: sign-in required.
    remote: bool,
    /// `Secure` on the cookie.
    tls: bool,
    /// Where access keys are read at sign-in.
    state_dir: PathBuf,
    /// The loopback console's one CSRF token.
    local_csrf: String,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

fn token() -> Result<String, ApiError> {
    random::string(random::ALNUM, TOKEN_CHARS).map_err(|e| ApiError::internal(e.to_string()))
}

impl Sessions {
    pub fn new(
        listen: SocketAddr,
        remote: bool,
        tls: bool,
        state_dir: PathBuf,
    ) -> Result<Self, random::RandomError> {
        Ok(Self {
            listen,
            remote,
            tls,
            state_dir,
            local_csrf: random::string(random::ALNUM, TOKEN_CHARS)?,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub const fn remote(&self) -> bool {
        self.remote
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses what another site's page sent, and, on loopback, a `Host`
    /// naming another machine.
    pub fn same_site(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let value = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
        if let Some(site) = value("sec-fetch-site")
            && site != "same-origin"
            && site != "none"
        {
            return Err(forbidden(
                "Forbidden.CrossSite",
                format!("a {site} request cannot use the console"),
            ));
        }
        let host = value(header::HOST.as_str()).unwrap_or_default();
        if !self.remote && !self.local_host(host) {
            return Err(forbidden(
                "Forbidden.Host",
                format!(
                    "the console answers to 127.0.0.1:{0} or localhost:{0}, not {host:?}",
                    self.listen.port()
                ),
            ));
        }
        if let Some(origin) = value(header::ORIGIN.as_str()) {
            let host_part = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            if host.is_empty() || host_part != host {
                return Err(forbidden(
                    "Forbidden.CrossSite",
                    format!("a request from {origin:?} cannot use the console"),
                ));
            }
        }
        Ok(())
    }

    fn local_host(&self, host: &str) -> bool {
        let port = self.listen.port();
        [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            self.listen.to_string(),
        ]
        .iter()
        .any(|h| h == host)
    }

    fn cookie_token(headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == COOKIE).then(|| v.to_owned())
            })
    }

    /// The caller, if signed in (always, on loopback).
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if !self.remote {
            return Some(Caller {
                key_id: None,
                csrf: self.local_csrf.clone(),
            });
        }
        let token = Self::cookie_token(headers)?;
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.get(&token).map(|s| Caller {
            key_id: Some(s.key_id.clone()),
            csrf: s.csrf.clone(),
        })
    }

    /// The caller, or 401 saying to sign in.
    pub fn require(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.caller(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "sign in with an access key to use the console",
            )
        })
    }

    /// A change is allowed only with the caller's CSRF token.
    pub fn require_csrf(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.require(headers)?;
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same(sent, &caller.csrf) {
            return Err(forbidden(
                "Forbidden.Csrf",
                "the request lacks the console's CSRF token; reload the page",
            ));
        }
        Ok(caller)
    }

    /// Checks an access key against `state.json` and opens a session;
    /// returns the `Set-Cookie` value and the session's CSRF token.
    pub async fn sign_in(&self, key_id: &str, secret: &str) -> Result<(String, String), ApiError> {
        if !self.remote {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "SignInNotNeeded",
                "the console listens on loopback only: no sign-in is needed",
            ));
        }
        let known = self.key_secret(key_id);
        if !known.as_deref().is_some_and(|s| same(s, secret)) {
            tokio::time::sleep(FAILED_SIGN_IN_DELAY).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAccessKey",
                "the access key id or secret is wrong",
            ));
        }
        let (token, csrf) = (token()?, token()?);
        {
            let mut sessions = self.lock();
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            if sessions.len() >= MAX_SESSIONS {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "TooManySessions",
                    format!("{MAX_SESSIONS} sessions are open; sign out elsewhere or wait"),
                ));
            }
            sessions.insert(
                token.clone(),
                Session {
                    key_id: key_id.to_owned(),
                    csrf: csrf.clone(),
                    expires: now + LIFETIME,
                },
            );
        }
        Ok((self.cookie(&token, LIFETIME.as_secs()), csrf))
    }

    /// Ends the caller's session; returns the `Set-Cookie` that clears it.
    pub fn sign_out(&self, headers: &HeaderMap) -> String {
        if let Some(t) = Self::cookie_token(headers) {
            self.lock().remove(&t);
        }
        self.cookie("", 0)
    }

    fn cookie(&self, token: &str, max_age: u64) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
    }

    /// The secret of `key_id`, read from `state.json` now.
    fn key_secret(&self, key_id: &str) -> Option<String> {
        let bytes = std::fs::read(self.state_dir.join(crate::state::STATE_FILE)).ok()?;
        let state: crate::state::State = serde_json::from_slice(&bytes).ok()?;
        state.access_keys.get(key_id).map(|k| k.access_key_secret.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn loopback() -> Sessions {
        Sessions::new(
            "127.0.0.1:9000".parse().unwrap(),
            false,
            false,
            "/nonexistent".into(),
        )
        .unwrap()
    }

    #[test]
    fn cross_site_and_foreign_hosts_are_refused() {
        let s = loopback();
        assert!(s.same_site(&headers(&[("host", "127.0.0.1:9000")])).is_ok());
        assert!(
            s.same_site(&headers(&[
                ("host", "localhost:9000"),
                ("origin", "http://localhost:9000")
            ]))
            .is_ok()
        );
        for bad in [
            headers(&[("host", "evil.example:9000")]),
            headers(&[("host", "127.0.0.1:9000"), ("origin", "http://127.0.0.1:9001")]),
            headers(&[("host", "127.0.0.1:9000"), ("origin", "null")]),
            headers(&[("host", "127.0.0.1:9000"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:9000"), ("sec-fetch-site", "same-site")]),
        ] {
            assert_eq!(
                s.same_site(&bad).unwrap_err().status,
                StatusCode::FORBIDDEN,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn changes_need_the_csrf_token() {
        let s = loopback();
        let csrf = s.caller(&HeaderMap::new()).unwrap().csrf;
        assert_eq!(csrf.len(), TOKEN_CHARS);
        assert!(s.require_csrf(&HeaderMap::new()).is_err());
        assert!(s.require_csrf(&headers(&[(CSRF_HEADER, "nope")])).is_err());
        assert!(s.require_csrf(&headers(&[(CSRF_HEADER, &csrf)])).is_ok());
    }

    #[tokio::test]
    async fn remote_sessions_need_a_real_key() {
        let dir = std::env::temp_dir().join(format!("flowlog-console-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut state = crate::state::State {
            version: crate::state::STATE_VERSION,
            ..Default::default()
        };
        state.access_keys.insert(
            "LTAIabcdefghijklmnop".into(),
            crate::state::AccessKey {
                access_key_id: "LTAIabcdefghijklmnop".into(),
                access_key_secret: "s".repeat(30),
                description: String::new(),
                creation_time: 0,
            },
        );
        std::fs::write(
            dir.join(crate::state::STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let s = Sessions::new("0.0.0.0:9000".parse().unwrap(), true, true, dir.clone()).unwrap();
        assert!(s.caller(&HeaderMap::new()).is_none());
        assert!(s.sign_in("LTAIabcdefghijklmnop", "wrong").await.is_err());
        assert!(s.sign_in("nobody", &"s".repeat(30)).await.is_err());
        let (cookie, csrf) = s.sign_in("LTAIabcdefghijklmnop", &"s".repeat(30)).await.unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure")
        );
        let token = cookie.split(';').next().unwrap().to_owned();
        let h = headers(&[("cookie", &format!("other=1; {token}"))]);
        let caller = s.caller(&h).unwrap();
        assert_eq!(caller.key_id.as_deref(), Some("LTAIabcdefghijklmnop"));
        assert_eq!(caller.csrf, csrf);
        s.sign_out(&h);
        assert!(s.caller(&h).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
