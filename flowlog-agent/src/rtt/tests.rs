//! Handshake matching cases, with made-up stamps (ms → ns).
use super::*;

const C: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1];
const S: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2];
const MS: u64 = 1_000_000;

fn key(from_client: bool, cport: u16) -> FlowKey {
    let (src, sport, dst, dport) = if from_client {
        (C, cport, S, 80)
    } else {
        (S, 80, C, cport)
    };
    FlowKey {
        src_addr: src,
        dst_addr: dst,
        ifindex: 7,
        src_port: sport,
        dst_port: dport,
        protocol: 6,
        direction: 0,
        ip_version: 4,
        generation: 0,
    }
}

fn ev(from_client: bool, cport: u16, flags: u16, seq: u32, ack: u32, ms: u64) -> HandshakeEvent {
    HandshakeEvent {
        key: key(from_client, cport),
        tcp_flags: flags,
        _pad: [0; 2],
        seq,
        ack,
        ts_ns: ms * MS,
    }
}

fn syn(cport: u16, seq: u32, ms: u64) -> HandshakeEvent {
    ev(true, cport, TCP_SYN, seq, 0, ms)
}
fn synack(cport: u16, seq: u32, ack: u32, ms: u64) -> HandshakeEvent {
    ev(false, cport, TCP_SYN | TCP_ACK, seq, ack, ms)
}
fn ack(cport: u16, seq: u32, ack: u32, ms: u64) -> HandshakeEvent {
    ev(true, cport, TCP_ACK, seq, ack, ms)
}

fn feed(t: &mut RttTracker, evs: &[HandshakeEvent]) {
    for e in evs {
        t.observe(e);
    }
}

#[test]
fn router_sees_both_legs() {
    let mut t = RttTracker::default();
    feed(
        &mut t,
        &[
            syn(1000, 100, 10),
            synack(1000, 500, 101, 50),
            ack(1000, 101, 501, 52),
        ],
    );
    let want = Rtt {
        rtt_us: 42_000,
        server_side_us: 40_000,
        client_side_us: 2_000,
    };
    // Records of both directions carry it.
    assert_eq!(t.lookup(&key(true, 1000)), Some(want));
    assert_eq!(t.lookup(&key(false, 1000)), Some(want));
    assert_eq!(t.stats.measured, 1);
    assert_eq!(t.pending_len(), 0);
}

#[test]
fn sequence_numbers_must_chain() {
    let mut t = RttTracker::default();
    // SYN-ACK acknowledging another SYN, ACK for another SYN-ACK.
    feed(
        &mut t,
        &[syn(1, 100, 0), synack(1, 500, 999, 40), ack(1, 101, 501, 41)],
    );
    assert_eq!(t.lookup(&key(true, 1)), None);
    feed(&mut t, &[synack(1, 500, 101, 40), ack(1, 101, 777, 41)]);
    assert_eq!(t.lookup(&key(true, 1)), None);
    feed(&mut t, &[ack(1, 101, 501, 42)]);
    assert_eq!(t.lookup(&key(true, 1)).map(|r| r.rtt_us), Some(42_000));
}

#[test]
fn retransmitted_syn_gives_no_rtt() {
    let mut t = RttTracker::default();
    feed(
        &mut t,
        &[
            syn(2, 100, 0),
            syn(2, 100, 1000),
            synack(2, 9, 101, 1040),
            ack(2, 101, 10, 1041),
        ],
    );
    assert_eq!(t.lookup(&key(true, 2)), None);
    assert_eq!(t.stats.ambiguous, 1);
}

#[test]
fn retransmitted_synack_gives_no_rtt() {
    let mut t = RttTracker::default();
    feed(
        &mut t,
        &[
            syn(3, 100, 0),
            synack(3, 9, 101, 40),
            synack(3, 9, 101, 1040),
            ack(3, 101, 10, 1041),
        ],
    );
    assert_eq!(t.lookup(&key(true, 3)), None);
}

#[test]
fn simultaneous_open_gives_no_rtt() {
    let mut t = RttTracker::default();
    // Both ends send a SYN; each then answers with a SYN-ACK.
    let other_syn = ev(false, 4, TCP_SYN, 900, 0, 1);
    feed(
        &mut t,
        &[
            syn(4, 100, 0),
            other_syn,
            synack(4, 901, 101, 5),
            ack(4, 101, 902, 6),
        ],
    );
    assert_eq!(t.lookup(&key(true, 4)), None);
}

#[test]
fn port_reuse_replaces_the_old_connection() {
    let mut t = RttTracker::default();
    feed(
        &mut t,
        &[syn(5, 100, 0), synack(5, 9, 101, 40), ack(5, 101, 10, 40)],
    );
    assert_eq!(t.lookup(&key(true, 5)).map(|r| r.rtt_us), Some(40_000));
    // Same tuple, new connection: the old RTT is gone until this one completes.
    feed(&mut t, &[syn(5, 7000, 5000)]);
    assert_eq!(t.lookup(&key(true, 5)), None);
    feed(&mut t, &[synack(5, 3, 7001, 5010), ack(5, 7001, 4, 5010)]);
    assert_eq!(t.lookup(&key(true, 5)).map(|r| r.rtt_us), Some(10_000));
}

#[test]
fn unanswered_syns_expire_and_state_is_bounded() {
    let limits = RttLimits {
        max_pending: 10,
        max_known: 4,
        pending_ttl_ns: 1_000 * MS,
        known_idle_windows: 2,
    };
    let mut t = RttTracker::new(limits);
    for p in 0..20 {
        t.observe(&syn(100 + p, 1, 0));
    }
    assert_eq!(t.pending_len(), 10);
    assert_eq!(t.stats.dropped_full, 10);
    t.end_window(2_000 * MS);
    assert_eq!(t.pending_len(), 0);
    assert_eq!(t.stats.expired, 10);
    for p in 0..6u16 {
        feed(
            &mut t,
            &[syn(p, 1, 3000), synack(p, 9, 2, 3001), ack(p, 2, 10, 3002)],
        );
    }
    assert_eq!(t.known_len(), 4);
}

#[test]
fn remembered_rtt_lasts_while_used() {
    let mut t = RttTracker::new(RttLimits {
        known_idle_windows: 2,
        ..RttLimits::default()
    });
    feed(&mut t, &[syn(6, 1, 0), synack(6, 9, 2, 30), ack(6, 2, 10, 30)]);
    // A long transfer: its records keep the RTT window after window.
    for _ in 0..5 {
        assert_eq!(t.lookup(&key(true, 6)).map(|r| r.rtt_us), Some(30_000));
        t.end_window(0);
    }
    // Once no record asks for it, it is forgotten.
    t.end_window(0);
    t.end_window(0);
    assert_eq!(t.lookup(&key(true, 6)), None);
}

#[test]
fn out_of_order_stamps_give_no_rtt() {
    let mut t = RttTracker::default();
    feed(&mut t, &[syn(8, 1, 50), synack(8, 9, 2, 40), ack(8, 2, 10, 60)]);
    assert_eq!(t.lookup(&key(true, 8)), None);
}
