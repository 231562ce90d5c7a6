//! HyperLogLog over five-tuples, with a hash fixed by this format: a
//! file's registers are merged with files written years later, so the
//! hash must never change with a library or compiler (DataFusion's own
//! HyperLogLog can be neither rebuilt from registers nor pinned to a hash).
//!
//! 2^12 registers: a standard error of 1.04/√4096 ≈ 1.6 %, 4 KiB a window
//! and direction before compression. Small counts use linear counting,
//! which is near exact while most registers are empty.

use serde::{Deserialize, Serialize};

const P: u32 = 12;
const M: usize = 1 << P;
/// xxHash64's seed; part of the format.
const SEED: u64 = 0x666c_6f77_6c6f_6721;

/// The registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hll(Vec<u8>);

impl Default for Hll {
    fn default() -> Self {
        Self(vec![0; M])
    }
}

/// The bytes a five-tuple is hashed as: each address as its text, each
/// port and the protocol little-endian, fields separated by 0xff (which
/// no address text holds).
pub fn tuple_bytes(out: &mut Vec<u8>, src: &str, sport: u32, dst: &str, dport: u32, proto: u32) {
    out.clear();
    out.extend_from_slice(src.as_bytes());
    out.push(0xff);
    out.extend_from_slice(&sport.to_le_bytes());
    out.extend_from_slice(dst.as_bytes());
    out.push(0xff);
    out.extend_from_slice(&dport.to_le_bytes());
    out.extend_from_slice(&proto.to_le_bytes());
}

impl Hll {
    pub fn add(&mut self, bytes: &[u8]) {
        let h = twox_hash::XxHash64::oneshot(SEED, bytes);
        // The low P bits pick the register; the rest give the rank.
        let idx = (h & (M as u64 - 1)) as usize;
        let rank = ((h >> P) | (1 << (64 - P))).trailing_zeros() + 1;
        if let Some(r) = self.0.get_mut(idx) {
            *r = (*r).max(rank as u8);
        }
    }

    /// Registers of a decoded sketch that is not of this size are refused
    /// by the caller; a merge with one is a no-op.
    pub fn is_valid(&self) -> bool {
        self.0.len() == M
    }

    pub fn merge(&mut self, other: &Self) {
        if other.is_valid() {
            for (a, b) in self.0.iter_mut().zip(&other.0) {
                *a = (*a).max(*b);
            }
        }
    }

    /// The estimated number of distinct tuples added.
    pub fn count(&self) -> u64 {
        let m = M as f64;
        let zeros = self.0.iter().filter(|&&r| r == 0).count();
        let sum: f64 = self.0.iter().map(|&r| (-f64::from(r)).exp2()).sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_standard_error_and_merges() {
        let mut buf = Vec::new();
        for n in [0u32, 1, 10, 1000, 50_000, 300_000] {
            let (mut a, mut b) = (Hll::default(), Hll::default());
            for i in 0..n {
                tuple_bytes(&mut buf, "10.0.0.1", i, "10.0.0.2", 443, 6);
                // Half in each, a tenth in both.
                if i % 2 == 0 || i % 10 == 1 {
                    a.add(&buf);
                }
                if i % 2 == 1 || i % 10 == 0 {
                    b.add(&buf);
                }
            }
            a.merge(&b);
            let got = a.count() as f64;
            let err = (got - f64::from(n)).abs() / f64::from(n.max(1));
            assert!(err < 0.05, "{n}: {got}");
        }
    }
}
