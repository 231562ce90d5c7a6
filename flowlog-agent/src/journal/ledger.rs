//! Which windows each flow log has in flight, and which cuts hold their
//! counts: the part of the journal that says what a restart must redo.
//!
//! A flow log has at most one *open* window (counting; it owns every cut
//! from `first_cut` on that names it) and any number of *sealed* ones
//! (ended, handed to the sinks, not yet confirmed by all of them; each owns
//! the cuts `first_cut..=last_cut`). Sealed windows carry a sequence number
//! that only grows, so a sink can tell a window it already has from one it
//! has not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a window's records need besides its counts; kept with the window
/// so a restart can write it even if its flow log changed or went away.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WindowSpec {
    pub account_id: String,
    pub cen_id: String,
    pub attachments: Vec<SpecAttachment>,
    pub project: Option<String>,
    pub logstore: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SpecAttachment {
    pub interface: String,
    pub netns: Option<String>,
    pub attachment_id: Option<String>,
    pub region_id: Option<String>,
}

/// The window a flow log is counting into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OpenWindow {
    pub start_ns: i64,
    pub first_cut: u64,
    pub spec: WindowSpec,
}

/// A window that ended and awaits its sinks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SealedWindow {
    pub seq: u64,
    pub flow_log: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub first_cut: u64,
    pub last_cut: u64,
    pub spec: WindowSpec,
}

/// The ledger as it is saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Ledger {
    pub version: u32,
    /// The next sealed window's sequence number.
    pub next_window: u64,
    /// The next cut's number: numbers are never reused, even one whose file
    /// could not be written (a window may name it).
    #[serde(default)]
    pub next_cut: u64,
    pub open: BTreeMap<String, OpenWindow>,
    /// In sequence order.
    pub sealed: Vec<SealedWindow>,
}

/// This build's ledger layout.
pub const VERSION: u32 = 1;

impl Ledger {
    pub fn new() -> Self {
        Self {
            version: VERSION,
            next_window: 1,
            ..Default::default()
        }
    }

    /// A flow log starts counting at `start_ns`; its counts come from cut
    /// `first_cut` on.
    pub fn open(&mut self, id: &str, start_ns: i64, first_cut: u64, spec: WindowSpec) {
        self.open.insert(
            id.to_owned(),
            OpenWindow {
                start_ns,
                first_cut,
                spec,
            },
        );
    }

    /// Ends a flow log's open window at `end_ns` with cut `last_cut` as its
    /// last; returns the sealed window's sequence number (`None` when the
    /// flow log had no open window).
    pub fn seal(&mut self, id: &str, end_ns: i64, last_cut: u64) -> Option<u64> {
        let open = self.open.remove(id)?;
        let seq = self.next_window;
        self.next_window += 1;
        self.sealed.push(SealedWindow {
            seq,
            flow_log: id.to_owned(),
            start_ns: open.start_ns,
            end_ns,
            first_cut: open.first_cut,
            last_cut,
            spec: open.spec,
        });
        Some(seq)
    }

    /// Every sink has the sealed window `seq` (or has given up on it and
    /// counted it): nothing needs it any more.
    pub fn resolve(&mut self, seq: u64) -> bool {
        let before = self.sealed.len();
        self.sealed.retain(|w| w.seq != seq);
        self.sealed.len() != before
    }

    /// One past the highest cut any window names.
    pub fn cuts_named_end(&self) -> u64 {
        let open = self.open.values().map(|w| w.first_cut);
        let sealed = self.sealed.iter().map(|w| w.last_cut.max(w.first_cut));
        open.chain(sealed).max().map_or(0, |c| c + 1)
    }

    /// The oldest cut any window still needs (`None`: none is needed).
    pub fn oldest_needed_cut(&self) -> Option<u64> {
        let open = self.open.values().map(|w| w.first_cut);
        let sealed = self.sealed.iter().map(|w| w.first_cut);
        open.chain(sealed).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_moves_the_open_window_and_numbers_it() {
        let mut l = Ledger::new();
        l.open("fl-1", 100, 5, WindowSpec::default());
        l.open("fl-2", 150, 6, WindowSpec::default());
        assert_eq!(l.oldest_needed_cut(), Some(5));
        assert_eq!(l.seal("fl-1", 200, 9), Some(1));
        l.open("fl-1", 200, 10, WindowSpec::default());
        assert_eq!(l.seal("fl-2", 210, 9), Some(2));
        assert_eq!(l.seal("fl-3", 210, 9), None);
        assert_eq!(l.oldest_needed_cut(), Some(5));
        assert!(l.resolve(1));
        assert!(!l.resolve(1));
        assert_eq!(l.oldest_needed_cut(), Some(6));
        assert!(l.resolve(2));
        assert_eq!(l.oldest_needed_cut(), Some(10));
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Ledger>(&text).unwrap(), l);
    }
}
