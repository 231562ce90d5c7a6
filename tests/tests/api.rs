//! The control API's contract against a real agent: every operation, every
//! error code, both request styles, the signed TCP listener, and no
//! half-applied state when something fails.

use flowlog_tests::{
    agent::Agent,
    api::{self, raw_tcp, raw_unix, request, signature_headers},
    hooks_gone, hooks_on, privileged,
    topology::RouterTopology,
};
use serde_json::{Value, json};

/// Calls and checks the status and (for errors) the code.
fn expect(agent: &Agent, action: &str, params: Value, status: u16, code: Option<&str>) -> Value {
    let (got, v) = agent
        .call(action, params.clone())
        .unwrap_or_else(|e| panic!("{action} {params}: {e:#}"));
    assert_eq!(got, status, "{action} {params}: {v}");
    if let Some(code) = code {
        assert_eq!(v["Code"], code, "{action} {params}: {v}");
        assert!(v["Message"].as_str().is_some_and(|m| m.len() > 10), "{v}");
    }
    v
}

fn ok(agent: &Agent, action: &str, params: Value) -> Value {
    agent.ok(action, params)
}

fn flowlog_params(name: &str, netns: &str) -> Value {
    json!({
        "FlowLogName": name, "CenId": "cen-test1", "ProjectName": "proj-a", "LogStoreName": "store-a",
        "Interval": 600, "Description": "router flows",
        "Attachments": [{"Interface": "r-a", "Netns": netns, "Mode": "tc"}, {"Interface": "r-b", "Netns": netns}],
    })
}

fn setup(agent: &Agent) {
    ok(
        agent,
        "CreateProject",
        json!({"ProjectName": "proj-a", "Description": "test"}),
    );
    ok(
        agent,
        "CreateLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "store-a", "Ttl": 7}),
    );
}

#[test]
fn projects_and_logstores() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let a = Agent::start(&[])?;
    setup(&a);
    expect(
        &a,
        "CreateProject",
        json!({"ProjectName": "proj-a"}),
        409,
        Some("ResourceAlreadyExists.Project"),
    );
    expect(
        &a,
        "CreateProject",
        json!({"ProjectName": "Proj A"}),
        400,
        Some("InvalidParameter.ProjectName"),
    );
    expect(
        &a,
        "CreateProject",
        json!({}),
        400,
        Some("MissingParameter.ProjectName"),
    );
    expect(
        &a,
        "CreateProject",
        json!({"ProjectName": 5}),
        400,
        Some("InvalidParameter.ProjectName"),
    );
    expect(
        &a,
        "CreateProject",
        json!({"ProjectName": "ok-1", "Description": "https://x"}),
        400,
        Some("InvalidParameter.Description"),
    );
    expect(
        &a,
        "CreateLogstore",
        json!({"ProjectName": "nope", "LogStoreName": "abc"}),
        404,
        Some("ResourceNotFound.Project"),
    );
    expect(
        &a,
        "CreateLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "store-a"}),
        409,
        Some("ResourceAlreadyExists.LogStore"),
    );
    expect(
        &a,
        "CreateLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "_x"}),
        400,
        Some("InvalidParameter.LogStoreName"),
    );
    expect(
        &a,
        "CreateLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "abc", "Ttl": 0}),
        400,
        Some("InvalidParameter.Ttl"),
    );
    let list = ok(&a, "ListLogstores", json!({"ProjectName": "proj-a"}));
    assert_eq!(list["LogStores"][0]["LogStoreName"], "store-a");
    assert_eq!(list["LogStores"][0]["Ttl"], 7);
    let projects = ok(&a, "ListProjects", json!({}));
    assert_eq!(projects["TotalCount"], 1);
    assert_eq!(projects["Projects"][0]["LogStoreCount"], 1);
    expect(
        &a,
        "DeleteProject",
        json!({"ProjectName": "proj-a"}),
        409,
        Some("DependencyViolation.Project"),
    );
    expect(
        &a,
        "DeleteLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "zzz"}),
        404,
        Some("ResourceNotFound.LogStore"),
    );
    ok(
        &a,
        "DeleteLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "store-a"}),
    );
    ok(&a, "DeleteProject", json!({"ProjectName": "proj-a"}));
    expect(
        &a,
        "DeleteProject",
        json!({"ProjectName": "proj-a"}),
        404,
        Some("ResourceNotFound.Project"),
    );
    assert_eq!(ok(&a, "ListProjects", json!({}))["TotalCount"], 0);
    let done = a.stop()?;
    assert!(done.status.success());
    Ok(())
}

