//! Publishing to NATS JetStream against real `nats-server` processes on
//! loopback: records published by a real capture arrive exactly once (the
//! same records the agent wrote to its JSON file, no more, no fewer), and
//! windows survive a server that goes away and an agent restarted while it
//! is gone.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use async_nats::{
    ConnectOptions,
    jetstream::{self, consumer},
};
use flowlog_agent::record::FlowLogBatch;
use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, logstore_json, num, terminate},
    nats::{NatsServer, server_program},
    privileged, sum,
    topology::{B_V4, RouterTopology},
    traffic,
};
use futures_util::StreamExt as _;
use prost::Message as _;
use serde_json::Value;

/// Every message in the agent's stream: (message id, records as JSON).
fn stream_contents(url: &str, opts: ConnectOptions) -> anyhow::Result<(Vec<String>, Vec<Value>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = opts.connect(url).await?;
        let js = jetstream::new(client);
        // A cluster that just lost a member may still be electing leaders:
        // every request to it may time out until it has.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (total, reader) = loop {
            let got = async {
                let mut s = js.get_stream("FLOWLOG").await?;
                let n = s.info().await?.state.messages as usize;
                // One replica in memory: the reader needs no consumer group
                // of its own from a cluster that has just lost a member.
                let reader = s
                    .create_consumer(consumer::pull::Config {
                        ack_policy: consumer::AckPolicy::None,
                        num_replicas: 1,
                        memory_storage: true,
                        ..Default::default()
                    })
                    .await?;
                Ok::<_, anyhow::Error>((n, reader))
            }
            .await;
            match got {
                Ok(v) => break v,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("stream not readable yet: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let (mut ids, mut records) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while ids.len() < total && Instant::now() < deadline {
            let mut batch = reader
                .fetch()
                .max_messages(total - ids.len())
                .expires(Duration::from_secs(1))
                .messages()
                .await?;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                ids.push(id);
                for r in FlowLogBatch::decode(m.payload.as_ref())?.records {
                    records.push(serde_json::to_value(&r)?);
                }
            }
        }
        anyhow::ensure!(ids.len() == total, "read {} of {total} messages", ids.len());
        Ok::<_, anyhow::Error>((ids, records))
    })
}

/// Whether the server at `url` refuses a client connecting with `opts`.
fn refused(url: &str, opts: ConnectOptions) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(opts.connect(url)).is_err())
}

/// Records as sorted JSON texts, for comparing multisets.
fn sorted(records: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(Value::to_string).collect();
    v.sort();
    v
}

fn agent_args<'a>(t: &'a RouterTopology, url: &'a str) -> Vec<&'a str> {
    t.agent_args(
        "tc",
        &["--window-secs", "1", "--no-rtt", "--jetstream-server", url],
    )
}

fn status_u64(a: &Agent, key: &str) -> u64 {
    a.status().ok().and_then(|s| s[key].as_u64()).unwrap_or(0)
}

fn wait_for(what: &str, a: &Agent, mut ok: impl FnMut(&Agent) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok(a) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not happen: {}\n{}",
            a.status().unwrap_or_default(),
            a.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Each stream message id once, and the stream's records exactly the
/// agent's own.
fn assert_exactly_once(url: &str, opts: ConnectOptions, data: &Path) -> anyhow::Result<Vec<Value>> {
    let (ids, from_stream) = stream_contents(url, opts)?;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a message id appears twice");
    let own = flowlog_tests::agent::read_json_lines(&data.join("records.jsonl"))?;
    assert!(!own.is_empty());
    assert_eq!(
        sorted(&from_stream),
        sorted(&own),
        "the stream holds other records than the agent published"
    );
    Ok(from_stream)
}

#[test]
fn records_reach_jetstream_exactly_once() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let server = NatsServer::start(&program, dir.path())?;
    let url = server.url();
    let a = Agent::start_in(dir.path(), &agent_args(&t, &url))?;
    let sizes = [100, 200, 300, 400];
    let port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9950), &sizes)?;
    a.wait_windows(3, Duration::from_secs(20))?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.contains("JetStream: created the stream"),
        "{}",
        done.stderr
    );
    let records = assert_exactly_once(&url, ConnectOptions::new(), dir.path())?;
    let f = Filter {
        interface: Some("r-a"),
        srcport: Some(port.into()),
        dstport: Some(9950),
        ..Default::default()
    };
    assert_eq!(sum(&records, &f).0, 4);
    assert_eq!(sum(&records, &f).1, 1000 + 4 * 28);
    assert_eq!(done.agent_status["jetstream-queued-records"], 0);
    Ok(())
}

