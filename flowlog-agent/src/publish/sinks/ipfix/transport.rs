//! Sending messages to one collector: a connected UDP socket, or a TCP
//! connection made when needed and dropped when it fails.

use std::{
    io::{self, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _, UdpSocket},
    time::Duration,
};

use super::config::{Collector, Transport};

/// How long a TCP connection may take to open, and one write to finish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address} resolves to nothing")))
}

impl Connection {
    /// Opens a connection to `c` (for UDP, a socket connected to it).
    pub fn open(c: &Collector) -> io::Result<Self> {
        let addr = resolve(&c.address)?;
        match c.transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Ok(Self::Udp(socket))
            }
            Transport::Tcp => {
                let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                stream.set_nodelay(true)?;
                Ok(Self::Tcp(stream))
            }
        }
    }

    /// Whether the collector still holds its end. A collector never sends
    /// to an exporter, so a TCP connection with something to read has been
    /// closed (or reset) by it; a UDP socket always looks alive.
    pub fn alive(&self) -> bool {
        let Self::Tcp(stream) = self else {
            return true;
        };
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let alive = matches!(stream.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        alive && stream.set_nonblocking(false).is_ok()
    }

    /// Sends one message. Over UDP a send that reports an earlier
    /// datagram's refusal (ICMP port unreachable) is tried once more, as
    /// that error is about the past, not this message.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp(s) => match s.send(message) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => s.send(message).map(|_| ()),
                Err(e) => Err(e),
            },
            Self::Tcp(s) => s.write_all(message),
        }
    }
}