#[test]
fn flow_log_lifecycle_and_its_errors() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let a = Agent::start(&[])?;
    setup(&a);
    // A flow log must point at an existing Project and Logstore.
    let mut p = flowlog_params("rt1", &ns);
    p["LogStoreName"] = json!("missing");
    expect(&a, "CreateFlowlog", p, 404, Some("ResourceNotFound.LogStore"));
    let mut p = flowlog_params("rt1", &ns);
    p["ProjectName"] = json!("missing");
    expect(&a, "CreateFlowlog", p, 404, Some("ResourceNotFound.Project"));
    for (field, value, code) in [
        ("FlowLogName", json!("1bad"), "InvalidParameter.FlowLogName"),
        ("CenId", json!("vpc-1"), "InvalidParameter.CenId"),
        ("Interval", json!(0), "InvalidParameter.Interval"),
        ("Interval", json!("ten"), "InvalidParameter.Interval"),
        ("Attachments", json!([]), "InvalidParameter.Attachments"),
        (
            "Attachments",
            json!([{"Interface": "a/b"}]),
            "InvalidParameter.Attachments",
        ),
        (
            "Attachments",
            json!([{"Interface": "r-a", "Mode": "fast"}]),
            "InvalidParameter.Attachments",
        ),
        (
            "Attachments",
            json!([{"Interface": "r-a"}, {"Interface": "r-a"}]),
            "InvalidParameter.Attachments",
        ),
        (
            "Attachments",
            json!([{"Interface": "r-a", "Speed": 1}]),
            "InvalidParameter.Attachments",
        ),
        ("Attachments", json!("not json"), "InvalidParameter.Attachments"),
        ("Bogus", json!(1), "InvalidParameter.Bogus"),
    ] {
        let mut p = flowlog_params("rt1", &ns);
        p[field] = value;
        expect(&a, "CreateFlowlog", p, 400, Some(code));
    }
    let mut p = flowlog_params("rt1", &ns);
    p.as_object_mut().map(|o| o.remove("CenId"));
    expect(&a, "CreateFlowlog", p, 400, Some("MissingParameter.CenId"));
    // Nothing above created anything.
    assert_eq!(ok(&a, "DescribeFlowlogs", json!({}))["TotalCount"], 0);

    let id = ok(&a, "CreateFlowlog", flowlog_params("rt1", &ns))["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(id.starts_with("fl-") && id.len() == 23, "{id}");
    let d = ok(&a, "DescribeFlowlogs", json!({"FlowLogId": id}));
    let f = &d["FlowLogs"][0];
    assert_eq!(
        (
            f["Status"].as_str(),
            f["FlowLogName"].as_str(),
            f["Interval"].as_u64()
        ),
        (Some("Inactive"), Some("rt1"), Some(600))
    );
    assert_eq!(f["Attachments"][0]["Netns"], ns.as_str());
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (0, 0, false),
        "created flow logs do not capture"
    );

    expect(
        &a,
        "DeactiveFlowLog",
        json!({"FlowLogId": id}),
        409,
        Some("IncorrectStatus.FlowLog"),
    );
    ok(&a, "ActiveFlowLog", json!({"FlowLogId": id}));
    assert_eq!(hooks_on(&t.router, "r-a")?, (1, 1, false));
    assert_eq!(hooks_on(&t.router, "r-b")?, (1, 1, false));
    expect(
        &a,
        "ActiveFlowLog",
        json!({"FlowLogId": id}),
        409,
        Some("IncorrectStatus.FlowLog"),
    );
    expect(
        &a,
        "DeleteFlowlog",
        json!({"FlowLogId": id}),
        409,
        Some("IncorrectStatus.FlowLog"),
    );
    expect(
        &a,
        "DeleteLogstore",
        json!({"ProjectName": "proj-a", "LogStoreName": "store-a"}),
        409,
        Some("DependencyViolation.LogStore"),
    );

    ok(
        &a,
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": id, "FlowLogName": "renamed", "Description": "new", "Interval": 60}),
    );
    let f = ok(&a, "DescribeFlowlogs", json!({"FlowLogId": id}))["FlowLogs"][0].clone();
    assert_eq!(
        (
            f["FlowLogName"].as_str(),
            f["Description"].as_str(),
            f["Interval"].as_u64()
        ),
        (Some("renamed"), Some("new"), Some(60))
    );
    expect(
        &a,
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": id}),
        400,
        Some("MissingParameter.FlowLogName"),
    );
    expect(
        &a,
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": id, "Interval": 100000}),
        400,
        Some("InvalidParameter.Interval"),
    );
    expect(
        &a,
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": "fl-nope", "Description": "x"}),
        404,
        Some("ResourceNotFound.FlowLog"),
    );

    ok(&a, "DeactiveFlowLog", json!({"FlowLogId": id}));
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false));
    ok(&a, "DeleteFlowlog", json!({"FlowLogId": id}));
    for action in ["ActiveFlowLog", "DeactiveFlowLog", "DeleteFlowlog"] {
        expect(
            &a,
            action,
            json!({"FlowLogId": id}),
            404,
            Some("ResourceNotFound.FlowLog"),
        );
    }
    expect(
        &a,
        "ActiveFlowLog",
        json!({}),
        400,
        Some("MissingParameter.FlowLogId"),
    );
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn failed_activation_leaves_nothing_half_applied() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let a = Agent::start(&[])?;
    setup(&a);
    // r-a exists, ghost does not: r-a gets attached first, then must be undone.
    let mut p = flowlog_params("half", &ns);
    p["Attachments"] = json!([{"Interface": "r-a", "Netns": ns}, {"Interface": "ghost", "Netns": ns}]);
    let id = ok(&a, "CreateFlowlog", p)["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let v = expect(
        &a,
        "ActiveFlowLog",
        json!({"FlowLogId": id}),
        422,
        Some("OperationFailed.Attach"),
    );
    assert!(
        v["Message"]
            .as_str()
            .is_some_and(|m| m.contains("ghost") && m.contains("does not exist")),
        "{v}"
    );
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false), "r-a left attached");
    let f = ok(&a, "DescribeFlowlogs", json!({"FlowLogId": id}))["FlowLogs"][0].clone();
    assert_eq!(f["Status"], "Inactive");
    // A flow log already running on r-a keeps its hooks through the failure.
    let good = ok(&a, "CreateFlowlog", flowlog_params("good", &ns))["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ok(&a, "ActiveFlowLog", json!({"FlowLogId": good}));
    expect(
        &a,
        "ActiveFlowLog",
        json!({"FlowLogId": id}),
        422,
        Some("OperationFailed.Attach"),
    );
    assert_eq!(hooks_on(&t.router, "r-a")?, (1, 1, false));
    assert!(a.stop()?.status.success());
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false));
    Ok(())
}

