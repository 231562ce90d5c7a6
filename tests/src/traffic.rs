//! Known traffic between test namespaces: UDP datagrams, a TCP transfer
//! (with the kernels' own segment counts), ICMP and ICMPv6 echo.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::netns::Netns;

/// Bounds every wait in this module.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one datagram per entry of `sizes` (payload bytes) from `from` to
/// `dst`, and checks `to` received them all. Returns the sender's port.
pub fn udp(from: &Netns, to: &Netns, dst: SocketAddr, sizes: &[usize]) -> anyhow::Result<u16> {
    udp_from_port(from, to, 0, dst, sizes)
}

/// [`udp`] from a given source port (0: any), so several calls can continue
/// one flow.
pub fn udp_from_port(
    from: &Netns,
    to: &Netns,
    port: u16,
    dst: SocketAddr,
    sizes: &[usize],
) -> anyhow::Result<u16> {
    let any: std::net::IpAddr = if dst.is_ipv4() {
        "0.0.0.0".parse()?
    } else {
        "::".parse()?
    };
    let bind = SocketAddr::new(any, port);
    let listen = SocketAddr::new(
        if dst.is_ipv4() {
            "0.0.0.0".parse()?
        } else {
            "::".parse()?
        },
        dst.port(),
    );
    let rx = to.run(move || UdpSocket::bind(listen))??;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    let tx = from.run(move || UdpSocket::bind(bind))??;
    let port = tx.local_addr()?.port();
    let mut buf = vec![0u8; 65536];
    let mut received = 0;
    for &size in sizes {
        let payload = vec![0x5a; size];
        tx.send_to(&payload, dst)
            .with_context(|| format!("sending to {dst}"))?;
        // Receive as we go so the receiver's buffer never overflows.
        match rx.recv_from(&mut buf) {
            Ok((n, _)) if n == size => received += 1,
            Ok((n, _)) => bail!("received {n} bytes, sent {size}"),
            Err(e) => bail!("datagram {received} to {dst} lost: {e}"),
        }
    }
    ensure!(received == sizes.len(), "received {received} of {}", sizes.len());
    Ok(port)
}

/// What both ends' kernels report about a finished TCP connection.
#[derive(Clone, Copy, Debug)]
pub struct TcpOutcome {
    pub client_port: u16,
    /// Segments the client sent (including SYN, ACKs, FIN, retransmits).
    pub client_segs_out: u32,
    pub server_segs_out: u32,
    pub client_segs_in: u32,
    pub server_segs_in: u32,
    pub client_retrans: u32,
    pub server_retrans: u32,
    /// The client's own time from calling `connect()` to its return: the
    /// handshake as the client lived it. Every hook's SYN → SYN-ACK lies
    /// inside it (the SYN leaves after the call, the SYN-ACK wakes it).
    pub connect: Duration,
}

fn tcp_info(fd: &impl AsRawFd) -> anyhow::Result<libc::tcp_info> {
    // SAFETY: all-zero is valid for this plain C struct.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    ensure!(rc == 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    Ok(info)
}

/// Transfers `bytes` from a client in `from` to a server in `to` at `dst`,
/// closes both directions cleanly, and reads TCP_INFO once the last ACK has
/// been exchanged.
pub fn tcp(from: &Netns, to: &Netns, dst: SocketAddr, bytes: usize) -> anyhow::Result<TcpOutcome> {
    let listen = SocketAddr::new(
        if dst.is_ipv4() {
            "0.0.0.0".parse()?
        } else {
            "::".parse()?
        },
        dst.port(),
    );
    let listener = to.run(move || TcpListener::bind(listen))??;
    let server = std::thread::spawn(move || -> anyhow::Result<libc::tcp_info> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        ensure!(got == bytes, "server received {got} of {bytes}");
        s.shutdown(std::net::Shutdown::Write)?;
        // Wait for the client's ACK of our FIN before reading counters.
        std::thread::sleep(Duration::from_millis(300));
        tcp_info(&s)
    });
    let (mut c, connect) = connect_timed(from, dst)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    let client_port = c.local_addr()?.port();
    let chunk = vec![0xa5u8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n])?;
        left -= n;
    }
    c.shutdown(std::net::Shutdown::Write)?;
    let mut sink = [0u8; 64];
    ensure!(c.read(&mut sink)? == 0, "server sent data");
    std::thread::sleep(Duration::from_millis(300));
    let ci = tcp_info(&c)?;
    let si = server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    Ok(TcpOutcome {
        client_port,
        client_segs_out: ci.tcpi_segs_out,
        server_segs_out: si.tcpi_segs_out,
        client_segs_in: ci.tcpi_segs_in,
        server_segs_in: si.tcpi_segs_in,
        client_retrans: ci.tcpi_total_retrans,
        server_retrans: si.tcpi_total_retrans,
        connect,
    })
}

