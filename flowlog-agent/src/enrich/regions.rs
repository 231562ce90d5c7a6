//! The CIDR → region table: longest-prefix match for IPv4 and IPv6.
//!
//! Prefixes nest (10.0.0.0/8 around 10.1.0.0/16) but never partly overlap,
//! so the table is flattened once, when loaded, into disjoint address
//! ranges sorted by start, each naming the entry of the longest prefix
//! covering it. A lookup is then one binary search over a flat array: no
//! per-level walk, no allocation, and the same cost whatever the nesting —
//! which keeps enrichment of a million-flow window cheap next to the drain.

use crate::model::validate::label_ok;

use std::{
    net::IpAddr,
    sync::{Arc, RwLock},
};

/// One row of the table, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionEntry {
    pub cidr: String,
    pub region_id: String,
    /// Network (VPC) name, if the operator gives one.
    pub network: Option<String>,
    /// Line of the configuration file it came from (for error messages).
    pub line: usize,
}

/// What a matched address is labelled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub region_id: String,
    pub network: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionTableError {
    #[error("line {line}: bad CIDR {cidr:?}: {reason}")]
    BadCidr {
        line: usize,
        cidr: String,
        reason: String,
    },
    #[error("line {line}: {cidr} is already mapped on line {first}")]
    Duplicate { line: usize, cidr: String, first: usize },
    #[error("line {line}: {what} {value:?} must be 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName {
        line: usize,
        what: &'static str,
        value: String,
    },
    #[error("the region table has {0} entries; at most {MAX_ENTRIES} are allowed")]
    TooLarge(usize),
}

/// Bound on the table (the flattened form holds at most 2n+1 ranges).
pub const MAX_ENTRIES: usize = 1_000_000;

/// One disjoint range of addresses and the entry it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span<T> {
    first: T,
    last: T,
    entry: u32,
}

/// The loaded table; cheap to share (`Arc`) between windows.
#[derive(Debug, Default)]
pub struct RegionTable {
    entries: Vec<Region>,
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
}

/// The table in force, shared by the engine (each window takes the one in
/// force when it starts) and the reloads that swap it.
#[derive(Clone, Debug, Default)]
pub struct SharedRegions(Arc<RwLock<Arc<RegionTable>>>);

