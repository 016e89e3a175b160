//! The operator's HTTP listener: metrics that move with real traffic, the status page and its
//! JSON, and a listener that bad or greedy HTTP clients cannot turn against the Kafka one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::harness::{free_port, Cairn, Client};
use crate::util::*;

fn start() -> (Cairn, SocketAddr) {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cairn = Cairn::start(&[&format!("cairn.http.listen={http}")]);
    // The HTTP listener comes up right after the Kafka one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "no HTTP listener on {http}");
        std::thread::sleep(Duration::from_millis(20));
    }
    (cairn, http)
}

/// Sends `request` as is; returns (status code, body). Status 0: the connection was closed
/// without an answer.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of the sample named `series` (name and labels exactly as exposed), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

fn commit(client: &mut Client, group: &str, topic: &str, offset: i64) {
    let r = client.call(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]),
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

#[test]
fn metrics_move_with_produce_fetch_and_commits() {
    let (cairn, http) = start();
    let mut client = cairn.client();
    create_topic(&mut client, "m", 1, &[]);
    let (status, before) = get(http, "/metrics");
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        sample(
            &before,
            "cairn_partition_high_watermark{topic=\"m\",partition=\"0\"}"
        ),
        Some(0.0),
        "{before}"
    );
    assert_eq!(
        sample(&before, "cairn_topic_messages_in_total{topic=\"m\"}"),
        None
    );

    for i in 0..3 {
        produce(&mut client, 12, "m", 0, batch(&["a", "b"], i));
    }
    let fetched = fetch(&mut client, 12, "m", 0, 0);
    let records = fetched.responses[0].partitions[0]
        .records
        .as_ref()
        .map_or(0, |r| r.len());
    commit(&mut client, "readers", "m", 2);

    let (_, after) = get(http, "/metrics");
    let value =
        |series: &str| sample(&after, series).unwrap_or_else(|| panic!("no {series} in:\n{after}"));
    assert_eq!(value("cairn_topic_messages_in_total{topic=\"m\"}"), 6.0);
    assert!(value("cairn_topic_in_bytes_total{topic=\"m\"}") > 0.0);
    assert_eq!(
        value("cairn_topic_out_bytes_total{topic=\"m\"}"),
        records as f64
    );
    assert_eq!(
        value("cairn_partition_high_watermark{topic=\"m\",partition=\"0\"}"),
        6.0
    );
    assert_eq!(
        value("cairn_partition_log_end_offset{topic=\"m\",partition=\"0\"}"),
        6.0
    );
    assert!(value("cairn_partition_size_bytes{topic=\"m\",partition=\"0\"}") > 0.0);
    assert_eq!(value("cairn_requests_total{api=\"Produce\"}"), 3.0);
    assert_eq!(
        value("cairn_request_duration_seconds_count{api=\"Produce\"}"),
        3.0
    );
    assert_eq!(
        value("cairn_group_committed_offset{group=\"readers\",topic=\"m\",partition=\"0\"}"),
        2.0
    );
    assert_eq!(
        value("cairn_group_lag{group=\"readers\",topic=\"m\",partition=\"0\"}"),
        4.0
    );
    assert!(value("cairn_process_resident_memory_bytes") > 1e6);
    assert!(value("cairn_process_open_fds") > 0.0);
    assert!(
        after.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
}

#[test]
fn status_page_and_json_show_topics_groups_and_lag() {
    let (cairn, http) = start();
    let mut client = cairn.client();
    create_topic(&mut client, "orders", 1, &[]);
    produce(
        &mut client,
        12,
        "orders",
        0,
        batch(&["a", "b", "c", "d"], 0),
    );
    commit(&mut client, "rebuild", "orders", 1);
    commit(&mut client, "<b>ad&group", "orders", 4);

    let (status, json) = get(http, "/v1/status");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let orders = doc["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .expect("orders in /v1/status");
    assert_eq!(orders["partitions"][0]["high_watermark"], 4);
    let group = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == "rebuild")
        .expect("group in /v1/status");
    assert_eq!(group["lag"], 3);
    assert_eq!(group["offsets"][0]["committed_offset"], 1);

    let (status, page) = get(http, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<tr><td>orders-0</td><td>0</td><td>4</td><td>4</td>"),
        "{page}"
    );
    assert!(page.contains("<tr id='group-rebuild'>"), "{page}");
    assert!(page.contains("<td class=lag>3</td>"), "{page}");
    assert!(page.contains("25.0%"), "progress: 1 of 4 records: {page}");
    assert!(
        page.contains("<td>&lt;b&gt;ad&amp;group</td>"),
        "names are escaped: {page}"
    );
    assert!(!page.contains("<b>ad"), "{page}");
}