#[test]
fn windows_wait_on_disk_while_the_server_is_away_and_across_restarts() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let mut server = NatsServer::start(&program, dir.path())?;
    let url = server.url();
    let dst = SocketAddr::new(B_V4.parse()?, 9951);
    let a = Agent::start_in(dir.path(), &agent_args(&t, &url))?;
    traffic::udp(&t.a, &t.b, dst, &[100; 3])?;
    wait_for("a first acknowledged window", &a, |a| {
        status_u64(a, "jetstream-published-records") > 0
    })?;

    // The server goes away: windows queue up on disk.
    server.kill()?;
    traffic::udp(&t.a, &t.b, dst, &[200; 3])?;
    wait_for("windows queued while the server is down", &a, |a| {
        status_u64(a, "jetstream-queued-records") > 0 && status_u64(a, "jetstream-errors") > 0
    })?;
    // Stopped with a queue, restarted while the server is still down.
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let queued = done.agent_status["jetstream-queued-records"]
        .as_u64()
        .unwrap_or(0);
    assert!(queued > 0, "{}", done.agent_status);
    let a = Agent::start_in(dir.path(), &agent_args(&t, &url))?;
    assert!(
        a.stderr()
            .contains("windows queued by an earlier run will be sent first"),
        "{}",
        a.stderr()
    );
    traffic::udp(&t.a, &t.b, dst, &[300; 3])?;
    a.wait_windows(2, Duration::from_secs(20))?;

    // Back: everything queued goes out.
    server.restart()?;
    wait_for("the queue to empty", &a, |a| {
        a.wait_windows(1, Duration::from_secs(5)).is_ok() && status_u64(a, "jetstream-queued-records") == 0
    })?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.agent_status["jetstream-dropped-records"], 0);
    let records = assert_exactly_once(&url, ConnectOptions::new(), dir.path())?;
    let f = Filter {
        interface: Some("r-a"),
        dstport: Some(9951),
        ..Default::default()
    };
    assert_eq!(sum(&records, &f).0, 9);
    assert_eq!(sum(&records, &f).1, 3 * (100 + 200 + 300) + 9 * 28);
    Ok(())
}

/// `flowlog collect` as a child process, its log in `log`.
fn collector(
    url: &str,
    central: &Path,
    consumer: &str,
    log: &Path,
    extra: &[&str],
) -> anyhow::Result<std::process::Child> {
    let central = central.to_str().unwrap_or_default();
    let mut args = vec!["--server", url, "--data-dir", central];
    args.extend(["--consumer", consumer, "--ack-wait-secs", "2", "--batch", "4"]);
    args.extend_from_slice(extra);
    spawn_collect(&args, log)
}

/// `flowlog collect <args>`, its log in `log`.
fn spawn_collect(args: &[&str], log: &Path) -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new(flowlog_tests::agent::binary()?)
        .arg("collect")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?)
}

/// (rows, sum of bytes) in the central default Logstore.
/// Nothing yet while the Logstore does not exist.
fn central_totals(central: &Path) -> anyhow::Result<(u64, u64)> {
    let sql = "SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM logs";
    let Ok((v, _)) = logstore_json(central, ("default", "flowlogs"), "query", &[sql]) else {
        return Ok((0, 0));
    };
    let num = |x: &Value| num(x).unwrap_or(0);
    Ok((num(&v[0]["n"]), num(&v[0]["b"])))
}

