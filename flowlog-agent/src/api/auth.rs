//! Request signing for the TCP listener (the Unix socket is root-only and
//! needs none).
//!
//! A request carries four headers: the access key id, a Unix timestamp, a
//! nonce (16 to 64 of letters, digits, `-`, `_`; new for every request),
//! and `hex(HMAC-SHA256(secret, METHOD "\n" PATH_AND_QUERY "\n" TIMESTAMP
//! "\n" NONCE "\n" hex(SHA256(body))))`. The signature covers method, path,
//! query, body, time and nonce, so it cannot be moved to another request; a
//! timestamp more than [`MAX_SKEW_SECS`] from the agent's clock is refused,
//! and the agent remembers every nonce it accepted for as long as its
//! timestamp could pass, so a captured request cannot be sent again.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::ApiError;

pub const HEADER_KEY_ID: &str = "x-flowlog-access-key-id";
pub const HEADER_TIMESTAMP: &str = "x-flowlog-timestamp";
pub const HEADER_NONCE: &str = "x-flowlog-nonce";
pub const HEADER_SIGNATURE: &str = "x-flowlog-signature";
/// Allowed clock difference between client and agent.
pub const MAX_SKEW_SECS: i64 = 300;
/// Nonces remembered at most: a flood of signed requests beyond this (all
/// within the skew window) is refused rather than forgotten.
const MAX_NONCES: usize = 200_000;

type HmacSha256 = Hmac<Sha256>;

fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

fn string_to_sign(method: &str, path_and_query: &str, timestamp: &str, nonce: &str, body: &[u8]) -> String {
    format!(
        "{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!())
}

/// The signature header value for a request.
pub fn sign(
    secret: &str,
    method: &str,
    path_and_query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign(method, path_and_query, &timestamp.to_string(), nonce, body).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn valid_nonce(n: &str) -> bool {
    (16..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Nonces accepted while their timestamps could still pass.
#[derive(Default)]
pub struct Replays {
    /// (key id, nonce) → the timestamp it came with.
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl Replays {
    /// Records a nonce; false when it was seen already (a replay) or the
    /// table is full of live ones.
    fn admit(&self, key_id: &str, nonce: &str, stamp: i64, now: i64) -> Result<(), ApiError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (key_id.to_owned(), nonce.to_owned());
        if seen.contains_key(&key) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden.Replay",
                "this request was already received (its nonce was used); send every request with a new nonce",
            ));
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, t| now.abs_diff(*t) <= MAX_SKEW_SECS as u64);
            if seen.len() >= MAX_NONCES {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "too many signed requests in the last minutes; try again later",
                ));
            }
        }
        seen.insert(key, stamp);
        Ok(())
    }
}

