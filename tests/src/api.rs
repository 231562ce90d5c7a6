//! A deliberately independent client for the agent's control API: plain
//! HTTP/1.1 over std sockets and its own request signing, so the tests check
//! the wire contract rather than the agent's client code.

use std::{net::TcpStream, os::unix::net::UnixStream, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An HTTP response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn exchange<S: std::io::Read + std::io::Write>(mut s: S, request: &[u8]) -> anyhow::Result<Response> {
    s.write_all(request)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the response")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end])?.trim(), 16)?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("short chunk")?;
    }
}

/// Builds a request with `extra` header lines (each ending in CRLF).
pub fn request(method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {target} HTTP/1.1\r\nHost: flowlog\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Sends raw request bytes over the Unix socket.
pub fn raw_unix(socket: &Path, request: &[u8]) -> anyhow::Result<Response> {
    let s = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(s, request)
}

/// Sends raw request bytes over TCP.
pub fn raw_tcp(addr: &str, request: &[u8]) -> anyhow::Result<Response> {
    let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(s, request)
}

/// A TCP connection to `addr` from the loopback address `from` (any of
/// 127.0.0.0/8), standing for another client machine.
pub fn connect_from(from: std::net::Ipv4Addr, addr: &str) -> anyhow::Result<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let to: std::net::SocketAddrV4 = addr.parse()?;
    let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a fresh socket, owned by the TcpStream below (closed on error).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a valid socket we own.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, remote) = (sa(from, 0), sa(*to.ip(), to.port()));
    // SAFETY: valid sockaddr_in structures of the given length.
    unsafe {
        anyhow::ensure!(
            libc::bind(fd, std::ptr::from_ref(&local).cast(), len) == 0,
            "bind {from}: {}",
            std::io::Error::last_os_error()
        );
        anyhow::ensure!(
            libc::connect(fd, std::ptr::from_ref(&remote).cast(), len) == 0,
            "connect {addr}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(stream)
}

/// Sends raw request bytes over TCP from the loopback address `from`.
pub fn raw_tcp_from(from: std::net::Ipv4Addr, addr: &str, request: &[u8]) -> anyhow::Result<Response> {
    let s = connect_from(from, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    exchange(s, request)
}

/// `POST /v1/<action>` with a JSON body over the Unix socket.
pub fn call_unix(socket: &Path, action: &str, params: &Value) -> anyhow::Result<(u16, Value)> {
    let body = serde_json::to_vec(params)?;
    let r = raw_unix(socket, &request("POST", &format!("/v1/{action}"), "", &body))?;
    let v = r.json()?;
    if v.get("RequestId")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        bail!("answer without RequestId: {v}");
    }
    Ok((r.status, v))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The signature headers for a TCP request, as the README documents them,
/// with a nonce of its own (send the same headers twice to replay).
pub fn signature_headers(
    key_id: &str,
    secret: &str,
    method: &str,
    target: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = format!(
        "test-{}-{:08}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let to_sign = format!(
        "{method}\n{target}\n{timestamp}\n{nonce}\n{}",
        hex(&Sha256::digest(body))
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(to_sign.as_bytes());
    let sig = hex(&mac.finalize().into_bytes());
    format!(
        "X-Flowlog-Access-Key-Id: {key_id}\r\nX-Flowlog-Timestamp: {timestamp}\r\nX-Flowlog-Nonce: {nonce}\r\nX-Flowlog-Signature: {sig}\r\n"
    )
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
