//! The file's parsing and checks, and flags laid over the file as the
//! `flowlog agent` command line gives them.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use super::*;
use crate::publish::sinks::{file::LineFormat, jetstream::JetStreamFile};

fn with_iface(mut f: AgentOptions) -> AgentOptions {
    f.attachments.push(Attachment {
        interface: "eth0".into(),
        netns: None,
        mode: CaptureMode::Auto,
        ..Default::default()
    });
    f
}

#[test]
fn defaults() {
    let c = Config::validate(with_iface(AgentOptions::default())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.api.socket, PathBuf::from("/var/lib/flowlog/api.sock"));
    assert_eq!(c.api.tcp, None);
    assert_eq!(c.window, Duration::from_secs(600));
    assert!(c.output.stdout);
    assert_eq!(c.flow_map_entries, DEFAULT_FLOW_MAP_ENTRIES);
    assert_eq!(c.pin_dir, Some(PathBuf::from(DEFAULT_PIN_DIR)));
    let mut f = with_iface(AgentOptions::default());
    f.pin = Some(false);
    f.pin_dir = Some("/elsewhere".into());
    assert_eq!(Config::validate(f).map(|c| c.pin_dir).ok(), Some(None));
}

#[test]
fn parses_a_full_file() {
    let text = r#"
account-id = "123"
cen-id = "cen-1"
window-secs = 60
flow-map-entries = 1000
[[attachment]]
interface = "r-a"
netns = "router"
mode = "tc"
[[attachment]]
interface = "r-b"
[output]
protobuf-file = "/tmp/x.pb"
"#;
    let c = Config::validate(AgentOptions::parse(text).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.attachments.len(), 2);
    assert_eq!(c.attachments[0].mode, CaptureMode::Tc);
    assert_eq!(c.attachments[0].netns.as_deref(), Some("router"));
    assert!(!c.output.stdout);
    assert_eq!(c.window, Duration::from_secs(60));
}

#[test]
fn parse_errors_name_the_line() {
    let e = AgentOptions::parse("account-id = \"a\"\nwindow-secs = \"ten\"\n").err();
    let e = e.unwrap_or_default();
    assert!(e.starts_with("line 2, column 15"), "{e}");
    let e = AgentOptions::parse("\n\nbogus = 1\n").err().unwrap_or_default();
    assert!(e.starts_with("line 3") && e.contains("bogus"), "{e}");
    let e = AgentOptions::parse("[[attachment]]\ninterface = \"a\"\nmode = \"fast\"\n")
        .err()
        .unwrap_or_default();
    assert!(e.starts_with("line 3") && e.contains("fast"), "{e}");
}

#[test]
fn rejects_bad_values() {
    type Mutation = fn(&mut AgentOptions);
    let cases: [(&str, Mutation); 11] = [
        ("window must be", |f| f.window_secs = Some(0)),
        ("flow-map-entries", |f| f.flow_map_entries = Some(0)),
        ("power of two", |f| f.overflow_ring_bytes = Some(5000)),
        ("not a valid interface", |f| {
            f.attachments[0].interface = "a/b".into()
        }),
        ("listed twice", |f| {
            let a = f.attachments[0].clone();
            f.attachments.push(a);
        }),
        ("cen-id", |f| f.cen_id = Some(String::new())),
        ("absolute", |f| f.pin_dir = Some("relative/pins".into())),
        ("logstore-buffer-records", |f| f.logstore_buffer_records = Some(0)),
        ("nats://host:port", |f| {
            f.jetstream = JetStreamFile {
                servers: vec!["http://x:1".into()],
                ..Default::default()
            }
        }),
        ("replicas must be 1, 3 or 5", |f| {
            f.jetstream = JetStreamFile {
                servers: vec!["nats://x:1".into()],
                replicas: Some(2),
                ..Default::default()
            }
        }),
        ("jetstream subject", |f| {
            f.jetstream = JetStreamFile {
                servers: vec!["nats://x:1".into()],
                subject: Some("a.*".into()),
                ..Default::default()
            }
        }),
    ];
    for (want, mutate) in cases {
        let mut f = with_iface(AgentOptions::default());
        mutate(&mut f);
        let e = Config::validate(f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "{want}: {e}");
    }
    // No attachment is fine: flow logs can come through the API.
    assert!(Config::validate(AgentOptions::default()).is_ok());
}