/// Checks a request's credentials against `keys` (id → secret); returns the
/// key id on success. Errors never contain a secret.
pub fn verify(
    keys: &BTreeMap<String, String>,
    replays: &Replays,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<String, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(ts), Some(nonce), Some(sig)) = (
        header(HEADER_KEY_ID),
        header(HEADER_TIMESTAMP),
        header(HEADER_NONCE),
        header(HEADER_SIGNATURE),
    ) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!(
                "requests over TCP must be signed: send {HEADER_KEY_ID}, {HEADER_TIMESTAMP}, {HEADER_NONCE} and {HEADER_SIGNATURE}"
            ),
        ));
    };
    let Some(secret) = keys.get(key_id) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAccessKeyId.NotFound",
            format!("access key {key_id:?} does not exist"),
        ));
    };
    let stamp: i64 = ts.parse().map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.Timestamp",
            "timestamp must be Unix seconds",
        )
    })?;
    if now.abs_diff(stamp) > MAX_SKEW_SECS as u64 {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.RequestExpired",
            format!("timestamp {stamp} is more than {MAX_SKEW_SECS} s from the agent's clock ({now})"),
        ));
    }
    if !valid_nonce(nonce) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.Nonce",
            "the nonce must be 16 to 64 letters, digits, '-' or '_'",
        ));
    }
    let given = unhex(sig).unwrap_or_default();
    let mut m = mac(secret);
    m.update(string_to_sign(method, path_and_query, ts, nonce, body).as_bytes());
    m.verify_slice(&given).map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.SignatureDoesNotMatch",
            "the request signature does not match; check the secret and sign method, path, timestamp, nonce and body",
        )
    })?;
    // Only a genuine request uses up its nonce.
    replays.admit(key_id, nonce, stamp, now)?;
    Ok(key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "n0nce-0123456789ab";

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (HEADER_KEY_ID, id.to_owned()),
            (HEADER_TIMESTAMP, ts.to_string()),
            (HEADER_NONCE, NONCE.to_owned()),
            (HEADER_SIGNATURE, sig.to_owned()),
        ] {
            if let Ok(v) = v.parse() {
                h.insert(k, v);
            }
        }
        h
    }

    #[test]
    fn signatures_bind_every_part() {
        let keys = BTreeMap::from([("AK1".to_owned(), "s3cret".to_owned())]);
        let body = br#"{"Action":"ListProjects"}"#;
        let sig = sign("s3cret", "POST", "/v1/ListProjects", 1000, NONCE, body);
        let replays = Replays::default();
        let send = || {
            verify(
                &keys,
                &replays,
                &headers("AK1", 1000, &sig),
                "POST",
                "/v1/ListProjects",
                body,
                1100,
            )
        };
        assert_eq!(send(), Ok("AK1".into()));
        // The same request again is a replay.
        assert_eq!(send().map_err(|e| e.code), Err("Forbidden.Replay".to_owned()));
        // Timestamps as far from the clock as an i64 goes are refused, not
        // overflowed.
        let far = sign("s3cret", "POST", "/", i64::MIN, NONCE, body);
        assert_eq!(
            verify(
                &keys,
                &Replays::default(),
                &headers("AK1", i64::MIN, &far),
                "POST",
                "/",
                body,
                1000
            )
            .map_err(|e| e.code),
            Err("Forbidden.RequestExpired".to_owned())
        );
        let code = |r: Result<String, ApiError>| r.map_err(|e| e.code).err().unwrap_or_default();
        assert_eq!(
            code(verify(
                &keys,
                &Replays::default(),
                &headers("AK1", 1000, &sig),
                "POST",
                "/v1/ListProjects",
                b"{}",
                1100
            )),
            "Forbidden.SignatureDoesNotMatch"
        );
        assert_eq!(
            code(verify(
                &keys,
                &Replays::default(),
                &headers("AK1", 1000, &sig),
                "GET",
                "/v1/ListProjects",
                body,
                1100
            )),
            "Forbidden.SignatureDoesNotMatch"
        );
        assert_eq!(
            code(verify(
                &keys,
                &Replays::default(),
                &headers("AK1", 1000, &sig),
                "POST",
                "/v1/ListProjects",
                body,
                1000 + 301
            )),
            "Forbidden.RequestExpired"
        );
        assert_eq!(
            code(verify(
                &keys,
                &Replays::default(),
                &headers("AK2", 1000, &sig),
                "POST",
                "/v1/ListProjects",
                body,
                1000
            )),
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(
            code(verify(
                &keys,
                &Replays::default(),
                &HeaderMap::new(),
                "POST",
                "/",
                body,
                1000
            )),
            "Unauthorized"
        );
        let wrong = sign("other", "POST", "/v1/ListProjects", 1000, NONCE, body);
        let e = verify(
            &keys,
            &Replays::default(),
            &headers("AK1", 1000, &wrong),
            "POST",
            "/v1/ListProjects",
            body,
            1000,
        );
        assert!(e.is_err_and(|e| !e.message.contains("s3cret")));
    }
}