/// Connects from `from` to `dst`, timing `connect()` itself (inside the
/// namespace's thread, so entering the namespace is not counted).
pub fn connect_timed(from: &Netns, dst: SocketAddr) -> anyhow::Result<(TcpStream, Duration)> {
    let (stream, took) = from.run(move || {
        let t = std::time::Instant::now();
        let s = TcpStream::connect_timeout(&dst, IO_TIMEOUT);
        (s, t.elapsed())
    })?;
    Ok((stream?, took))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `count` echo requests with `payload` bytes from `from` to `dst`
/// (ICMP or ICMPv6 by address family) and waits for every reply.
pub fn ping(from: &Netns, dst: IpAddr, count: u16, payload: usize) -> anyhow::Result<()> {
    let (domain, proto, request, reply) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8),
    };
    let fd = from.run(move || {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        // SAFETY: fresh fd owned from here on.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    })?;
    let fd = fd.ok_or_else(|| anyhow::anyhow!("raw ICMP socket: {}", std::io::Error::last_os_error()))?;
    let sock = socket2_like::Raw(fd);
    let id = (std::process::id() & 0xffff) as u16;
    for seq in 0..count {
        let mut msg = vec![request, 0, 0, 0];
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(&seq.to_be_bytes());
        msg.extend(std::iter::repeat_n(0x42u8, payload));
        if dst.is_ipv4() {
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        }
        sock.send_to(&msg, dst)?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            ensure!(Instant::now() < deadline, "no echo reply {seq} from {dst}");
            let buf = sock.recv(Duration::from_millis(200))?;
            let Some(buf) = buf else { continue };
            // Raw IPv4 sockets return the IP header too.
            let icmp = if dst.is_ipv4() {
                &buf[((buf[0] & 0x0f) as usize) * 4..]
            } else {
                &buf[..]
            };
            if icmp.len() >= 8
                && icmp[0] == reply
                && icmp[4..6] == id.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                break;
            }
        }
    }
    Ok(())
}

/// Just enough of a raw-socket wrapper for `ping`.
mod socket2_like {
    use std::{
        net::IpAddr,
        os::fd::{AsRawFd, OwnedFd},
        time::Duration,
    };

    pub struct Raw(pub OwnedFd);

    fn sockaddr(dst: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: all-zero sockaddr_storage is valid.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match dst {
            IpAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage.
                unsafe { std::ptr::write(std::ptr::from_mut(&mut ss).cast(), sin) };
                size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr { s6_addr: a.octets() },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage.
                unsafe { std::ptr::write(std::ptr::from_mut(&mut ss).cast(), sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }

    impl Raw {
        pub fn send_to(&self, msg: &[u8], dst: IpAddr) -> anyhow::Result<()> {
            let (ss, len) = sockaddr(dst);
            // SAFETY: valid buffer and address.
            let n = unsafe {
                libc::sendto(
                    self.0.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    std::ptr::from_ref(&ss).cast(),
                    len,
                )
            };
            anyhow::ensure!(
                n == msg.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
            Ok(())
        }

        /// One datagram, or `None` after `wait`.
        pub fn recv(&self, wait: Duration) -> anyhow::Result<Option<Vec<u8>>> {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
            if rc <= 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; 65536];
            // SAFETY: valid buffer.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            anyhow::ensure!(n >= 0, "recv: {}", std::io::Error::last_os_error());
            buf.truncate(n as usize);
            Ok(Some(buf))
        }
    }
}