#[test]
fn region_entries_keep_their_lines_and_bad_ones_are_named() {
    let text = "account-id = \"a\"\n\n[[region]]\ncidr = \"10.1.0.0/16\"\nregion-id = \"cn-hangzhou\"\n\n[[region]]\ncidr = \"10.2.0.0/16\"\nregion-id = \"cn-shanghai\"\nnetwork = \"vpc-sh\"\n";
    let f = AgentOptions::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<usize> = f.region_entries.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![3, 7]);
    assert_eq!(f.region_entries[1].network.as_deref(), Some("vpc-sh"));
    let c = Config::validate(f).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.regions.len(), 2);

    let bad = text.replace("10.2.0.0/16", "10.1.0.0/16");
    let e = Config::validate(AgentOptions::parse(&bad).unwrap_or_else(|e| panic!("{e}")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("line 7: 10.1.0.0/16 is already mapped on line 3"),
        "{e}"
    );
    let bad = text.replace("10.2.0.0/16", "10.2.0.0/99");
    let e = Config::validate(AgentOptions::parse(&bad).unwrap_or_else(|e| panic!("{e}")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("line 7: bad CIDR"), "{e}");
}

/// `flowlog agent ARGS` as the binary parses it.
#[derive(Parser)]
struct Command {
    #[command(flatten)]
    args: AgentArgs,
}

fn config_from(file: Option<&str>, flags: &[&str]) -> Result<Config, ConfigError> {
    // A directory of its own per call, removed after: tests run in
    // parallel and must leave nothing in /tmp.
    let dir = std::env::temp_dir().join(format!(
        "flowlog-config-{}-{}",
        std::process::id(),
        crate::state::random::string(crate::state::random::LOWER_ALNUM, 8).unwrap_or_default()
    ));
    let _ = std::fs::create_dir_all(&dir);
    let mut argv = vec!["agent".to_owned()];
    if let Some(text) = file {
        let path = dir.join("flowlog.toml");
        let _ = std::fs::write(&path, text);
        argv.push(format!("--config={}", path.display()));
    }
    argv.extend(flags.iter().map(|f| (*f).to_owned()));
    let parsed = Command::try_parse_from(&argv).map_err(|e| ConfigError::Invalid(e.to_string()));
    let config = parsed.and_then(|p| p.args.into_config(None));
    let _ = std::fs::remove_dir_all(&dir);
    config
}

fn ok(c: Result<Config, ConfigError>) -> Config {
    c.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn flags_win_over_the_file_and_unset_flags_leave_it_alone() {
    let file = r#"
window-secs = 60
account-id = "from-file"
flow-map-entries = 4096
[api]
listen = "127.0.0.1:7000"
allow-remote = true
tls-cert = "/etc/c.pem"
tls-key = "/etc/k.pem"
[metrics]
listen = "127.0.0.1:9000"
[jetstream]
servers = ["nats://a:4222"]
subject = "fleet.records"
[output]
json-file = "/tmp/f.jsonl"
[[attachment]]
interface = "eth0"
"#;
    let c = ok(config_from(Some(file), &[]));
    assert_eq!(c.window, Duration::from_secs(60));
    assert_eq!(c.account_id, "from-file");
    assert!(
        c.api.allow_remote,
        "a flag left out does not turn the file's true off"
    );
    assert!(!c.output.stdout, "the file's json-file is output enough");

    let c = ok(config_from(
        Some(file),
        &[
            "--window-secs=10",
            "--api-listen=127.0.0.1:7001",
            "--jetstream-server=nats://b:4222",
            "--jetstream-server=nats://c:4222",
            "--metrics-listen=127.0.0.1:9001",
            "-i",
            "eth1",
            "--netns=router",
            "--mode=tc",
            "--no-pin",
            "--no-rtt",
        ],
    ));
    assert_eq!(c.window, Duration::from_secs(10));
    assert_eq!(c.account_id, "from-file");
    assert_eq!(c.flow_map_entries, 4096);
    assert_eq!(c.api.tcp.map(|a| a.port()), Some(7001));
    assert_eq!(
        c.api.tls.as_ref().map(|t| t.0.clone()),
        Some(PathBuf::from("/etc/c.pem"))
    );
    assert_eq!(c.metrics_listen.map(|a| a.port()), Some(9001));
    let js = c.jetstream.unwrap_or_else(|| panic!("jetstream stays on"));
    assert_eq!(
        js.servers,
        ["nats://b:4222", "nats://c:4222"],
        "flags replace the list"
    );
    assert_eq!(js.subject, "fleet.records", "the rest of the section stays");
    let names: Vec<(&str, Option<&str>, CaptureMode)> = c
        .attachments
        .iter()
        .map(|a| (a.interface.as_str(), a.netns.as_deref(), a.mode))
        .collect();
    assert_eq!(
        names,
        [
            ("eth0", None, CaptureMode::Auto),
            ("eth1", Some("router"), CaptureMode::Tc)
        ],
        "--interface adds to the file's attachments"
    );
    assert_eq!(c.pin_dir, None);
    assert!(!c.rtt);
    assert_eq!(c.file.as_ref().map(|p| p.extension().is_some()), Some(true));
}

#[test]
fn output_flags_and_the_global_socket() {
    let c = ok(config_from(
        None,
        &["--stdout-format=text", "--text-file=/tmp/t.log"],
    ));
    assert!(c.output.stdout, "choosing what stdout prints asks for stdout");
    assert_eq!(c.output.stdout_format, Some(LineFormat::Text));
    assert_eq!(c.output.text_file, Some(PathBuf::from("/tmp/t.log")));
    let c = ok(config_from(
        None,
        &[
            "--ipfix-collector=127.0.0.1:4739",
            "--ipfix-collector=tcp://[::1]:4740",
        ],
    ));
    let ipfix = c.ipfix.unwrap_or_else(|| panic!("ipfix on"));
    assert_eq!(ipfix.collectors.len(), 2);
    assert!(!c.output.stdout, "an IPFIX collector is output enough");
    let file = "[output.ipfix]\ncollectors = [\"127.0.0.1:1\"]\nmtu = 9000\n";
    let c = ok(config_from(Some(file), &["--ipfix-collector=127.0.0.1:2"]));
    let ipfix = c.ipfix.unwrap_or_else(|| panic!("ipfix on"));
    assert_eq!(
        (ipfix.collectors[0].address.as_str(), ipfix.mtu),
        ("127.0.0.1:2", 9000)
    );
    let c = ok(config_from(None, &["--data-dir=/srv/fl"]));
    assert_eq!(c.api.socket, PathBuf::from("/srv/fl/api.sock"));
    assert!(c.output.stdout, "stdout when nothing else is asked for");
    let parsed = Command::try_parse_from(["agent"]).unwrap_or_else(|e| panic!("{e}"));
    let c = ok(parsed.args.into_config(Some("/run/fl.sock".into())));
    assert_eq!(c.api.socket, PathBuf::from("/run/fl.sock"));
}

#[test]
fn bad_flags_and_bad_files_are_refused_with_the_reason() {
    let e = |r: Result<Config, ConfigError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e(config_from(None, &["--window-secs=0"])).contains("window must be"));
    assert!(e(config_from(None, &["--mode=fast"])).contains("fast"));
    assert!(e(config_from(None, &["--bogus"])).contains("--bogus"));
    assert!(
        e(config_from(Some("window-secs = 5\n[api]\nlisten = \"x\"\n"), &[])).contains("line 3"),
        "a bad file value names its line"
    );
    assert!(e(config_from(None, &["--api-tls-cert=/c.pem"])).contains("go together"));
    assert!(e(config_from(None, &["--metrics-listen=10.0.0.1:9000"])).contains("allow-remote"));
    let huge = format!("--logstore-buffer-records={}", u64::MAX);
    assert!(e(config_from(None, &[&huge])).contains("logstore-buffer-records"));
}

/// docs/configuration.md's example file parses and validates, and its list
/// of flags is exactly the agent's.
#[test]
fn the_configuration_page_matches_the_options() {
    use clap::CommandFactory as _;
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
        .unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    let example = page
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("a toml block on the configuration page"));
    let options = AgentOptions::parse(example).unwrap_or_else(|e| panic!("the page's example: {e}"));
    ok(Config::validate(options));

    let listed = page
        .split("Flags: ")
        .nth(1)
        .and_then(|rest| rest.split(". ").next())
        .unwrap_or_else(|| panic!("a \"Flags:\" list on the configuration page"));
    let mut documented: Vec<String> = listed
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|f| f.split('/'))
        .filter_map(|f| f.strip_prefix("--").map(str::to_owned))
        .collect();
    documented.sort();
    let cli = crate::cli::Cli::command();
    let agent = cli
        .find_subcommand("agent")
        .unwrap_or_else(|| panic!("an agent subcommand"));
    let mut flags: Vec<String> = agent
        .get_arguments()
        .filter(|a| !a.is_global_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect();
    flags.sort();
    assert_eq!(documented, flags, "docs/configuration.md lists the agent's flags");
}
