//! Round-trip times from TCP handshakes: pure matching of SYN, SYN-ACK and
//! completing-ACK samples, per attachment.
//!
//! At the point of observation (an interface), a handshake shows three
//! stamps: SYN (t0), SYN-ACK (t1), ACK (t2). `server_side = t1 − t0` is the
//! time from here to the server and back, `client_side = t2 − t1` from here
//! to the client and back, and `rtt = t2 − t0` their sum: the full
//! client↔server round trip wherever the interface sits. On a client host
//! the server side is the whole RTT (the client side is the host's own ACK
//! latency); on a router both legs are real; on a server host the client
//! side is.
//!
//! Anything ambiguous yields no RTT rather than a guess: a retransmitted
//! SYN or SYN-ACK (Karn's rule), simultaneous open, sequence numbers that do
//! not chain (x → ack x+1 → ack y+1), stamps out of order, a SYN-ACK that
//! never comes (pending state expires). A new SYN on a tuple (port reuse)
//! forgets the RTT remembered for the old connection. Both tables are
//! bounded.

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use flowlog_common::{FlowKey, HandshakeEvent, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// One connection as seen on one attachment, oriented client → server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub ifindex: u32,
    pub ip_version: u8,
    pub client: ([u8; 16], u16),
    pub server: ([u8; 16], u16),
}

impl ConnKey {
    /// The connection of a packet sent by the client.
    fn from_client(k: &FlowKey) -> Self {
        Self {
            ifindex: k.ifindex,
            ip_version: k.ip_version,
            client: (k.src_addr, k.src_port),
            server: (k.dst_addr, k.dst_port),
        }
    }

    /// The connection of a packet sent by the server.
    fn from_server(k: &FlowKey) -> Self {
        Self {
            ifindex: k.ifindex,
            ip_version: k.ip_version,
            client: (k.dst_addr, k.dst_port),
            server: (k.src_addr, k.src_port),
        }
    }
}

/// A measured handshake, microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtt {
    pub rtt_us: u32,
    pub server_side_us: u32,
    pub client_side_us: u32,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    syn_ts: u64,
    syn_seq: u32,
    /// (stamp, seq) of the SYN-ACK.
    synack: Option<(u64, u32)>,
    ambiguous: bool,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    rtt: Rtt,
    /// Window counter when last attached to a record.
    last_used: u64,
}

/// Limits on what the tracker keeps.
#[derive(Clone, Copy, Debug)]
pub struct RttLimits {
    pub max_pending: usize,
    pub max_known: usize,
    /// A handshake not completed within this is forgotten.
    pub pending_ttl_ns: u64,
    /// A known RTT not used by any record for this many windows is forgotten.
    pub known_idle_windows: u64,
}

impl Default for RttLimits {
    fn default() -> Self {
        Self {
            max_pending: 65_536,
            max_known: 262_144,
            pending_ttl_ns: 30_000_000_000,
            known_idle_windows: 3,
        }
    }
}

/// Counters of what the tracker did, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttStats {
    pub measured: u64,
    pub ambiguous: u64,
    pub expired: u64,
    pub dropped_full: u64,
}

#[derive(Debug, Default)]
pub struct RttTracker {
    pending: HashMap<ConnKey, Pending>,
    known: HashMap<ConnKey, Known>,
    limits: RttLimits,
    window: u64,
    pub stats: RttStats,
}

fn us(micros: u64) -> u32 {
    u32::try_from(micros).unwrap_or(u32::MAX)
}

