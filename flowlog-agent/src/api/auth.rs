//! Request signing for the TCP listener (the Unix socket is root-only and
//! needs none).
//!
//! A request carries three headers: the access key id, a Unix timestamp,
//! and `hex(HMAC-SHA256(secret, METHOD "\n" PATH_AND_QUERY "\n" TIMESTAMP
//! "\n" hex(SHA256(body))))`. The signature covers method, path, query, body
//! and time, so it cannot be moved to another request; a timestamp more than
//! [`MAX_SKEW_SECS`] away from the agent's clock is refused, which bounds
//! replays to that window.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::ApiError;

pub const HEADER_KEY_ID: &str = "x-flowlog-access-key-id";
pub const HEADER_TIMESTAMP: &str = "x-flowlog-timestamp";
pub const HEADER_SIGNATURE: &str = "x-flowlog-signature";
/// Allowed clock difference between client and agent.
pub const MAX_SKEW_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn string_to_sign(method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "{method}\n{path_and_query}\n{timestamp}\n{}",
        hex(&Sha256::digest(body))
    )
}

fn mac(secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!())
}

/// The signature header value for a request.
pub fn sign(secret: &str, method: &str, path_and_query: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(string_to_sign(method, path_and_query, &timestamp.to_string(), body).as_bytes());
    hex(&m.finalize().into_bytes())
}

/// Checks a request's credentials against `keys` (id → secret); returns the
/// key id on success. Errors never contain a secret.
pub fn verify(
    keys: &BTreeMap<String, String>,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: i64,
) -> Result<String, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(ts), Some(sig)) = (
        header(HEADER_KEY_ID),
        header(HEADER_TIMESTAMP),
        header(HEADER_SIGNATURE),
    ) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!(
                "requests over TCP must be signed: send {HEADER_KEY_ID}, {HEADER_TIMESTAMP} and {HEADER_SIGNATURE}"
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
    if (now - stamp).abs() > MAX_SKEW_SECS {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.RequestExpired",
            format!("timestamp {stamp} is more than {MAX_SKEW_SECS} s from the agent's clock ({now})"),
        ));
    }
    let given = unhex(sig).unwrap_or_default();
    let mut m = mac(secret);
    m.update(string_to_sign(method, path_and_query, ts, body).as_bytes());
    m.verify_slice(&given).map_err(|_| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden.SignatureDoesNotMatch",
            "the request signature does not match; check the secret and sign method, path, timestamp and body",
        )
    })?;
    Ok(key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (HEADER_KEY_ID, id.to_owned()),
            (HEADER_TIMESTAMP, ts.to_string()),
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
        let sig = sign("s3cret", "POST", "/v1/ListProjects", 1000, body);
        let ok = verify(
            &keys,
            &headers("AK1", 1000, &sig),
            "POST",
            "/v1/ListProjects",
            body,
            1100,
        );
        assert_eq!(ok, Ok("AK1".into()));
        let code = |r: Result<String, ApiError>| r.map_err(|e| e.code).err().unwrap_or_default();
        assert_eq!(
            code(verify(
                &keys,
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
                &headers("AK2", 1000, &sig),
                "POST",
                "/v1/ListProjects",
                body,
                1000
            )),
            "InvalidAccessKeyId.NotFound"
        );
        assert_eq!(
            code(verify(&keys, &HeaderMap::new(), "POST", "/", body, 1000)),
            "Unauthorized"
        );
        let wrong = sign("other", "POST", "/v1/ListProjects", 1000, body);
        let e = verify(
            &keys,
            &headers("AK1", 1000, &wrong),
            "POST",
            "/v1/ListProjects",
            body,
            1000,
        );
        assert!(e.is_err_and(|e| !e.message.contains("s3cret")));
    }
}
