//! The fuzz targets' bodies: each takes arbitrary bytes through one parser
//! that meets outside input. Shared by the libFuzzer binaries
//! (`fuzz_targets/`, run by `cargo xtask fuzz`) and by the regression test
//! that replays the committed corpus and crashes in every `cargo xtask test`
//! (`flowlog-agent/tests/fuzz_regressions.rs`).

pub mod api_request {
    use flowlog_agent::api::{actions::Action, parse_request};
    use flowlog_agent::model::validate;

    /// An API request (path, query string, body) through the same parsing and
    /// parameter checks a real request meets before any state is touched.
    pub fn run(data: &[u8]) {
        // Layout: path \n query \n body.
        let mut parts = data.splitn(3, |b| *b == b'\n');
        let (Some(path), Some(query), body) = (parts.next(), parts.next(), parts.next().unwrap_or_default())
        else {
            return;
        };
        let (Ok(path), Ok(query)) = (std::str::from_utf8(path), std::str::from_utf8(query)) else {
            return;
        };
        let Ok((action, p)) = parse_request(path, Some(query).filter(|q| !q.is_empty()), body) else {
            return;
        };
        // The typed request the server would dispatch on.
        let _ = Action::parse(&action, p.clone());
        // Every value check, on whichever parameter carries a value.
        let mut p = p;
        for name in [
            "ProjectName",
            "LogStoreName",
            "FlowLogName",
            "Description",
            "CenId",
            "FlowLogId",
        ] {
            if let Ok(Some(s)) = p.opt_str(name) {
                let _ = validate::project_name(&s);
                let _ = validate::logstore_name(&s);
                let _ = validate::flow_log_name(&s);
                let _ = validate::description(&s);
                let _ = validate::cen_id(&s);
                let _ = validate::account_id(&s);
            }
        }
        for name in ["Interval", "Ttl", "PageSize", "PageNumber", "From", "To", "Line"] {
            if let Ok(Some(n)) = p.opt_u64(name) {
                let _ = validate::interval(n);
                let _ = validate::ttl(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }
}

pub mod config_file {
    use flowlog_agent::config::{AgentOptions, Config};

    /// A configuration file: TOML parsing, then every range and consistency
    /// check the agent applies before it starts.
    pub fn run(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(file) = AgentOptions::parse(text) {
            let _ = Config::validate(file);
        }
    }
}

pub mod state_files {
    use std::time::Duration;

    use flowlog_agent::{
        control::spec_of,
        journal::{Ledger, cut},
        model::clock::next_boundary,
        state::State,
    };

    /// Files the agent reads back at start: state.json (checked, then turned
    /// into what the engine runs), the journal's ledger and its cut files.
    pub fn run(data: &[u8]) {
        if let Ok(state) = serde_json::from_slice::<State>(data)
            && state.check().is_ok()
        {
            for f in state.flow_logs.values() {
                let spec = spec_of(f);
                let now = 1_800_000_000_000_000_000i128;
                assert!(next_boundary(now, spec.window) > now);
            }
        }
        if let Ok(l) = serde_json::from_slice::<Ledger>(data) {
            let _ = l.oldest_needed_cut();
        }
        if let Ok(c) = cut::decode(data) {
            // Whatever decodes must survive being written and read again.
            let mut again = Vec::new();
            assert!(cut::encode(&c, &mut again).is_ok());
            assert_eq!(cut::decode(&again).map(|d| d.seq).ok(), Some(c.seq));
        }
        let _ = next_boundary(i128::from(data.len() as u64), Duration::ZERO);
    }
}

pub mod ring_events {
    use flowlog_agent::{
        capture::{handshake_event, overflow_event},
        model::{AttachmentInfo, ClockOffset, Identity, JiffiesRef, Window},
        rtt::{RttLimits, RttTracker},
        window::{FlowTable, OverflowTable, WindowAggregate},
    };

    /// Ring-buffer items as the kernel side hands them over (overflow events,
    /// handshake samples), decoded and carried all the way to records: what a
    /// damaged or foreign pinned ring could feed the agent.
    pub fn run(data: &[u8]) {
        // Layout: a 24-byte clock reference, then items each prefixed by a
        // length byte and a kind byte (0 overflow, else handshake).
        let Some((clock, mut rest)) = data.split_at_checked(24) else {
            return;
        };
        let word = |i: usize| u64::from_le_bytes(clock[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let jiffies = JiffiesRef {
            jiffies: word(0),
            monotonic_ns: word(1),
            ns_per_jiffy: word(2) % 20_000_000,
        };
        let mut rtt = RttTracker::new(RttLimits {
            max_pending: 64,
            max_known: 64,
            ..RttLimits::default()
        });
        let mut pending = OverflowTable::default();
        while let [len, kind, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (item, next) = tail.split_at(len);
            rest = next;
            if *kind == 0 {
                if let Some(e) = overflow_event(item) {
                    pending.try_add(&e, 1024);
                }
            } else if let Some(e) = handshake_event(item) {
                rtt.observe(&e);
            }
        }
        rtt.end_window(word(1));
        let mut flows = FlowTable::default();
        pending.drain_into(&mut flows);
        let mut agg = WindowAggregate::default();
        for (k, _) in flows.iter() {
            if let Some(r) = rtt.lookup(k) {
                agg.rtt.insert(*k, r);
            }
        }
        agg.flows = flows;
        let attachments = (0..4)
            .map(|i| AttachmentInfo {
                ifindex: i,
                interface: format!("eth{i}"),
                netns: None,
                ..Default::default()
            })
            .collect();
        let identity = Identity {
            account_id: "a".into(),
            cen_id: "cen-1".into(),
            flow_log_id: "fl-1".into(),
        };
        let window = Window {
            start_ns: 1_800_000_000_000_000_000,
            end_ns: 1_800_000_060_000_000_000,
        };
        let clock = ClockOffset {
            realtime_minus_monotonic_ns: 1_700_000_000_000_000_000,
            jiffies,
        };
        let data = agg.finish(window, attachments, identity, clock, Default::default());
        let _ = data.try_for_each_record(|r| serde_json::to_vec(r).map(|_| ()));
    }
}

pub mod sql_params {
    use std::{path::PathBuf, sync::OnceLock, time::Duration};

    use flowlog_agent::store::{
        analyses::{Metric, top_talkers},
        query::{self, TimeRange},
    };

    /// Where the committed corpus's `COPY … TO` statements write.
    pub const COPY_TARGET: &str = "/tmp/flowlog-fuzz-copy.csv";

    fn dir() -> &'static PathBuf {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            let d = std::env::temp_dir().join(format!("flowlog-fuzz-sql-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&d);
            d
        })
    }

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// GetLogs parameters: a time range and SQL, run by the query engine over
    /// a Logstore. Whatever the text, only reading may happen: nothing is
    /// written, nothing defined, no panic.
    pub fn run(data: &[u8]) {
        let Some((range, sql)) = data.split_at_checked(16) else {
            return;
        };
        let Ok(sql) = std::str::from_utf8(sql) else { return };
        let from = i64::from_le_bytes(range[..8].try_into().unwrap_or_default());
        let to = i64::from_le_bytes(range[8..].try_into().unwrap_or_default());
        let range = TimeRange {
            from: (from % 3 != 0).then_some(from),
            to: (to % 3 != 0).then_some(to),
        };
        let _ = top_talkers(Metric::Bytes, Some(sql), from % 2 == 0, 10);
        // Short of the agent's own limit: slow queries are not what is hunted.
        let _ = runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(2), query::run(dir(), range, sql)).await
        });
        let left: Vec<_> = std::fs::read_dir(dir())
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "a query wrote into the Logstore: {sql:?}");
        // The path the corpus's COPY statements aim at.
        assert!(
            !std::path::Path::new(COPY_TARGET).exists(),
            "a query wrote {COPY_TARGET}: {sql:?}"
        );
    }
}