#[test]
fn collectors_store_every_record_once_even_when_it_comes_again() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let server = NatsServer::start(&program, dir.path())?;
    let url = server.url();
    // An agent's windows in the stream.
    let a = Agent::start_in(dir.path(), &agent_args(&t, &url))?;
    for i in 0..4 {
        traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9960 + i), &[150; 5])?;
        std::thread::sleep(Duration::from_millis(600));
    }
    a.wait_windows(4, Duration::from_secs(20))?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let published = assert_exactly_once(&url, ConnectOptions::new(), dir.path())?;
    let want = (
        published.len() as u64,
        published
            .iter()
            .map(|r| r["bytes"].as_u64().unwrap_or(0))
            .sum::<u64>(),
    );

    let central = dir.path().join("central");
    // A collector killed right away, then one that runs to the end.
    let first = collector(&url, &central, "central", &dir.path().join("collect-1.log"), &[])?;
    std::thread::sleep(Duration::from_millis(300));
    let mut first = first;
    first.kill()?;
    first.wait()?;
    let mut second = collector(&url, &central, "central", &dir.path().join("collect-2.log"), &[])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while central_totals(&central)? != want {
        anyhow::ensure!(
            Instant::now() < deadline,
            "central Logstore holds {:?}, want {want:?}",
            central_totals(&central)?
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = terminate(&mut second, Duration::from_secs(20))?;
    assert!(
        status.success(),
        "collector exited with {status}:\n{}",
        std::fs::read_to_string(dir.path().join("collect-2.log")).unwrap_or_default()
    );

    // Every message delivered once more (a new consumer reads from the
    // start): all already stored, nothing written twice.
    let log = dir.path().join("collect-3.log");
    let metrics = format!("127.0.0.1:{}", 30_000 + (std::process::id() % 20_000) + 13);
    let mut third = collector(&url, &central, "replay", &log, &["--metrics-listen", &metrics])?;
    let (ids, _) = stream_contents(&url, ConnectOptions::new())?;
    // Its metrics say the same as its log: every message already stored.
    let deadline = Instant::now() + Duration::from_secs(20);
    while flowlog_tests::metric(&metrics, "flowlog_collect_already_stored_total").unwrap_or(0)
        < ids.len() as u64
    {
        anyhow::ensure!(Instant::now() < deadline, "{}", std::fs::read_to_string(&log)?);
        std::thread::sleep(Duration::from_millis(100));
    }
    for (name, want) in [
        ("flowlog_collect_messages_total", ids.len() as u64),
        ("flowlog_collect_files_total", 0),
        ("flowlog_collect_records_total", 0),
        ("flowlog_collect_rejected_total", 0),
    ] {
        assert_eq!(flowlog_tests::metric(&metrics, name)?, want, "{name}");
    }
    assert!(terminate(&mut third, Duration::from_secs(20))?.success());
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains(&format!("already_stored={}", ids.len())) && text.contains("files=0"),
        "{text}"
    );
    assert_eq!(central_totals(&central)?, want);
    Ok(())
}