#[test]
fn describe_pages_and_filters() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let a = Agent::start(&[])?;
    setup(&a);
    for i in 0..25 {
        let mut p = flowlog_params(&format!("fl{i:02}"), "nowhere");
        p["CenId"] = json!(if i % 5 == 0 { "cen-five" } else { "cen-other" });
        ok(&a, "CreateFlowlog", p);
    }
    let page3 = ok(&a, "DescribeFlowlogs", json!({"PageSize": 10, "PageNumber": 3}));
    assert_eq!(
        (
            page3["TotalCount"].as_u64(),
            page3["FlowLogs"].as_array().map(Vec::len)
        ),
        (Some(25), Some(5))
    );
    let all: Vec<String> = (1..=3)
        .flat_map(|n| {
            ok(&a, "DescribeFlowlogs", json!({"PageSize": 10, "PageNumber": n}))["FlowLogs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| f["FlowLogId"].as_str().map(str::to_owned))
        .collect();
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (25, 25), "pages overlap or miss items");
    assert_eq!(
        ok(&a, "DescribeFlowlogs", json!({"CenId": "cen-five"}))["TotalCount"],
        5
    );
    assert_eq!(
        ok(&a, "DescribeFlowlogs", json!({"FlowLogName": "fl07"}))["TotalCount"],
        1
    );
    assert_eq!(
        ok(&a, "DescribeFlowlogs", json!({"Status": "Inactive"}))["TotalCount"],
        25
    );
    assert_eq!(
        ok(&a, "DescribeFlowlogs", json!({"Status": "Active"}))["TotalCount"],
        0
    );
    assert_eq!(
        ok(&a, "DescribeFlowlogs", json!({"PageNumber": 9}))["FlowLogs"],
        json!([])
    );
    expect(
        &a,
        "DescribeFlowlogs",
        json!({"Status": "Running"}),
        400,
        Some("InvalidParameter.Status"),
    );
    expect(
        &a,
        "DescribeFlowlogs",
        json!({"PageSize": 0}),
        400,
        Some("InvalidParameter.PageSize"),
    );
    expect(
        &a,
        "DescribeFlowlogs",
        json!({"PageSize": 101}),
        400,
        Some("InvalidParameter.PageSize"),
    );
    expect(
        &a,
        "DescribeFlowlogs",
        json!({"PageNumber": 0}),
        400,
        Some("InvalidParameter.PageNumber"),
    );
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn malformed_requests_get_clear_4xx() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let a = Agent::start(&[])?;
    let sock = a.socket();
    let mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)?;
    assert_eq!(mode, 0o600, "the API socket must be root-only");
    let cases: [(Vec<u8>, u16, &str); 7] = [
        (
            request("POST", "/v1/ListProjects", "", b"{not json"),
            400,
            "InvalidParameter.Body",
        ),
        (
            request("POST", "/v1/ListProjects", "", b"[1,2]"),
            400,
            "InvalidParameter.Body",
        ),
        (
            request("POST", "/v1/NoSuchAction", "", b"{}"),
            400,
            "InvalidAction.NotFound",
        ),
        (request("POST", "/", "", b"{}"), 400, "MissingParameter.Action"),
        (
            request("POST", "/v1/ListProjects", "", &vec![b' '; 70 * 1024]),
            413,
            "InvalidParameter.BodyTooLarge",
        ),
        (
            request("GET", "/?Action=DescribeFlowlogs&PageSize=x", "", b""),
            400,
            "InvalidParameter.PageSize",
        ),
        (
            request("GET", "/?Action=ListProjects&Extra=1", "", b""),
            400,
            "InvalidParameter.Extra",
        ),
    ];
    for (req, status, code) in cases {
        let r = raw_unix(&sock, &req)?;
        let v = r.json()?;
        assert_eq!((r.status, v["Code"].as_str()), (status, Some(code)), "{v}");
        assert!(v["RequestId"].as_str().is_some_and(|s| s.len() == 36), "{v}");
    }
    // RPC style in the query string, the product's way.
    let r = raw_unix(
        &sock,
        &request(
            "GET",
            "/?Action=CreateProject&ProjectName=q-style&Description=a%20b",
            "",
            b"",
        ),
    )?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = a.call("ListProjects", json!({}))?.1;
    assert_eq!(v["Projects"][0]["Description"], "a b");
    // The agent is unaffected.
    assert_eq!(a.call("ListProjects", json!({}))?.0, 200);
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn tcp_listener_requires_a_valid_signature() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let a = Agent::start(&["--api-listen", &addr])?;
    let key = ok(&a, "CreateAccessKey", json!({"Description": "test key"}));
    let (id, secret) = (
        key["AccessKeyId"].as_str().unwrap_or_default(),
        key["AccessKeySecret"].as_str().unwrap_or_default(),
    );
    assert!(id.starts_with("FLAK") && secret.len() == 40);
    let listed = ok(&a, "ListAccessKeys", json!({}));
    assert_eq!(listed["AccessKeys"][0]["AccessKeyId"], id);
    assert!(!listed.to_string().contains(secret), "secrets are never listed");

    let body = br#"{"Action":"ListProjects"}"#;
    let target = "/";
    let send = |headers: &str| -> anyhow::Result<(u16, Value)> {
        let r = raw_tcp(&addr, &request("POST", target, headers, body))?;
        Ok((r.status, r.json()?))
    };
    let now = api::now();
    let signed = signature_headers(id, secret, "POST", target, now, body);
    let (s, v) = send(&signed)?;
    assert_eq!(s, 200, "{v}");
    // The same signed request again is a replay, refused.
    let (s, v) = send(&signed)?;
    assert_eq!((s, v["Code"].as_str()), (403, Some("Forbidden.Replay")), "{v}");
    // A captured CreateAccessKey sent three times makes one key.
    let create = br#"{"Action":"CreateAccessKey"}"#;
    let signed = signature_headers(id, secret, "POST", target, api::now(), create);
    let statuses: Vec<u16> = (0..3)
        .map(|_| raw_tcp(&addr, &request("POST", target, &signed, create)).map(|r| r.status))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(statuses, vec![200, 403, 403]);
    let listed = ok(&a, "ListAccessKeys", json!({}));
    assert_eq!(listed["AccessKeys"].as_array().map(Vec::len), Some(2), "{listed}");
    for (headers, status, code) in [
        (String::new(), 401, "Unauthorized"),
        (
            signature_headers("FLAKNOSUCHKEY", secret, "POST", target, now, body),
            401,
            "InvalidAccessKeyId.NotFound",
        ),
        (
            signature_headers(id, "wrong-secret", "POST", target, now, body),
            403,
            "Forbidden.SignatureDoesNotMatch",
        ),
        (
            signature_headers(id, secret, "POST", target, now, b"{}"),
            403,
            "Forbidden.SignatureDoesNotMatch",
        ),
        (
            signature_headers(id, secret, "POST", target, now - 3600, body),
            403,
            "Forbidden.RequestExpired",
        ),
    ] {
        let (s, v) = send(&headers)?;
        assert_eq!((s, v["Code"].as_str()), (status, Some(code)), "{v}");
    }
    // Refusals are logged without the secret.
    let log = a.stderr();
    assert!(log.contains("Forbidden.SignatureDoesNotMatch") && !log.contains(secret));
    ok(&a, "DeleteAccessKey", json!({"AccessKeyId": id}));
    let (s, v) = send(&signature_headers(id, secret, "POST", target, api::now(), body))?;
    assert_eq!(
        (s, v["Code"].as_str()),
        (401, Some("InvalidAccessKeyId.NotFound"))
    );
    expect(
        &a,
        "DeleteAccessKey",
        json!({"AccessKeyId": id}),
        404,
        Some("ResourceNotFound.AccessKey"),
    );
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn status_view_shows_attachments_and_windows() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    setup(&a);
    let id = ok(&a, "CreateFlowlog", flowlog_params("st", t.router.name()))["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ok(&a, "ActiveFlowLog", json!({"FlowLogId": id}));
    let s = ok(&a, "DescribeAgentStatus", json!({}));
    let atts = s["Status"]["attachments"].as_array().cloned().unwrap_or_default();
    assert_eq!(atts.len(), 2, "{s}");
    assert!(
        atts.iter()
            .all(|x| x["flow-logs"] == json!([id.clone()]) && x["egress-hook"] == "tc"),
        "{s}"
    );
    assert_eq!(s["FlowMaps"][0]["Ipv4"]["FlowMapEntries"], 65536);
    assert_eq!(s["FlowMaps"][0]["Ipv6"]["FlowMapEntries"], 16384);
    assert_eq!(s["FlowLogs"][0]["FlowLogId"], id.as_str());
    assert_eq!(s["FlowLogs"][0]["Interval"], 600);
    assert!(a.stop()?.status.success());
    Ok(())
}

/// Reads until the server closes the connection (or 20 s pass); returns
/// what it sent.
fn until_closed(mut s: impl std::io::Read) -> anyhow::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => anyhow::bail!(
                "connection still open ({e}) after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[test]
fn hostile_clients_are_cut_off_and_others_served() -> anyhow::Result<()> {
    use std::{
        io::Write,
        net::{Ipv4Addr, TcpStream},
        os::unix::net::UnixStream,
        time::{Duration, Instant},
    };
    if !privileged() {
        return Ok(());
    }
    let port = 20_000 + (std::process::id() % 20_000) as u16 + 3;
    let addr = format!("127.0.0.1:{port}");
    let a = Agent::start(&["--api-listen", &addr])?;
    let key = ok(&a, "CreateAccessKey", json!({}));
    let (id, secret) = (
        key["AccessKeyId"].as_str().unwrap_or_default().to_owned(),
        key["AccessKeySecret"].as_str().unwrap_or_default().to_owned(),
    );
    let limit = Some(Duration::from_secs(20));
    let head = b"POST / HTTP/1.1\r\nHost: flowlog\r\nX-Slow: ";
    // Slow-loris from one client address (127.0.0.1): headers started and
    // never finished, on both listeners; one keeps dribbling a byte every
    // 200 ms. Together they hold all the connections one address may.
    let mut silent = Vec::new();
    for _ in 0..15 {
        let mut s = TcpStream::connect(&addr)?;
        s.write_all(head)?;
        s.set_read_timeout(limit)?;
        silent.push(s);
    }
    let mut unix = UnixStream::connect(a.socket())?;
    unix.write_all(head)?;
    unix.set_read_timeout(limit)?;
    let dribbler = {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(limit)?;
        s.write_all(head)?;
        let reader = s.try_clone()?;
        std::thread::spawn(move || {
            for _ in 0..100 {
                if s.write_all(b"a").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        reader
    };
    // One more from that address is answered 503 at once, with when to
    // try again, and closed.
    let mut over = TcpStream::connect(&addr)?;
    over.set_read_timeout(limit)?;
    let refused = Instant::now();
    let answer = String::from_utf8_lossy(&until_closed(&mut over)?).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("Retry-After: 1"),
        "{answer}"
    );
    assert!(
        refused.elapsed() < flowlog_agent::api::listen::HEADER_TIMEOUT,
        "closed only by the header timeout"
    );
    // A body that never arrives in full, from another address.
    let mut slow_body = api::connect_from(Ipv4Addr::new(127, 0, 0, 3), &addr)?;
    slow_body.write_all(
        b"POST /v1/ListProjects HTTP/1.1\r\nHost: flowlog\r\nContent-Length: 100\r\n\r\n{\"a\":",
    )?;
    slow_body.set_read_timeout(limit)?;
    // Meanwhile signed requests from other clients and Unix-socket requests
    // go through.
    let body = br#"{"Action":"ListProjects"}"#;
    for _ in 0..5 {
        let r = api::raw_tcp_from(
            Ipv4Addr::new(127, 0, 0, 2),
            &addr,
            &request(
                "POST",
                "/",
                &signature_headers(&id, &secret, "POST", "/", api::now(), body),
                body,
            ),
        )?;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(a.call("ListProjects", json!({}))?.0, 200);
    }
    // Headers far beyond the cap: refused outright.
    let r = api::raw_tcp_from(
        Ipv4Addr::new(127, 0, 0, 2),
        &addr,
        &request(
            "POST",
            "/",
            &format!("X-Big: {}\r\n", "b".repeat(64 * 1024)),
            body,
        ),
    );
    match r {
        Ok(r) => assert_eq!(r.status, 431),
        // The server may close before the client has written it all.
        Err(e) => assert!(
            format!("{e:#}").contains("reset") || format!("{e:#}").contains("pipe"),
            "{e:#}"
        ),
    }
    // Every hostile connection is closed in bounded time; the slow body
    // gets a 408 first.
    let started = Instant::now();
    for s in silent {
        until_closed(s)?;
    }
    until_closed(unix)?;
    until_closed(dribbler)?;
    let answer = String::from_utf8_lossy(&until_closed(slow_body)?).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("RequestTimeout"),
        "{answer}"
    );
    eprintln!("hostile connections closed within {:?}", started.elapsed());
    // And the agent serves as before.
    assert_eq!(a.call("ListProjects", json!({}))?.0, 200);
    assert!(a.stop()?.status.success());
    Ok(())
}

/// The TCP API over TLS: the agent's client and an independent one (curl)
/// get through with the CA; plain HTTP to the TLS port gets no answer; and
/// plain HTTP beyond loopback is refused at start unless asked for.
#[test]
fn tcp_listener_speaks_tls_and_refuses_plain_http_beyond_loopback() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let certs = flowlog_tests::agent::TempDir::new()?;
    let ca = flowlog_tests::tls::TestCa::new(certs.path())?;
    let addr = format!("127.0.0.1:{}", flowlog_tests::free_port()?);
    let (cert, key) = (ca.cert.to_string_lossy(), ca.key.to_string_lossy());
    let a = Agent::start(&[
        "--api-listen",
        &addr,
        "--api-tls-cert",
        &cert,
        "--api-tls-key",
        &key,
    ])?;
    let k = ok(&a, "CreateAccessKey", json!({}));
    let (id, secret) = (
        k["AccessKeyId"].as_str().unwrap_or_default().to_owned(),
        k["AccessKeySecret"].as_str().unwrap_or_default().to_owned(),
    );
    // The flowlog CLI, trusting the test CA.
    let out = std::process::Command::new(flowlog_tests::agent::binary()?)
        .args([
            "--endpoint",
            &addr,
            "--access-key-id",
            &id,
            "--access-key-secret",
            &secret,
        ])
        .arg("--tls-ca")
        .arg(&ca.ca)
        .args(["--json", "list-projects"])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // curl, signing as the README says.
    let body = br#"{"Action":"ListProjects"}"#;
    let headers = signature_headers(&id, &secret, "POST", "/", api::now(), body);
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--max-time", "10", "--cacert"]).arg(&ca.ca);
    for h in headers.split("\r\n").filter(|h| !h.is_empty()) {
        curl.args(["-H", h]);
    }
    let out = curl
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(std::str::from_utf8(body)?)
        .arg(format!("https://{addr}/"))
        .output()?;
    let answer: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    assert!(answer["Projects"].is_array(), "{answer}");
    // Without the CA, curl refuses the certificate; plain HTTP gets no answer.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("https://{addr}/")])
        .output()?;
    assert!(!out.status.success());
    let plain = raw_tcp(&addr, &request("POST", "/", "", body));
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS listener was answered with {:?}",
        plain.map(|r| r.status).ok()
    );
    assert!(a.stop()?.status.success());

    // Beyond loopback without TLS: refused at start, with the way out.
    let remote = format!("0.0.0.0:{}", flowlog_tests::free_port()?);
    let (_, err) =
        flowlog_tests::agent::run_expecting_failure(&["--api-listen", &remote, "--allow-remote-api"])?;
    assert!(
        err.contains("api.tls-cert") && err.contains("allow-plain-http"),
        "{err}"
    );
    let b = Agent::start(&[
        "--api-listen",
        &remote,
        "--allow-remote-api",
        "--api-allow-plain-http",
    ])?;
    assert!(b.stop()?.status.success());
    Ok(())
}
