//! A "wire with latency": two TAP devices in two namespaces, joined by
//! threads that carry each frame across after a fixed delay. This kernel has
//! no netem; this gives RTT tests a known one-way delay on a link.

use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::netns::Netns;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Decides per frame (going from the first to the second TAP) whether the
/// wire drops it.
pub type DropRule = Box<dyn FnMut(&[u8]) -> bool + Send>;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TAP `name` in `ns` and returns its queue fd.
fn open_tap(ns: &Netns, name: &str) -> anyhow::Result<OwnedFd> {
    let name = name.to_owned();
    ns.run(move || -> anyhow::Result<OwnedFd> {
        let path = c"/dev/net/tun";
        // SAFETY: open(2) with a valid path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        ensure!(fd >= 0, "open /dev/net/tun: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
            *d = s;
        }
        // SAFETY: TUNSETIFF with a valid ifreq.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) };
        ensure!(rc == 0, "TUNSETIFF {name}: {}", std::io::Error::last_os_error());
        Ok(fd)
    })?
}

/// A running wire; dropping it stops the threads and removes the TAPs.
pub struct DelayWire {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    log: Log,
}

/// One TCP segment the wire carried: the wire's own record of when it took
/// the frame off one side and put it on the other — an independent measure
/// of the delay a test's traffic actually met, whatever load the machine
/// was under.
#[derive(Clone, Copy, Debug)]
pub struct Passage {
    /// Carried from the first TAP to the second.
    pub forward: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub flags: u8,
    /// Read off the first TAP (after the sending side's hooks saw it leave).
    pub taken: Instant,
    /// Handed to the second TAP, just before the write (before the
    /// receiving side's hooks can see it).
    pub delivered: Instant,
}

type Log = Arc<std::sync::Mutex<Vec<Passage>>>;

/// The TCP ports and flags of an Ethernet frame, if it carries TCP.
fn tcp_of(f: &[u8]) -> Option<(u16, u16, u8)> {
    let (l3, proto) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 => (14 + usize::from(f.get(14)? & 0x0f) * 4, *f.get(14 + 9)?),
        0x86dd => (14 + 40, *f.get(14 + 6)?),
        _ => return None,
    };
    if proto != 6 {
        return None;
    }
    let port = |at: usize| Some(u16::from_be_bytes([*f.get(l3 + at)?, *f.get(l3 + at + 1)?]));
    Some((port(0)?, port(2)?, *f.get(l3 + 13)?))
}

impl DelayWire {
    /// The wire's own measure of a handshake's round trip beyond its first
    /// side: from taking the client's (last) SYN off the first side to
    /// delivering the server's SYN-ACK back onto it.
    pub fn handshake(&self, client_port: u16) -> Option<Duration> {
        let log = self.log.lock().ok()?;
        let syn = log
            .iter()
            .rev()
            .find(|p| p.forward && p.src_port == client_port && p.flags & 0x12 == 0x02)?;
        let syn_ack = log.iter().find(|p| {
            !p.forward && p.dst_port == client_port && p.flags & 0x12 == 0x12 && p.taken >= syn.taken
        })?;
        Some(syn_ack.delivered.saturating_duration_since(syn.taken))
    }
}

impl DelayWire {
    /// Joins TAP `a_name` (created in `a`) and TAP `b_name` (in `b`); each
    /// frame arrives `delay` after it was sent, in both directions. `drop_ab`
    /// may discard frames going from `a` to `b`.
    pub fn new(
        a: &Netns,
        a_name: &str,
        b: &Netns,
        b_name: &str,
        delay: Duration,
        drop_ab: Option<DropRule>,
    ) -> anyhow::Result<Self> {
        let fa = Arc::new(open_tap(a, a_name).context("TAP on side a")?);
        let fb = Arc::new(open_tap(b, b_name).context("TAP on side b")?);
        let stop = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let threads = vec![
            carry(
                fa.clone(),
                fb.clone(),
                delay,
                drop_ab,
                stop.clone(),
                (true, log.clone()),
            ),
            carry(fb, fa, delay, None, stop.clone(), (false, log.clone())),
        ];
        Ok(Self { stop, threads, log })
    }
}

impl Drop for DelayWire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One direction: read frames from `from`, write each to `to` once its
/// delay has passed. One thread does both, polling with a timeout no longer
/// than the next frame's due time, so the added delay is accurate to well
/// under a millisecond.
fn carry(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    delay: Duration,
    mut drop_rule: Option<DropRule>,
    stop: Arc<AtomicBool>,
    (forward, log): (bool, Log),
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        // Real-time priority (best effort): on a busy 2-core machine a
        // late wake-up would add to the delay the tests measure.
        let param = libc::sched_param { sched_priority: 50 };
        // SAFETY: changes only this thread's scheduling policy.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        // (due, taken, frame)
        let mut queue: VecDeque<(Instant, Instant, Vec<u8>)> = VecDeque::new();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while queue.front().is_some_and(|(due, _, _)| *due <= now) {
                if let Some((_, taken, frame)) = queue.pop_front() {
                    // Before the write: the kernel may run the frame through
                    // the far side's hooks inside it, and the record must not
                    // end after they saw it.
                    let delivered = Instant::now();
                    // SAFETY: valid buffer; a failed write is a lost frame,
                    // as on a real wire.
                    unsafe { libc::write(to.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
                    if let Some((src_port, dst_port, flags)) = tcp_of(&frame)
                        && flags & 0x02 != 0
                        && let Ok(mut l) = log.lock()
                    {
                        l.push(Passage {
                            forward,
                            src_port,
                            dst_port,
                            flags,
                            taken,
                            delivered,
                        });
                    }
                }
            }
            let wait = queue
                .front()
                .map_or(Duration::from_millis(20), |(due, _, _)| {
                    due.saturating_duration_since(now)
                })
                .min(Duration::from_millis(20));
            let mut pfd = libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Sub-millisecond waits round up to 1 ms in poll(2); spin them.
            let ms = if wait < Duration::from_millis(1) {
                0
            } else {
                wait.as_millis() as i32
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            // SAFETY: valid buffer.
            let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                continue;
            }
            let frame = buf[..n as usize].to_vec();
            if drop_rule.as_mut().is_some_and(|rule| rule(&frame)) {
                continue;
            }
            let taken = Instant::now();
            queue.push_back((taken + delay, taken, frame));
        }
    })
}

/// A rule that drops the first TCP SYN (without ACK) crossing the wire.
pub fn drop_first_syn() -> DropRule {
    let mut dropped = false;
    Box::new(move |f: &[u8]| {
        if dropped || f.len() < 14 + 20 + 20 {
            return false;
        }
        let is_syn = tcp_of(f).is_some_and(|(_, _, fl)| fl & 0x12 == 0x02);
        if is_syn {
            dropped = true;
        }
        is_syn
    })
}
