use flowlog_common::{FlowKey, FlowStats};

use super::*;
use crate::window::WindowAggregate;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowlog-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cut_of(netns: &str, generation: u32, packets: u64) -> CutRecord {
    let mut data = WindowAggregate::default();
    data.flows.push(
        FlowKey {
            src_addr: [1; 16],
            dst_addr: [2; 16],
            ifindex: 4,
            src_port: 1,
            dst_port: 2,
            protocol: 17,
            direction: 0,
            ip_version: 6,
            generation: 0,
        },
        FlowStats {
            packets,
            bytes: packets * 100,
            ..Default::default()
        },
    );
    CutRecord {
        seq: 0,
        at_ns: 5,
        namespaces: vec![NsCut {
            netns: Some(netns.into()),
            cookie: 77,
            generation,
            targets: Vec::new(),
            data,
        }],
    }
}

#[test]
fn cuts_are_numbered_kept_while_needed_and_read_back() {
    let dir = scratch("prune");
    let mut j = Journal::open(&dir).unwrap();
    let first = j.next_cut();
    j.ledger_mut().open("fl-1", 0, first, WindowSpec::default());
    for (i, g) in [1u32, 0, 1].into_iter().enumerate() {
        let mut c = cut_of("r", g, i as u64 + 1);
        j.commit(&mut c).unwrap();
        assert_eq!(c.seq, i as u64 + 1);
    }
    j.save().unwrap();
    assert_eq!(j.cut_files(), 3);
    let back: Vec<u64> = j
        .cuts_in(1, None)
        .iter()
        .map(|c| {
            c.namespaces[0]
                .data
                .flows
                .iter()
                .map(|(_, s)| s.packets)
                .sum::<u64>()
        })
        .collect();
    assert_eq!(back, vec![1, 2, 3]);
    // The window ends with cut 3 and reaches every sink: only the newest
    // cut file stays, as the marker of where the namespace stood.
    let seq = j.ledger_mut().seal("fl-1", 10, 3).unwrap();
    j.save().unwrap();
    assert_eq!(j.cut_files(), 3);
    assert!(j.ledger_mut().resolve(seq));
    j.save().unwrap();
    assert_eq!(j.cut_files(), 1);
    assert_eq!(
        j.last_generations().get(&(Some("r".into()), 77)).map(|g| g.0),
        Some(1)
    );
    // A reopened journal goes on numbering after the newest cut.
    let again = Journal::open(&dir).unwrap();
    assert_eq!(again.next_cut(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_cut_is_counted_as_lost_not_replaced() {
    let dir = scratch("missing");
    let mut j = Journal::open(&dir).unwrap();
    for g in [1, 0, 1] {
        j.commit(&mut cut_of("r", g, 1)).unwrap();
    }
    std::fs::remove_file(j.cut_path(2)).unwrap();
    let mut j = Journal::open(&dir).unwrap();
    let seqs: Vec<u64> = j.cuts_in(1, Some(3)).iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(j.stats.cuts_lost, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_old_progress_file_becomes_open_windows() {
    let dir = scratch("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(LEGACY_PROGRESS), br#"{"fl-9": 1796000000000000000}"#).unwrap();
    let j = Journal::open(&dir).unwrap();
    assert_eq!(j.ledger().open["fl-9"].start_ns, 1_796_000_000_000_000_000);
    assert!(!dir.join(LEGACY_PROGRESS).exists());
    assert_eq!(Journal::open(&dir).unwrap().ledger(), j.ledger());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_ledger_stops_the_agent() {
    let dir = scratch("corrupt");
    std::fs::create_dir_all(dir.join("journal")).unwrap();
    std::fs::write(dir.join("journal").join(LEDGER), b"{not json").unwrap();
    let err = Journal::open(&dir).err().unwrap();
    assert!(err.to_string().contains("ledger.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cut_number_a_window_names_is_never_handed_out_again() {
    let dir = scratch("numbers");
    let mut j = Journal::open(&dir).unwrap();
    j.commit(&mut cut_of("r", 1, 1)).unwrap();
    // Cut 2's file could not be written, but a window sealed with it.
    let first = j.next_cut();
    assert_eq!(first, 2);
    j.ledger_mut().open("fl-1", 0, 1, WindowSpec::default());
    j.next_cut = 3;
    j.ledger_mut().seal("fl-1", 10, 2);
    j.save().unwrap();
    // The newest file is cut 1, yet the next number is 3.
    let again = Journal::open(&dir).unwrap();
    assert_eq!(again.next_cut(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
