//! End-to-end observability: a real Prometheus scrapes statewall's `/metrics` in the lab and
//! its API returns statewall's series (and `promtool check metrics` finds nothing to lint);
//! `statewall events --json` shows a new connection and the drop of an out-of-state probe;
//! `statewall kill` ends live connections (both ends get a RST); `statewall block` /
//! `unblock` act on new and existing flows.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::apps::IdleSet;
use e2e::{
    ctl, http_server, output_text, require, script, stats_json, wait_for, Lab, Statewall, SRV_V4,
};
use serde_json::Value;

/// Where statewall serves its metrics in the gateway namespace.
const METRICS: &str = "127.0.0.1:9559";
/// Where Prometheus listens in the gateway namespace.
const PROMETHEUS: &str = "127.0.0.1:9590";
/// The echo server's port (apps.py echo-server).
const ECHO: u16 = 7000;

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Prometheus in the gateway namespace, scraping statewall every second.
fn prometheus(lab: &Lab) -> Killed {
    let dir = lab.tmp.join("prometheus");
    std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - \
             job_name: statewall\n    static_configs: [{{targets: [\"{METRICS}\"]}}]\n"
        ),
    )
    .expect("prometheus.yml");
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("gw"), "prometheus"])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).expect("log"))
        .spawn()
        .expect("start prometheus");
    Killed(child)
}

