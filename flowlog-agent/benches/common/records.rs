//! Synthetic records in a router's shape, for the Logstore and console
//! benchmarks: a few thousand skewed source and destination addresses,
//! ephemeral and well-known ports, mostly TCP, heavy-tailed packet counts.

use flowlog_agent::{
    model::{LogstoreRef, Window},
    record::FlowLogRecord,
    store::Writer,
};

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough for synthetic data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Skewed index in 0..n: small indexes are much more likely.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64
    }
}

pub fn addr(prefix: u8, i: u64) -> String {
    format!("10.{prefix}.{}.{}", (i >> 8) & 0xff, i & 0xff)
}

pub fn window_records(rng: &mut Rng, n: usize, start: i64) -> Vec<FlowLogRecord> {
    const PORTS: [u32; 12] = [443, 80, 53, 22, 8080, 3306, 5432, 6379, 123, 9092, 8443, 25];
    const IFACES: [&str; 4] = ["eth0", "eth1", "eth2", "eth3"];
    (0..n)
        .map(|_| {
            let proto = match rng.below(100) {
                0..80 => 6,
                80..98 => 17,
                _ => 1,
            };
            let (sport, dport) = if proto == 1 {
                (0, 0)
            } else if rng.below(2) == 0 {
                (
                    32_768 + rng.below(28_000) as u32,
                    PORTS[rng.skewed(PORTS.len() as u64) as usize],
                )
            } else {
                (
                    PORTS[rng.skewed(PORTS.len() as u64) as usize],
                    32_768 + rng.below(28_000) as u32,
                )
            };
            let packets = 1 + rng.skewed(5_000);
            let bytes = packets * (40 + rng.below(1460));
            let first = start * 1000 + rng.below(600_000) as i64;
            FlowLogRecord {
                version: 1,
                account_id: Some("1234567890".into()),
                cen_id: Some("cen-7x1abc".into()),
                flow_log_id: "fl-bench".into(),
                interface: Some(IFACES[rng.below(4) as usize].into()),
                netns: None,
                srcaddr: Some(addr(1, rng.skewed(5_000))),
                srcport: Some(sport),
                dstaddr: Some(addr(2, rng.skewed(20_000))),
                dstport: Some(dport),
                protocol: Some(proto),
                direction: Some(if rng.below(2) == 0 { "in" } else { "out" }.into()),
                packets: Some(packets),
                bytes,
                rtt: (proto == 6 && rng.below(10) < 3).then(|| 1_000 + rng.below(100_000) as u32),
                start,
                end: start + 600,
                log_status: "OK".into(),
                tcp_flags: (proto == 6).then(|| [0x18, 0x10, 0x1b, 0x12, 0x11][rng.skewed(5) as usize]),
                first_seen: Some(first),
                last_seen: Some(first + rng.below(600_000) as i64),
                rtt_server_side: None,
                rtt_client_side: None,
                region_id: Some("cn-hangzhou".into()),
                src_region_id: Some("cn-hangzhou".into()),
                dst_region_id: Some(["cn-shanghai", "cn-beijing", ""][rng.below(3) as usize].into()),
                ..Default::default()
            }
        })
        .collect()
}

/// Sorts a window's records as the agent hands them over: by flow key
/// (addresses first), or a benchmark would measure worse compression.
pub fn sort_like_the_agent(records: &mut [FlowLogRecord]) {
    let ip = |a: &Option<String>| a.as_deref().and_then(|s| s.parse::<std::net::Ipv4Addr>().ok());
    records.sort_by_key(|r| {
        (
            ip(&r.srcaddr),
            ip(&r.dstaddr),
            r.interface.clone(),
            r.srcport,
            r.dstport,
        )
    });
}

/// Writes one window of `fl-bench` records as one file.
pub fn write_window(
    writer: &Writer,
    dest: &LogstoreRef,
    start: i64,
    len_secs: i64,
    records: &[FlowLogRecord],
) -> anyhow::Result<()> {
    let window = Window {
        start_ns: i128::from(start) * 1_000_000_000,
        end_ns: i128::from(start + len_secs) * 1_000_000_000,
    };
    writer.write_records(dest, "fl-bench", window, records)?;
    Ok(())
}