#[test]
fn bad_and_greedy_http_clients_get_errors_and_kafka_keeps_serving() {
    let (cairn, http) = start();
    let (status, body) = get(http, "/nope");
    assert_eq!(status, 404);
    assert!(body.contains("not found"), "{body}");
    let (status, _) = raw(
        http,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(status, 405);
    let (status, _) = raw(http, b"NOT-HTTP\r\n\r\n");
    assert_eq!(status, 400);
    // Headers beyond the bound: refused (431) or cut, never buffered without end.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (status, _) = raw(http, huge.as_bytes());
    assert!(status == 431 || status == 0, "status {status}");
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = raw(
        http,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert!(status == 431 || status == 0, "status {status}");

    // A crowd of idle connections: the ones over the limit are closed at once, the rest cut when
    // their headers do not come; the Kafka listener answers all along.
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(http).expect("connect"))
        .collect();
    let mut kafka = cairn.client();
    let r = kafka.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
    assert_eq!(r.brokers.len(), 1);
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 64];
        if s.read(&mut buf).is_ok() {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 80,
        "every idle connection is closed by the listener"
    );
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "cut by the header timeout"
    );
    let (status, _) = get(http, "/metrics");
    assert_eq!(
        status, 200,
        "the listener serves again once the crowd is gone"
    );
}

#[test]
fn an_http_address_set_but_taken_stops_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap();
    let temp = tempfile::tempdir().expect("temp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .arg("--set")
        .arg(format!("cairn.http.listen={addr}"))
        .output()
        .expect("run cairn");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cairn.http.listen"), "{stderr}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--set", "cairn.http.listen=localhost:http"])
        .output()
        .expect("run cairn");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid address is a configuration error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cairn.http.listen"));
}