/// One instant query to Prometheus' API; the result vector.
fn query(lab: &Lab, q: &str) -> Vec<Value> {
    let out = lab.sh(
        "gw",
        10,
        &format!(
            "curl -s -G --max-time 5 http://{PROMETHEUS}/api/v1/query --data-urlencode 'query={q}'"
        ),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of the first sample of `q`, if any.
fn sample(lab: &Lab, q: &str) -> Option<f64> {
    query(lab, q)
        .first()
        .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
}

/// `statewall events --json` in the background, its output going to a file.
fn events(sock: &Path, out: &Path) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(["events", "--json", "--socket"])
        .arg(sock)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("events file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("statewall events");
    Killed(child)
}

/// The events received so far.
fn received(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn curl_ok(lab: &Lab) -> bool {
    lab.sh(
        "cli",
        6,
        &format!("curl -sf --max-time 2 http://{SRV_V4}:8080/small"),
    )
    .status
    .success()
}

fn drops(sock: &Path, reason: &str) -> u64 {
    stats_json(sock)["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn metrics_events_kill_block_and_unblock_in_the_lab() {
    require(&["prometheus", "promtool", "hping3"]);
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    lab.spawn(
        "srv",
        &format!("exec python3 {} echo-server {ECHO}", script("apps.py")),
    );
    lab.wait_port("srv", ECHO);
    let dir = lab.tmp.join("sw");
    let sw = Statewall::start(
        &lab,
        &dir,
        &format!(
            "[metrics]\nlisten = \"{METRICS}\"\n[events]\nlog = \"{}\"\n",
            dir.join("events.json").display()
        ),
    );
    let sock = dir.join("control.sock");
    let _prom = prometheus(&lab);

    // The event stream: a new connection, and the drop of an out-of-state probe.
    let stream_out = lab.tmp.join("events.out");
    let _stream = events(&sock, &stream_out);
    assert!(
        wait_for(10, || stats_json(&sock)["packets"].as_u64().is_some()
            && ctl(&sock, &["status"]).status.success()),
        "daemon answers"
    );
    // Give the reader a moment to subscribe (its first line is the daemon's answer).
    std::thread::sleep(Duration::from_millis(300));
    assert!(curl_ok(&lab), "a connection through statewall");
    lab.ok(
        "cli",
        10,
        &format!("hping3 -q -A -c 1 -p 2222 -s 45678 -k {SRV_V4} >/dev/null 2>&1; true"),
    );
    let saw = |evs: &[Value]| {
        let new = evs.iter().any(|e| {
            e["event"] == "new" && e["dport"] == 8080 && e["proto"] == "tcp" && e["dst"] == SRV_V4
        });
        let probe = evs
            .iter()
            .any(|e| e["event"] == "drop" && e["reason"] == "no_connection" && e["dport"] == 2222);
        new && probe
    };
    assert!(
        wait_for(10, || saw(&received(&stream_out))),
        "events: {:?}",
        received(&stream_out)
    );
    // The event log has its own writer thread: it may be a moment behind the stream.
    let log_file = dir.join("events.json");
    let logged = || std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        wait_for(10, || {
            let l = logged();
            l.contains("\"event\":\"new\"") && l.contains("\"no_connection\"")
        }),
        "event log: {}",
        logged()
    );

    // promtool finds nothing to lint in the exposition.
    let out = lab.sh(
        "gw",
        10,
        &format!("curl -sf --max-time 5 http://{METRICS}/metrics | promtool check metrics"),
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}",
        output_text(&out)
    );

    // kill: two live connections to the echo server end; both ends get a RST.
    let mut idle = IdleSet::in_lab(&mut lab, "idle", (SRV_V4, ECHO), 2, 20);
    assert_eq!(idle.check(15).alive, 2);
    let out = ctl(
        &sock,
        &["kill", "--proto", "tcp", "--port", &ECHO.to_string()],
    );
    assert!(out.status.success(), "kill: {}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("2 connections killed (4 RSTs sent)"),
        "{text}"
    );
    let after = idle.check(15);
    assert_eq!(after.alive, 0, "{after:?}");
    assert_eq!(after.reset, 2, "{after:?}");

    // block: new connections and the packets of existing ones are dropped; unblock: both go
    // through again (the existing connection's retransmission gets its echo).
    let mut idle = IdleSet::in_lab(&mut lab, "idle2", (SRV_V4, ECHO), 1, 20);
    assert_eq!(idle.check(15).alive, 1);
    let out = ctl(&sock, &["block", "198.51.100.0/24", "--ttl", "10m"]);
    assert!(out.status.success(), "block: {}", output_text(&out));
    assert!(!curl_ok(&lab), "a new connection from a blocked network");
    let blocked = drops(&sock, "blocked");
    let blocked_round = idle.ask();
    assert!(
        wait_for(10, || drops(&sock, "blocked") > blocked),
        "the existing connection's packets are not dropped"
    );
    let listed = ctl(&sock, &["blocks"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("198.51.100.0/24"),
        "{}",
        output_text(&listed)
    );
    let out = ctl(&sock, &["unblock", "198.51.100.2"]);
    assert!(out.status.success(), "unblock: {}", output_text(&out));
    let v = idle.result(&blocked_round, 15);
    assert_eq!(v.alive, 1, "the existing connection after unblock: {v:?}");
    assert!(curl_ok(&lab), "a new connection after unblock");

    // Prometheus has scraped statewall: its series are in the API.
    assert!(
        wait_for(40, || sample(&lab, "up{job=\"statewall\"}") == Some(1.0)),
        "target not up: {:?}",
        query(&lab, "up")
    );
    assert!(
        wait_for(20, || sample(
            &lab,
            "statewall_drops_total{reason=\"no_connection\"}"
        )
        .is_some_and(|v| v >= 1.0)),
        "drops: {:?}",
        query(&lab, "statewall_drops_total")
    );
    assert!(sample(&lab, "statewall_conntrack_entries").is_some());
    assert_eq!(
        sample(&lab, "statewall_conntrack_entries_limit"),
        Some(262_144.0)
    );
    assert!(
        wait_for(20, || sample(
            &lab,
            "statewall_drops_total{reason=\"blocked\"}"
        )
        .is_some_and(|v| v >= 1.0)),
        "blocked drops: {:?}",
        query(&lab, "statewall_drops_total")
    );
    assert!(
        sample(&lab, "sum(statewall_rule_hits_total)").is_some_and(|v| v >= 1.0),
        "{:?}",
        query(&lab, "statewall_rule_hits_total")
    );
    // The figures, for the record (`--nocapture`).
    for q in [
        "up{job=\"statewall\"}",
        "statewall_drops_total{reason=\"no_connection\"}",
        "statewall_drops_total{reason=\"blocked\"}",
        "statewall_conntrack_entries",
        "statewall_conntrack_entries_limit",
        "sum(statewall_rule_hits_total)",
        "statewall_events_published_total",
    ] {
        eprintln!("prometheus: {q} = {:?}", sample(&lab, q));
    }
    drop(sw);
}