#[test]
fn a_cluster_member_killed_while_publishing_loses_nothing() -> anyhow::Result<()> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = Arc::new(RouterTopology::new()?);
    let dir = TempDir::new()?;
    let mut servers = NatsServer::cluster(&program, dir.path(), 3)?;
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let config = dir.path().join("flowlog.toml");
    std::fs::write(
        &config,
        format!(
            "[jetstream]\nservers = [{}]\nreplicas = 3\n",
            urls.iter()
                .map(|u| format!("{u:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )?;
    let a = Agent::start_in(dir.path(), &agent_args_with_config(&t, &config))?;
    wait_for("the replicated stream", &a, |a| {
        status_u64(a, "jetstream-published-records") > 0
    })?;

    // A steady stream of datagrams; a server dies in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (t, stop, sent) = (t.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let dst = SocketAddr::new(B_V4.parse()?, 9970);
            while !stop.load(Ordering::SeqCst) {
                traffic::udp_from_port(&t.a, &t.b, 41_970, dst, &[120; 5])?;
                sent.fetch_add(5, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    // The member the agent is connected to (its client logs the port).
    let log = a.stderr();
    let port = log
        .rsplit("connected successfully server=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let victim = urls
        .iter()
        .position(|u| u.ends_with(&format!(":{port}")))
        .ok_or_else(|| anyhow::anyhow!("agent connected to no member? {log}"))?;
    servers[victim].kill()?;
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    a.wait_windows(2, Duration::from_secs(20))?;
    wait_for("the queue to empty", &a, |a| {
        status_u64(a, "jetstream-queued-records") == 0
    })?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.agent_status["jetstream-dropped-records"], 0);
    // It went on through another member (the client reconnected).
    assert!(
        done.stderr.matches("connected successfully server=").count() >= 2,
        "{}",
        done.stderr
    );
    // Read back through a surviving member.
    let records = assert_exactly_once(
        &urls[(victim + 1) % urls.len()],
        ConnectOptions::new(),
        dir.path(),
    )?;
    let f = Filter {
        interface: Some("r-a"),
        srcport: Some(41_970),
        dstport: Some(9970),
        ..Default::default()
    };
    assert_eq!(sum(&records, &f).0, sent.load(Ordering::SeqCst));
    Ok(())
}

/// [`agent_args`] with the JetStream settings of a configuration file.
fn agent_args_with_config<'a>(t: &'a RouterTopology, config: &'a Path) -> Vec<&'a str> {
    let config = config.to_str().unwrap_or_default();
    t.agent_args("tc", &["--window-secs", "1", "--no-rtt", "--config", config])
}

/// Runs `flowlog collect … --exit-when-idle` to its end (at most 60 s).
fn collect_until_idle(args: &[&str], log: &Path) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = spawn_collect(&[args, &["--exit-when-idle"]].concat(), log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return terminate(&mut child, Duration::from_secs(10));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tls_and_a_token_guard_the_stream_end_to_end() -> anyhow::Result<()> {
    const TOKEN: &str = "s3cret-flowlog-token";
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let ca = flowlog_tests::tls::TestCa::new(dir.path())?;
    let (cert, key) = (ca.cert.to_string_lossy(), ca.key.to_string_lossy());
    let server = NatsServer::start_with(
        &program,
        dir.path(),
        &["--tls", "--tlscert", &cert, "--tlskey", &key, "--auth", TOKEN],
    )?;
    let url = server.url();
    let config = dir.path().join("flowlog.toml");
    let write_config = |token: &str| {
        std::fs::write(
            &config,
            format!(
                "[jetstream]\nservers = [{url:?}]\ntoken = {token:?}\ntls-ca = {:?}\n",
                ca.ca
            ),
        )
    };
    let dst = SocketAddr::new(B_V4.parse()?, 9980);

    // A wrong token: refused, every window kept, nothing lost.
    write_config("not-the-token")?;
    let a = Agent::start_in(dir.path(), &agent_args_with_config(&t, &config))?;
    traffic::udp(&t.a, &t.b, dst, &[100; 2])?;
    wait_for("refused attempts with windows queued", &a, |a| {
        status_u64(a, "jetstream-errors") > 1 && status_u64(a, "jetstream-queued-records") > 0
    })?;
    assert_eq!(a.status()?["jetstream-connected"], false);
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.to_ascii_lowercase().contains("authorization"),
        "{}",
        done.stderr
    );

    // The right one: what waited goes out, then new windows.
    write_config(TOKEN)?;
    let a = Agent::start_in(dir.path(), &agent_args_with_config(&t, &config))?;
    traffic::udp(&t.a, &t.b, dst, &[200; 2])?;
    a.wait_windows(2, Duration::from_secs(20))?;
    wait_for("the queue to empty", &a, |a| {
        status_u64(a, "jetstream-queued-records") == 0
    })?;
    assert_eq!(a.status()?["jetstream-connected"], true);
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);

    // The server takes no client without the token, nor without TLS.
    let tls = || {
        ConnectOptions::new()
            .add_root_certificates(ca.ca.clone())
            .require_tls(true)
    };
    assert!(refused(&url, tls())?, "no token, yet accepted");
    assert!(
        refused(&url, ConnectOptions::with_token(TOKEN.into()))?,
        "a client that does not trust the CA connected"
    );
    let records = assert_exactly_once(&url, tls().token(TOKEN.into()), dir.path())?;
    let f = Filter {
        interface: Some("r-a"),
        dstport: Some(9980),
        ..Default::default()
    };
    assert_eq!(sum(&records, &f).0, 4);

    // The collector with the same settings stores them all.
    let central = dir.path().join("central");
    let ca_path = ca.ca.to_string_lossy();
    let log = dir.path().join("collect.log");
    let args = [
        "--server",
        &url,
        "--data-dir",
        central.to_str().unwrap_or_default(),
        "--token",
        TOKEN,
        "--tls-ca",
        &ca_path,
    ];
    let status = collect_until_idle(&args, &log)?;
    let text = std::fs::read_to_string(&log)?;
    assert!(status.success(), "collector: {status}\n{text}");
    let bytes: u64 = records.iter().map(|r| r["bytes"].as_u64().unwrap_or(0)).sum();
    assert_eq!(central_totals(&central)?, (records.len() as u64, bytes), "{text}");
    Ok(())
}

#[test]
fn an_nkey_user_publishes_and_collects() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed()?;
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: {:?} }} ] }}\n",
            user.public_key()
        ),
    )?;
    let server = NatsServer::start_with(&program, dir.path(), &["-c", conf.to_str().unwrap_or_default()])?;
    let url = server.url();
    let seed_file = dir.path().join("agent.nk");
    std::fs::write(&seed_file, format!("{seed}\n"))?;
    let config = dir.path().join("flowlog.toml");
    std::fs::write(
        &config,
        format!("[jetstream]\nservers = [{url:?}]\nnkey-seed = {seed_file:?}\n"),
    )?;
    let a = Agent::start_in(dir.path(), &agent_args_with_config(&t, &config))?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9981), &[300; 3])?;
    a.wait_windows(2, Duration::from_secs(20))?;
    wait_for("the queue to empty", &a, |a| {
        status_u64(a, "jetstream-published-records") > 0 && status_u64(a, "jetstream-queued-records") == 0
    })?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);

    assert!(
        refused(&url, ConnectOptions::new())?,
        "the server took a client without a key"
    );
    let records = assert_exactly_once(&url, ConnectOptions::new().nkey(seed.clone()), dir.path())?;
    let central = dir.path().join("central");
    let log = dir.path().join("collect.log");
    let args = [
        "--server",
        &url,
        "--data-dir",
        central.to_str().unwrap_or_default(),
        "--nkey-seed",
        seed_file.to_str().unwrap_or_default(),
    ];
    let status = collect_until_idle(&args, &log)?;
    let text = std::fs::read_to_string(&log)?;
    assert!(status.success(), "collector: {status}\n{text}");
    assert_eq!(central_totals(&central)?.0, records.len() as u64, "{text}");
    Ok(())
}

