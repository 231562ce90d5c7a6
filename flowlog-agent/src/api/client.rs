//! Calling the control API: over the Unix socket, or over TCP with a signed
//! request. Used by the `flowlog` CLI.

use std::path::PathBuf;

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::auth;

/// Where the agent listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        /// `host:port`.
        addr: String,
        key_id: String,
        secret: String,
    },
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
}

async fn handshake<IO>(io: IO) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one action; returns the HTTP status and the JSON answer (which
/// carries `Code` and `Message` when the status is not 200).
pub async fn call(endpoint: &Endpoint, action: &str, params: &Value) -> Result<(u16, Value), ClientError> {
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
        Endpoint::Tcp { addr, key_id, secret } => {
            let stream =
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|source| ClientError::Connect {
                        endpoint: addr.clone(),
                        source,
                    })?;
            let now = crate::state::now_secs();
            let sig = auth::sign(secret, "POST", &path, now, &body);
            req = req
                .header("host", addr.as_str())
                .header(auth::HEADER_KEY_ID, key_id.as_str())
                .header(auth::HEADER_TIMESTAMP, now.to_string())
                .header(auth::HEADER_SIGNATURE, sig);
            let mut sender = handshake(stream).await?;
            sender
                .send_request(req.body(Full::new(Bytes::from(body)))?)
                .await?
        }
    };
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}