impl RttTracker {
    pub fn new(limits: RttLimits) -> Self {
        Self {
            limits,
            ..Default::default()
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Feeds one handshake sample.
    pub fn observe(&mut self, e: &HandshakeEvent) {
        let f = e.tcp_flags;
        if f & TCP_RST != 0 {
            return;
        }
        if f & TCP_SYN != 0 && f & TCP_ACK == 0 {
            self.on_syn(e);
        } else if f & TCP_SYN != 0 {
            self.on_synack(e);
        } else if f & (TCP_ACK | TCP_FIN) == TCP_ACK {
            self.on_ack(e);
        }
    }

    fn on_syn(&mut self, e: &HandshakeEvent) {
        let conn = ConnKey::from_client(&e.key);
        // The other side sent a SYN too: simultaneous open, no clean roles.
        let reverse = ConnKey::from_server(&e.key);
        if let Some(p) = self.pending.get_mut(&reverse)
            && p.synack.is_none()
        {
            p.ambiguous = true;
            return;
        }
        match self.pending.get_mut(&conn) {
            Some(p) if p.syn_seq == e.seq => {
                // Retransmitted SYN: which copy the SYN-ACK answers is unknown.
                p.ambiguous = true;
                return;
            }
            _ => {}
        }
        // A new connection on this tuple: the old RTT no longer applies.
        self.known.remove(&conn);
        if self.pending.len() >= self.limits.max_pending && !self.pending.contains_key(&conn) {
            self.stats.dropped_full += 1;
            return;
        }
        self.pending.insert(
            conn,
            Pending {
                syn_ts: e.ts_ns,
                syn_seq: e.seq,
                synack: None,
                ambiguous: false,
            },
        );
    }

    fn on_synack(&mut self, e: &HandshakeEvent) {
        let conn = ConnKey::from_server(&e.key);
        let Some(p) = self.pending.get_mut(&conn) else {
            return;
        };
        if e.ack != p.syn_seq.wrapping_add(1) {
            return;
        }
        match p.synack {
            Some(_) => p.ambiguous = true, // retransmitted SYN-ACK
            None => p.synack = Some((e.ts_ns, e.seq)),
        }
    }

    fn on_ack(&mut self, e: &HandshakeEvent) {
        let conn = ConnKey::from_client(&e.key);
        let Some(p) = self.pending.get(&conn).copied() else {
            return;
        };
        let Some((synack_ts, synack_seq)) = p.synack else {
            return;
        };
        if e.ack != synack_seq.wrapping_add(1) || e.seq != p.syn_seq.wrapping_add(1) {
            return;
        }
        self.pending.remove(&conn);
        if p.ambiguous || !(p.syn_ts <= synack_ts && synack_ts <= e.ts_ns) {
            self.stats.ambiguous += 1;
            return;
        }
        if self.known.len() >= self.limits.max_known && !self.known.contains_key(&conn) {
            self.stats.dropped_full += 1;
            return;
        }
        self.stats.measured += 1;
        // Whole microseconds per stamp first, so the legs add up exactly.
        let (t0, t1, t2) = (p.syn_ts / 1000, synack_ts / 1000, e.ts_ns / 1000);
        self.known.insert(
            conn,
            Known {
                rtt: Rtt {
                    rtt_us: us(t2 - t0),
                    server_side_us: us(t1 - t0),
                    client_side_us: us(t2 - t1),
                },
                last_used: self.window,
            },
        );
    }

    /// The RTT of the connection a TCP flow record belongs to (either
    /// direction), marking it as still in use.
    pub fn lookup(&mut self, k: &FlowKey) -> Option<Rtt> {
        let window = self.window;
        for conn in [ConnKey::from_client(k), ConnKey::from_server(k)] {
            if let Some(known) = self.known.get_mut(&conn) {
                known.last_used = window;
                return Some(known.rtt);
            }
        }
        None
    }

    /// Ends a window: expires handshakes older than the TTL (by the kernel
    /// monotonic clock `now_ns`) and RTTs no record used lately.
    pub fn end_window(&mut self, now_ns: u64) {
        let ttl = self.limits.pending_ttl_ns;
        let before = self.pending.len();
        self.pending.retain(|_, p| now_ns.saturating_sub(p.syn_ts) <= ttl);
        self.stats.expired += (before - self.pending.len()) as u64;
        let (window, idle) = (self.window, self.limits.known_idle_windows);
        self.known
            .retain(|_, k| window.saturating_sub(k.last_used) < idle);
        self.window += 1;
    }
}
