//! Calling the control API: over the Unix socket, or over TCP with a signed
//! request. Used by the `flowlog` CLI.

use std::path::PathBuf;

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::auth;

/// Where the agent listens.
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        /// `host:port`.
        addr: String,
        key_id: String,
        secret: String,
        /// TLS, trusting the given CA (`--tls-ca`).
        tls: Option<tokio_rustls::TlsConnector>,
    },
}

impl Endpoint {
    fn name(&self) -> String {
        match self {
            Self::Unix(p) => p.display().to_string(),
            Self::Tcp { addr, .. } => addr.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the agent at {endpoint}; is `flowlog agent` running?")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with the agent failed")]
    Http(#[from] hyper::Error),
    #[error("building the request failed")]
    Request(#[from] hyper::http::Error),
    #[error("the agent's answer is not JSON")]
    Decode(#[from] serde_json::Error),
    #[error("no answer from the agent at {endpoint} within {} s (--timeout)", .timeout.as_secs())]
    Timeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    #[error("TLS with the agent at {endpoint} failed")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
}

async fn handshake<IO>(io: IO) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one action and waits at most `timeout` for the whole exchange;
/// returns the HTTP status and the JSON answer (which carries `Code` and
/// `Message` when the status is not 200).
pub async fn call(
    endpoint: &Endpoint,
    action: &str,
    params: &Value,
    timeout: std::time::Duration,
) -> Result<(u16, Value), ClientError> {
    tokio::time::timeout(timeout, exchange(endpoint, action, params))
        .await
        .map_err(|_| ClientError::Timeout {
            endpoint: endpoint.name(),
            timeout,
        })?
}

async fn exchange(endpoint: &Endpoint, action: &str, params: &Value) -> Result<(u16, Value), ClientError> {
    let body = serde_json::to_vec(params)?;
    let path = format!("/v1/{action}");
    let mut req = Request::post(&path).header("content-type", "application/json");
    let resp = match endpoint {
        Endpoint::Unix(socket) => {
            let stream =
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|source| ClientError::Connect {
                        endpoint: socket.display().to_string(),
                        source,
                    })?;
            let mut sender = handshake(stream).await?;
            let req = req.header("host", "flowlog").body(Full::new(Bytes::from(body)))?;
            sender.send_request(req).await?
        }
        Endpoint::Tcp {
            addr,
            key_id,
            secret,
            tls,
        } => {
            let stream =
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|source| ClientError::Connect {
                        endpoint: addr.clone(),
                        source,
                    })?;
            let now = crate::state::now_secs();
            let nonce = crate::state::random::string(crate::state::random::ALNUM, 24).map_err(|e| {
                ClientError::Connect {
                    endpoint: addr.clone(),
                    source: std::io::Error::other(e),
                }
            })?;
            let sig = auth::sign(secret, "POST", &path, now, &nonce, &body);
            req = req
                .header("host", addr.as_str())
                .header(auth::HEADER_KEY_ID, key_id.as_str())
                .header(auth::HEADER_TIMESTAMP, now.to_string())
                .header(auth::HEADER_NONCE, nonce)
                .header(auth::HEADER_SIGNATURE, sig);
            let req = req.body(Full::new(Bytes::from(body)))?;
            match tls {
                Some(tls) => {
                    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                    let tls_err = |source| ClientError::Tls {
                        endpoint: addr.clone(),
                        source,
                    };
                    let name = rustls_pki_types::ServerName::try_from(host)
                        .map_err(|e| tls_err(std::io::Error::other(e)))?;
                    let stream = tls.connect(name, stream).await.map_err(tls_err)?;
                    handshake(stream).await?.send_request(req).await?
                }
                None => handshake(stream).await?.send_request(req).await?,
            }
        }
    };
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent socket that accepts and never answers: the call ends at
    /// its timeout with a message saying so, instead of hanging.
    #[tokio::test]
    async fn a_silent_agent_times_out_with_a_clear_message() {
        let path = std::env::temp_dir().join(format!("flowlog-silent-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let started = std::time::Instant::now();
        let err = call(
            &Endpoint::Unix(path.clone()),
            "ListProjects",
            &serde_json::json!({}),
            std::time::Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(err.to_string().contains("no answer from the agent"), "{err}");
        held.abort();
        let _ = std::fs::remove_file(&path);
    }
}
