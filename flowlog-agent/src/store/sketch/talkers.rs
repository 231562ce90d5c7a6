//! Top talkers that merge exactly, or say they cannot.
//!
//! Each window keeps, per direction and kind of key, the [`KEPT`] largest
//! keys by bytes and by packets with their exact sums, and a bound: the
//! largest bytes and packets of any key it did not keep. Over many windows
//! a key's total lies between the sums where it was kept and those plus
//! the bounds of the windows where it was not (the threshold algorithm of
//! distributed top-k). A ranking is answered only when it is proven: each
//! ranked key is exact, and the last of them is larger than any other
//! key could be. Else the caller reads the records. Heavy-tailed traffic,
//! the usual kind, proves it; a flat spread of thousands of equal keys
//! does not, and is then read from the records, exactly.

use std::{hash::Hash, net::IpAddr};

// foldhash: a window counts up to [`MAX_KEYS`] keys a kind, record by
// record; SipHash would cost more than the rest of the sketch.
use hashbrown::HashMap;

use serde::{Deserialize, Serialize};

use crate::store::analyses::Metric;

/// Keys a window keeps per list (by bytes, by packets).
pub const KEPT: usize = 64;
/// Distinct keys a window counts at most per kind before it gives up on
/// that kind (its memory is bounded; queries then read the records).
pub const MAX_KEYS: usize = 200_000;

/// Bytes, packets, records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums(pub u64, pub u64, pub u64);

impl Sums {
    fn add(&mut self, o: Self) {
        self.0 += o.0;
        self.1 += o.1;
        self.2 += o.2;
    }
    pub fn get(self, m: Metric) -> u64 {
        match m {
            Metric::Bytes => self.0,
            Metric::Packets => self.1,
        }
    }
}

/// One window's list for one kind of key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopList<K> {
    pub kept: Vec<(K, Sums)>,
    /// The largest bytes and packets (and records) of a key not kept;
    /// zero when every key was kept.
    pub bound: Sums,
}

/// Counts keys of one kind in one window.
#[derive(Clone, Debug)]
pub struct Counter<K> {
    keys: HashMap<K, Sums>,
    overflowed: bool,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            overflowed: false,
        }
    }
}

impl<K: Hash + Eq + Clone + Ord> Counter<K> {
    pub fn add(&mut self, key: K, s: Sums) {
        if self.overflowed {
            return;
        }
        if self.keys.len() >= MAX_KEYS && !self.keys.contains_key(&key) {
            self.overflowed = true;
            self.keys = HashMap::new();
            return;
        }
        self.keys.entry(key).or_default().add(s);
    }

    /// Gives up on this window's list (a record the kind cannot key).
    pub fn give_up(&mut self) {
        self.overflowed = true;
        self.keys = HashMap::new();
    }

    /// The list, or `None` if the window had too many keys.
    pub fn finish(self) -> Option<TopList<K>> {
        if self.overflowed {
            return None;
        }
        let mut all: Vec<(K, Sums)> = self.keys.into_iter().collect();
        let mut keep = vec![false; all.len()];
        let mut bound = Sums::default();
        for m in [Metric::Bytes, Metric::Packets] {
            let mut order: Vec<usize> = (0..all.len()).collect();
            // The KEPT largest, unordered: a selection, not a sort of every key.
            if order.len() > KEPT {
                order.select_nth_unstable_by(KEPT, |&a, &b| {
                    all[b]
                        .1
                        .get(m)
                        .cmp(&all[a].1.get(m))
                        .then(all[a].0.cmp(&all[b].0))
                });
            }
            for &i in order.iter().take(KEPT) {
                keep[i] = true;
            }
        }
        for (i, (_, s)) in all.iter().enumerate() {
            if !keep[i] {
                bound.0 = bound.0.max(s.0);
                bound.1 = bound.1.max(s.1);
                bound.2 = bound.2.max(s.2);
            }
        }
        let mut i = 0;
        all.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Some(TopList { kept: all, bound })
    }
}

/// What top talkers are ranked by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Sources,
    Destinations,
    Pairs,
    /// Protocol and destination port.
    Ports,
}