#[test]
fn a_full_queue_drops_its_oldest_windows_and_counts_them() -> anyhow::Result<()> {
    use flowlog_tests::packet::{frames, inject};
    if !privileged() {
        return Ok(());
    }
    let Some(program) = server_program() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    // The server is down from the start.
    let mut server = NatsServer::start(&program, dir.path())?;
    server.kill()?;
    let url = server.url();
    let config = dir.path().join("flowlog.toml");
    std::fs::write(
        &config,
        format!("[jetstream]\nservers = [{url:?}]\nqueue-bytes = 65536\n"),
    )?;
    let metrics = format!("127.0.0.1:{}", 30_000 + (std::process::id() % 20_000) + 11);
    let mut args = agent_args_with_config(&t, &config);
    args.extend(["--metrics-listen", &metrics]);
    let a = Agent::start_in(dir.path(), &args)?;
    // A hundred new flows a window (two records each: in at r-a, out at
    // r-b): a few windows overflow 64 KiB.
    for round in 0..8u16 {
        let (batch, _) = frames::distinct_udp(100, 20_000 + round * 100, 9982, 40);
        inject(&t.a, "eth0", &batch)?;
        std::thread::sleep(Duration::from_millis(1100));
        if status_u64(&a, "jetstream-dropped-records") > 0 && round >= 4 {
            break;
        }
    }
    wait_for("windows dropped at the bound", &a, |a| {
        status_u64(a, "jetstream-dropped-records") > 0
    })?;
    let s = a.status()?;
    assert!(
        s["jetstream-queued-bytes"].as_u64().unwrap_or(u64::MAX) <= 65536,
        "{s}"
    );
    assert!(
        a.stderr().contains("JetStream queue over its bound"),
        "{}",
        a.stderr()
    );
    let metric = flowlog_tests::metric(&metrics, "flowlog_jetstream_dropped_records_total")?;
    assert!(metric > 0);

    // Back: what is left goes out; the agent's records are exactly what
    // was acknowledged plus what was counted as dropped.
    server.restart()?;
    wait_for("the queue to empty", &a, |a| {
        status_u64(a, "jetstream-queued-records") == 0
    })?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let dropped = done.agent_status["jetstream-dropped-records"]
        .as_u64()
        .unwrap_or(0);
    assert!(dropped >= metric);
    let (_, from_stream) = stream_contents(&url, ConnectOptions::new())?;
    let own = flowlog_tests::agent::read_json_lines(&dir.path().join("records.jsonl"))?;
    assert_eq!(own.len() as u64, from_stream.len() as u64 + dropped);
    // The dropped ones are the oldest windows.
    let mut kept = sorted(&from_stream);
    let mut lost = Vec::new();
    for r in sorted(&own) {
        match kept.binary_search(&r) {
            Ok(i) => {
                kept.remove(i);
            }
            Err(_) => lost.push(r),
        }
    }
    assert!(kept.is_empty(), "the stream holds records the agent never wrote");
    let start = |r: &str| {
        serde_json::from_str::<Value>(r)
            .ok()
            .and_then(|v| v["start"].as_u64())
    };
    let newest_lost = lost.iter().filter_map(|r| start(r)).max();
    let oldest_sent = from_stream.iter().filter_map(|r| r["start"].as_u64()).min();
    assert!(newest_lost < oldest_sent, "{newest_lost:?} vs {oldest_sent:?}");
    Ok(())
}