impl SharedRegions {
    pub fn new(table: RegionTable) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(table))))
    }

    /// The table in force now.
    pub fn current(&self) -> Arc<RegionTable> {
        // A panicked writer swapped an Arc or nothing: the value is whole.
        match self.0.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `table` in force.
    pub fn replace(&self, table: RegionTable) {
        let table = Arc::new(table);
        match self.0.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

/// A parsed prefix: the first and last address it covers.
enum Prefix {
    V4(u32, u32),
    V6(u128, u128),
}

/// Integer address types: parsing and flattening work the same over both.
trait Addr:
    Copy + Ord + std::ops::BitAnd<Output = Self> + std::ops::BitOr<Output = Self> + std::ops::Not<Output = Self>
{
    const BITS: u8;
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
    /// The host bits of a prefix of `len` bits (all of them for /0).
    fn host_mask(len: u8) -> Self;
    fn show(self) -> String;
}

macro_rules! addr {
    ($t:ty, $ip:ty) => {
        impl Addr for $t {
            const BITS: u8 = <$t>::BITS as u8;
            fn next(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn prev(self) -> Option<Self> {
                self.checked_sub(1)
            }
            fn host_mask(len: u8) -> Self {
                <$t>::MAX.checked_shr(u32::from(len)).unwrap_or(0)
            }
            fn show(self) -> String {
                <$ip>::from(self).to_string()
            }
        }
    };
}
addr!(u32, std::net::Ipv4Addr);
addr!(u128, std::net::Ipv6Addr);

/// The range `a/len` covers; refused when `len` is too long or `a` has
/// host bits set.
fn range<T: Addr>(a: T, len: u8) -> Result<(T, T), String> {
    if len > T::BITS {
        return Err(format!("prefix length {len} is over {}", T::BITS));
    }
    let host = T::host_mask(len);
    let net = a & !host;
    if net != a {
        return Err(format!("host bits are set (the network is {}/{len})", net.show()));
    }
    Ok((net, net | host))
}

fn parse_cidr(line: usize, cidr: &str) -> Result<Prefix, RegionTableError> {
    let bad = |reason: String| RegionTableError::BadCidr {
        line,
        cidr: cidr.to_owned(),
        reason,
    };
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/LENGTH".into()))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("{addr:?} is not an IP address")))?;
    let len: u8 = len
        .parse()
        .map_err(|_| bad(format!("{len:?} is not a prefix length")))?;
    match addr {
        IpAddr::V4(a) => range(u32::from(a), len).map(|(f, l)| Prefix::V4(f, l)),
        IpAddr::V6(a) => range(u128::from(a), len).map(|(f, l)| Prefix::V6(f, l)),
    }
    .map_err(bad)
}

/// Nested prefixes (first, last, entry) → disjoint ranges where the
/// innermost prefix wins. `prefixes` must be sorted by first ascending,
/// then by last descending (outer before inner).
fn flatten<T: Addr>(prefixes: &[(T, T, u32)]) -> Vec<Span<T>> {
    let mut out: Vec<Span<T>> = Vec::with_capacity(prefixes.len() * 2);
    let mut push = |first: T, last: T, entry: u32| {
        if let Some(prev) = out.last_mut()
            && prev.entry == entry
            && prev.last.next() == Some(first)
        {
            prev.last = last;
            return;
        }
        out.push(Span { first, last, entry });
    };
    // Prefixes containing the current position, outermost first; `cursor`
    // is the first address not yet emitted (None: past the end).
    let mut open: Vec<(T, u32)> = Vec::new();
    let mut cursor: Option<T> = None;
    let close_until = |open: &mut Vec<(T, u32)>,
                       cursor: &mut Option<T>,
                       before: Option<T>,
                       push: &mut dyn FnMut(T, T, u32)| {
        while let Some(&(last, entry)) = open.last() {
            if before.is_some_and(|b| last >= b) {
                break;
            }
            if let Some(c) = *cursor
                && c <= last
            {
                push(c, last, entry);
            }
            *cursor = last.next();
            open.pop();
        }
    };
    for &(first, last, entry) in prefixes {
        close_until(&mut open, &mut cursor, Some(first), &mut push);
        if let (Some(&(_, outer)), Some(c)) = (open.last(), cursor)
            && c < first
            && let Some(end) = first.prev()
        {
            push(c, end, outer);
        }
        cursor = Some(first);
        open.push((last, entry));
    }
    close_until(&mut open, &mut cursor, None, &mut push);
    out
}

fn find<T: Addr>(spans: &[Span<T>], a: T) -> Option<u32> {
    let i = spans.partition_point(|s| s.first <= a);
    let s = spans.get(i.checked_sub(1)?)?;
    (a <= s.last).then_some(s.entry)
}

impl RegionTable {
    /// Builds the table, refusing bad CIDRs and names, and a prefix given
    /// twice (which of the two would win is not for us to guess).
    pub fn new(rows: &[RegionEntry]) -> Result<Self, RegionTableError> {
        if rows.len() > MAX_ENTRIES {
            return Err(RegionTableError::TooLarge(rows.len()));
        }
        let mut entries = Vec::with_capacity(rows.len());
        let mut v4: Vec<(u32, u32, u32, usize)> = Vec::new();
        let mut v6: Vec<(u128, u128, u32, usize)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if !label_ok(&row.region_id) {
                return Err(RegionTableError::BadName {
                    line: row.line,
                    what: "region-id",
                    value: row.region_id.clone(),
                });
            }
            if let Some(n) = &row.network
                && !label_ok(n)
            {
                return Err(RegionTableError::BadName {
                    line: row.line,
                    what: "network",
                    value: n.clone(),
                });
            }
            let idx = i as u32;
            match parse_cidr(row.line, &row.cidr)? {
                Prefix::V4(first, last) => v4.push((first, last, idx, row.line)),
                Prefix::V6(first, last) => v6.push((first, last, idx, row.line)),
            }
            entries.push(Region {
                region_id: row.region_id.clone(),
                network: row.network.clone(),
            });
        }
        fn sorted<T: Addr + std::fmt::Debug>(
            mut p: Vec<(T, T, u32, usize)>,
            rows: &[RegionEntry],
        ) -> Result<Vec<(T, T, u32)>, RegionTableError> {
            // Outer before inner; equal prefixes side by side, first line first.
            p.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.3.cmp(&b.3)));
            for w in p.windows(2) {
                if w[0].0 == w[1].0 && w[0].1 == w[1].1 {
                    return Err(RegionTableError::Duplicate {
                        line: w[1].3,
                        cidr: rows[w[1].2 as usize].cidr.clone(),
                        first: w[0].3,
                    });
                }
            }
            Ok(p.into_iter().map(|(f, l, e, _)| (f, l, e)).collect())
        }
        let v4 = sorted(v4, rows)?;
        let v6 = sorted(v6, rows)?;
        Ok(Self {
            entries,
            v4: flatten(&v4),
            v6: flatten(&v6),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The region of an IPv4 address (host order).
    pub fn lookup_v4(&self, a: u32) -> Option<&Region> {
        find(&self.v4, a).and_then(|i| self.entries.get(i as usize))
    }

    pub fn lookup_v6(&self, a: u128) -> Option<&Region> {
        find(&self.v6, a).and_then(|i| self.entries.get(i as usize))
    }

    /// The region of a flow key's address (IPv4 in the last four bytes).
    pub fn lookup_key_addr(&self, addr: &[u8; 16], ip_version: u8) -> Option<&Region> {
        if self.is_empty() {
            return None;
        }
        if ip_version == 4 {
            self.lookup_v4(u32::from_be_bytes([addr[12], addr[13], addr[14], addr[15]]))
        } else {
            self.lookup_v6(u128::from_be_bytes(*addr))
        }
    }

    pub fn lookup(&self, a: IpAddr) -> Option<&Region> {
        match a {
            IpAddr::V4(a) => self.lookup_v4(a.into()),
            IpAddr::V6(a) => self.lookup_v6(a.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: usize, cidr: &str, region: &str) -> RegionEntry {
        RegionEntry {
            cidr: cidr.into(),
            region_id: region.into(),
            network: None,
            line,
        }
    }

    fn region(t: &RegionTable, a: &str) -> Option<String> {
        t.lookup(a.parse().ok()?).map(|r| r.region_id.clone())
    }

    #[test]
    fn the_longest_prefix_wins_for_both_families() {
        let t = RegionTable::new(&[
            row(1, "10.0.0.0/8", "corp"),
            row(2, "10.1.0.0/16", "hz"),
            row(3, "10.1.2.0/24", "hz-lab"),
            row(4, "10.1.2.128/25", "hz-lab-b"),
            row(5, "0.0.0.0/0", "internet"),
            row(6, "fd00::/8", "ula"),
            row(7, "fd00:1::/32", "bj"),
            row(8, "2001:db8::1/128", "one"),
        ])
        .expect("valid table");
        for (a, want) in [
            ("10.9.9.9", "corp"),
            ("10.1.0.0", "hz"),
            ("10.1.255.255", "hz"),
            ("10.1.2.1", "hz-lab"),
            ("10.1.2.127", "hz-lab"),
            ("10.1.2.128", "hz-lab-b"),
            ("10.1.2.255", "hz-lab-b"),
            ("10.1.3.0", "hz"),
            ("10.255.255.255", "corp"),
            ("11.0.0.0", "internet"),
            ("0.0.0.0", "internet"),
            ("255.255.255.255", "internet"),
            ("fd00:1:2::3", "bj"),
            ("fd01::", "ula"),
            ("2001:db8::1", "one"),
        ] {
            assert_eq!(region(&t, a).as_deref(), Some(want), "{a}");
        }
        assert_eq!(region(&t, "2001:db8::2"), None);
        assert_eq!(region(&t, "fe80::1"), None);
    }

    #[test]
    fn bad_rows_name_their_line_and_reason() {
        let e = |rows: &[RegionEntry]| RegionTable::new(rows).err().map(|e| e.to_string());
        assert_eq!(
            e(&[row(3, "10.0.0.0/8", "a"), row(9, "10.0.0.0/8", "b")]).as_deref(),
            Some("line 9: 10.0.0.0/8 is already mapped on line 3")
        );
        let msg = e(&[row(4, "10.1.2.3/16", "a")]).unwrap_or_default();
        assert!(
            msg.starts_with("line 4:") && msg.contains("host bits are set (the network is 10.1.0.0/16)"),
            "{msg}"
        );
        for (cidr, reason) in [
            ("10.0.0.0/33", "prefix length 33 is over 32"),
            ("10.0.0/8", "is not an IP address"),
            ("10.0.0.0", "expected ADDRESS/LENGTH"),
            ("::/129", "over 128"),
            ("10.0.0.0/x", "is not a prefix length"),
        ] {
            let msg = e(&[row(7, cidr, "a")]).unwrap_or_default();
            assert!(
                msg.starts_with("line 7: bad CIDR") && msg.contains(reason),
                "{msg}"
            );
        }
        let msg = e(&[row(2, "10.0.0.0/8", "bad region!")]).unwrap_or_default();
        assert!(msg.starts_with("line 2: region-id"), "{msg}");
    }

    /// Random nested tables against a naive longest-prefix scan.
    #[test]
    fn flattening_agrees_with_a_linear_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..50 {
            let mut rows = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for i in 0..(5 + round * 3) {
                // Few distinct high bits, so prefixes nest often.
                let len = (next() % 33) as u8;
                let a = ((next() % 4) as u32) << 30 | (next() as u32 & 0x00ff_00ff);
                let net = if len == 0 { 0 } else { a & (u32::MAX << (32 - len)) };
                if seen.insert((net, len)) {
                    rows.push(row(
                        i + 1,
                        &format!("{}/{len}", std::net::Ipv4Addr::from(net)),
                        &format!("r{i}"),
                    ));
                }
            }
            let t = RegionTable::new(&rows).expect("valid table");
            for _ in 0..2000 {
                let a = ((next() % 4) as u32) << 30 | (next() as u32 & 0x00ff_00ff);
                let naive = rows
                    .iter()
                    .filter_map(|r| {
                        let (n, l) = r.cidr.split_once('/')?;
                        let (n, l): (std::net::Ipv4Addr, u32) = (n.parse().ok()?, l.parse().ok()?);
                        let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                        (a & mask == u32::from(n)).then_some((l, r.region_id.clone()))
                    })
                    .max_by_key(|(l, _)| *l)
                    .map(|(_, r)| r);
                assert_eq!(
                    t.lookup_v4(a).map(|r| r.region_id.clone()),
                    naive,
                    "{}",
                    std::net::Ipv4Addr::from(a)
                );
            }
        }
    }
}