/// One window's lists, a kind each (`None`: the window had too many keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lists {
    pub sources: Option<TopList<IpAddr>>,
    pub destinations: Option<TopList<IpAddr>>,
    pub pairs: Option<TopList<(IpAddr, IpAddr)>>,
    /// (protocol, destination port).
    pub ports: Option<TopList<(u8, u32)>>,
}

/// The `limit` largest keys by `m` over `lists` (one per window), when
/// that ranking is proven; `None` when a window has no list or the bounds
/// leave it open.
pub fn rank<'a, K: Hash + Eq + Clone + Ord + 'a>(
    lists: impl IntoIterator<Item = Option<&'a TopList<K>>>,
    m: Metric,
    limit: usize,
) -> Option<Vec<(K, Sums)>> {
    // Per key: its kept sums, and the bounds of the windows that kept it.
    let mut seen: HashMap<&K, (Sums, u64)> = HashMap::new();
    let mut all_bounds = 0u64;
    for list in lists {
        let list = list?;
        all_bounds += list.bound.get(m);
        for (k, s) in &list.kept {
            let e = seen.entry(k).or_default();
            e.0.add(*s);
            e.1 += list.bound.get(m);
        }
    }
    // upper − lower = the bounds of the windows that did not keep the key.
    let mut ranked: Vec<(&K, Sums, u64)> = seen
        .into_iter()
        .map(|(k, (s, kept_bounds))| (k, s, all_bounds - kept_bounds))
        .collect();
    ranked.sort_by(|a, b| b.1.get(m).cmp(&a.1.get(m)).then(a.0.cmp(b.0)));
    let (top, rest) = ranked.split_at(limit.min(ranked.len()));
    if top.iter().any(|(_, _, open)| *open != 0) {
        return None;
    }
    // Any key outside the ranking — kept somewhere or never — could reach
    // at most this.
    let outside = rest
        .iter()
        .map(|(_, s, open)| s.get(m) + open)
        .max()
        .unwrap_or(0)
        .max(all_bounds);
    if let Some(last) = top.last()
        && outside > 0
        && last.1.get(m) <= outside
    {
        return None;
    }
    Some(top.iter().map(|(k, s, _)| ((*k).clone(), *s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(u32, u64)]) -> Option<TopList<u32>> {
        let mut c = Counter::default();
        for &(k, b) in pairs {
            c.add(k, Sums(b, 1, 1));
        }
        c.finish()
    }

    #[test]
    fn a_proven_ranking_is_exact_and_an_open_one_is_refused() {
        // Key 0 is heavy everywhere; the rest are a long tail.
        let windows: Vec<Option<TopList<u32>>> = (0..10u32)
            .map(|w| {
                let mut v = vec![(0, 1_000_000), (1, 500_000)];
                v.extend((2..500).map(|k| (k, u64::from((k * 7 + w) % 100 + 1))));
                list(&v)
            })
            .collect();
        let got = rank(windows.iter().map(Option::as_ref), Metric::Bytes, 2).unwrap();
        assert_eq!(
            got,
            vec![(0, Sums(10_000_000, 10, 10)), (1, Sums(5_000_000, 10, 10))]
        );
        // The tail's order is not provable from kept lists.
        assert!(rank(windows.iter().map(Option::as_ref), Metric::Bytes, 200).is_none());
        // A window without a list cannot be ranked from.
        let mut gap = windows.clone();
        gap.push(None);
        assert!(rank(gap.iter().map(Option::as_ref), Metric::Bytes, 2).is_none());
        // Every key kept: any ranking is exact.
        let small = [list(&[(5, 3), (6, 9)]), list(&[(6, 1)])];
        let got = rank(small.iter().map(Option::as_ref), Metric::Bytes, 10).unwrap();
        assert_eq!(got, vec![(6, Sums(10, 2, 2)), (5, Sums(3, 1, 1))]);
    }

    #[test]
    fn a_window_past_the_key_limit_keeps_no_list() {
        let mut c = Counter::default();
        for k in 0..=MAX_KEYS as u64 {
            c.add(k, Sums(1, 1, 1));
        }
        assert!(c.finish().is_none());
    }
}