/// The value of `series`, waiting up to 30 s for `ready` to accept it (the cleaner and
/// background verification run on their own schedule).
fn wait_for(http: SocketAddr, series: &str, ready: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(http).is_err() {
            // Not listening yet (a restart).
            assert!(Instant::now() < deadline, "no HTTP listener on {http}");
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let (_, text) = get(http, "/metrics");
        if sample(&text, series).is_some_and(&ready) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became ready:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_cover_errors_durability_cleaning_and_a_kill_9_recovery() {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cairn = Cairn::start(&[
        &format!("cairn.http.listen={http}"),
        "log.cleaner.backoff.ms=100",
    ]);
    let mut client = cairn.client();
    create_topic(&mut client, "plain", 1, &[]);
    create_topic(
        &mut client,
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let (_, before) = get(http, "/metrics");
    assert_eq!(
        sample(&before, "cairn_errors_total{api=\"Produce\",code=\"3\"}"),
        None
    );
    assert_eq!(sample(&before, "cairn_cleaner_runs_total"), Some(0.0));
    assert_eq!(sample(&before, "cairn_startup_unclean"), Some(0.0));
    assert!(
        sample(&before, "cairn_connections") >= Some(1.0),
        "{before}"
    );

    // Produce with acks=all, to a missing topic (UNKNOWN_TOPIC_OR_PARTITION, 3), and the same
    // keys again and again to the compacted topic, its segments rolling in between.
    for i in 0..4 {
        assert_eq!(
            produce(&mut client, 9, "plain", 0, batch(&["a", "b"], i)).0,
            0
        );
    }
    assert_eq!(produce(&mut client, 9, "missing", 0, batch(&["a"], 0)).0, 3);
    for _ in 0..5 {
        // Segments roll by record time (segment.ms), so the records carry the current time.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(
            produce(&mut client, 9, "compacted", 0, batch(&["x", "y"], now)).0,
            0
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    let fetched = fetch(&mut client, 12, "plain", 0, 0);
    assert!(fetched.responses[0].partitions[0].records.is_some());
    commit(&mut client, "readers", "plain", 2);
    let _second = cairn.client();
    wait_for(http, "cairn_cleaner_runs_total", |runs| runs >= 1.0);
    // Cleaned up to the active segment once no more segments roll.
    let after = wait_for(
        http,
        "cairn_cleaner_dirty_ratio{topic=\"compacted\",partition=\"0\"}",
        |ratio| ratio == 0.0,
    );
    let value =
        |series: &str| sample(&after, series).unwrap_or_else(|| panic!("no {series} in:\n{after}"));
    assert_eq!(value("cairn_errors_total{api=\"Produce\",code=\"3\"}"), 1.0);
    assert_eq!(value("cairn_produce_durable_duration_seconds_count"), 9.0);
    assert!(value("cairn_fsync_duration_seconds_count") >= 1.0);
    assert!(value("cairn_group_commit_appends_sum") >= 9.0);
    assert_eq!(value("cairn_connections"), 2.0);
    assert_eq!(
        value("cairn_group_lag{group=\"readers\",topic=\"plain\",partition=\"0\"}"),
        6.0
    );
    assert!(value("cairn_cleaner_cleaned_bytes_total") > 0.0);
    assert!(value("cairn_cleaner_removed_bytes_total") > 0.0);
    assert!(value("cairn_cleaner_since_last_run_seconds") >= 0.0);
    assert!(
        value("cairn_cleaner_since_last_clean_seconds{topic=\"compacted\",partition=\"0\"}") >= 0.0
    );
    assert_eq!(value("cairn_cleaner_uncleanable_partitions"), 0.0);
    assert_eq!(
        sample(
            &after,
            "cairn_cleaner_dirty_ratio{topic=\"plain\",partition=\"0\"}"
        ),
        None,
        "only compacted partitions have a cleaner state"
    );

    // The status JSON carries the same cleaner state and the start-up report.
    let (_, json) = get(http, "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(status["startup"]["shutdown"], "new", "{json}");
    let compacted = status["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "compacted")
        .expect("compacted topic");
    assert!(
        compacted["partitions"][0]["cleaner"]["last_cleaned_ms"].is_i64(),
        "{compacted}"
    );

    let (_, page) = get(http, "/");
    assert!(
        page.contains("<table id=cleaner>")
            && page.contains("<tr><td>compacted-0</td><td>0.0%</td>"),
        "{page}"
    );
    assert!(!page.contains("<tr><td>plain-0</td><td>0.0%"), "{page}");
    assert!(
        page.contains("<tr><td>previous shutdown</td><td>new</td></tr>"),
        "{page}"
    );

    // The Grafana dashboard only queries metrics this scrape has.
    check_dashboard(&after);

    // kill -9: the next start reports an unclean shutdown, keeps every acknowledged record,
    // and background verification goes over the log.
    drop(client);
    drop(_second);
    cairn.kill_and_restart();
    let recovered = wait_for(http, "cairn_verification_finished", |v| v == 1.0);
    let value = |series: &str| {
        sample(&recovered, series).unwrap_or_else(|| panic!("no {series} in:\n{recovered}"))
    };
    assert_eq!(value("cairn_startup_unclean"), 1.0);
    let (_, page) = get(http, "/");
    assert!(
        page.contains("<tr><td>previous shutdown</td><td>unclean</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains("<td>verification (background)</td><td>finished:"),
        "{page}"
    );
    assert_eq!(
        value("cairn_partition_high_watermark{topic=\"plain\",partition=\"0\"}"),
        8.0
    );
    assert!(value("cairn_verification_segments") >= 2.0);
    assert_eq!(value("cairn_verification_damaged_ranges"), 0.0);
    assert_eq!(
        sample(&recovered, "cairn_errors_total{api=\"Produce\",code=\"3\"}"),
        None
    );
}

/// PromQL's functions and keywords the dashboard may use.
const PROMQL_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "sum",
    "count",
    "max",
    "min",
    "avg",
    "histogram_quantile",
];
const PROMQL_GROUPING: &[&str] = &["by", "without"];

/// The metric names `expr` queries; an error for what this small PromQL reader does not accept
/// (unbalanced brackets, unknown functions, stray characters).
fn promql_metrics(expr: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut depth: Vec<char> = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // Skips a bracketed group of labels or a range, strings included; returns the index after it.
    let skip_group = |mut i: usize, close: char| -> Result<usize, String> {
        while i < chars.len() && chars[i] != close {
            if chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        if i >= chars.len() {
            return Err(format!("unclosed group in {expr}"));
        }
        Ok(i + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || "+-*/,<>=!".contains(c) {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            i = skip_group(i + 1, '}')?;
        } else if c == '[' {
            i = skip_group(i + 1, ']')?;
        } else if c == '(' {
            depth.push('(');
            i += 1;
        } else if c == ')' {
            depth.pop().ok_or(format!("unbalanced ) in {expr}"))?;
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let rest: String = chars[next..].iter().collect();
            // An aggregation may put its grouping before its argument: `sum by (a) (x)`.
            let called = chars.get(next) == Some(&'(')
                || PROMQL_FUNCTIONS.contains(&word.as_str())
                    && PROMQL_GROUPING.iter().any(|g| rest.starts_with(g));
            if PROMQL_GROUPING.contains(&word.as_str()) {
                if !called {
                    return Err(format!("{word} without labels in {expr}"));
                }
                i = skip_group(next + 1, ')')?;
            } else if called {
                if !PROMQL_FUNCTIONS.contains(&word.as_str()) {
                    return Err(format!("unknown function {word} in {expr}"));
                }
            } else if word.starts_with("cairn_") {
                names.push(word);
            } else {
                return Err(format!("unexpected {word} in {expr}"));
            }
        } else {
            return Err(format!("unexpected {c:?} in {expr}"));
        }
    }
    if !depth.is_empty() {
        return Err(format!("unclosed ( in {expr}"));
    }
    if names.is_empty() {
        return Err(format!("no metric in {expr}"));
    }
    Ok(names)
}

/// Every expression of `ops/grafana/cairn.json` reads, and queries only metrics `scrape` has.
fn check_dashboard(scrape: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/grafana/cairn.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());
    let exposed: std::collections::HashSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for expr in exprs {
        let names = promql_metrics(expr).unwrap_or_else(|e| panic!("{e}"));
        for name in names {
            assert!(
                exposed.contains(name.as_str()),
                "the dashboard queries {name}, which /metrics does not have:\n{scrape}"
            );
        }
    }
}

#[test]
fn the_promql_reader_rejects_what_it_should() {
    assert_eq!(
        promql_metrics(
            "histogram_quantile(0.99, sum by (api, le) (rate(cairn_x_bucket{a=\"b}\"}[5m])))"
        ),
        Ok(vec!["cairn_x_bucket".to_string()])
    );
    assert!(promql_metrics("sum(rate(cairn_x[5m])").is_err());
    assert!(promql_metrics("frobnicate(cairn_x)").is_err());
    assert!(promql_metrics("kafka_x").is_err());
    assert!(promql_metrics("sum by (a) (cairn_x{a=\"1\"").is_err());
}

/// Two compacted partitions of topic `two`, each with five small dirty segments, on a broker
/// whose cleaner is slowed (`log.cleaner.io.max.bytes.per.second` in `settings`) so each pass
/// lasts seconds. Returns whether /metrics at `http` shows both being cleaned at this moment.
pub(crate) fn two_partitions_to_clean(
    client: &mut crate::harness::Client,
    http: SocketAddr,
) -> impl Fn() -> bool {
    create_topic(
        client,
        "two",
        2,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let value = "v".repeat(1000);
    let values = [value.as_str(); 4];
    for _ in 0..5 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for partition in 0..2 {
            assert_eq!(
                produce(client, 9, "two", partition, batch(&values, now)).0,
                0
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    move || {
        let (_, text) = get(http, "/metrics");
        let cleaning = |p: i32| {
            sample(
                &text,
                &format!("cairn_cleaner_cleaning{{topic=\"two\",partition=\"{p}\"}}"),
            )
        };
        cleaning(0) == Some(1.0) && cleaning(1) == Some(1.0)
    }
}

#[test]
fn cleaner_threads_clean_two_partitions_at_once() {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let cairn = Cairn::start(&[
        &format!("cairn.http.listen={http}"),
        "log.cleaner.backoff.ms=100",
        "log.cleaner.threads=2",
        // Slow enough that each pass lasts seconds, so both can be seen running.
        "log.cleaner.io.max.bytes.per.second=4000",
    ]);
    let mut client = cairn.client();
    let both = two_partitions_to_clean(&mut client, http);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !both() {
        assert!(
            Instant::now() < deadline,
            "never saw both partitions being cleaned at once"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
