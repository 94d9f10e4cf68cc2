//! End-to-end tests of probe answers, scan detection, syslog alerts and auto-blocking: real
//! nmap / hping3 from cli through the real `statewall run` in the gateway, alerts received by
//! a real rsyslogd in the gateway namespace.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_scan -- --test-threads=1`
//! (scripts/test does). Each test builds its own lab and always tears it down; a missing tool
//! or missing root is a failure.
//!
//! What the alert assertions mean: for each scan, within a few seconds, the syslog file holds
//! at least one `SCAN ...` line with the technique's `nmap=` flag and `SRC=` the scanner, and
//! exactly one such line per `level=` value (level 1 once; escalations to higher levels are
//! allowed, each once). nmap's `-sT` reads as `nmap=-sS` and `-sW` as `nmap=-sA` (the same
//! packets); since alerts are deduplicated per (scanner, technique) and window, those two run
//! against a freshly started statewall.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::{
    ctl, http_server, require, script, stats_json, url, Lab, Statewall, CLI_V4, CLI_V6, SRV_V4,
    SRV_V6,
};

/// Allowed: HTTP 8080, iperf3 5201, UDP echo 5353; everything else is dropped by policy.
const RULES: &str = "policy drop\nprobes rst\nallow tcp to any port { 8080, 5201 }\n\
                     allow udp to any port 5353\nallow icmp\nallow icmpv6\n";

/// Every scan test: no periodic stats, no mid-stream pickup after a restart (an ACK scan
/// would otherwise be adopted as established connections), alerts to the lab's rsyslogd.
const BASE: &str = "[log]\nstats_interval = 0\n[conntrack]\npickup_grace = 0\n\
                    [syslog]\ntarget = \"udp://127.0.0.1:5514\"\n";

/// The lab, an rsyslogd in gw writing `%msg%` lines to a file, and statewall's directory.
struct ScanLab {
    lab: Lab,
    syslog: PathBuf,
    dir: PathBuf,
}

impl ScanLab {
    fn up() -> ScanLab {
        require(&["nmap", "rsyslogd", "hping3", "setpriv", "ss"]);
        let mut lab = Lab::up();
        let syslog = lab.tmp.join("syslog.log");
        let work = lab.tmp.join("rsyslog");
        std::fs::create_dir_all(&work).expect("rsyslog dir");
        let conf = work.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{w}\")\n\
                 module(load=\"imudp\")\n\
                 input(type=\"imudp\" port=\"5514\" address=\"127.0.0.1\")\n\
                 template(name=\"msgonly\" type=\"string\" string=\"%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{f}\" template=\"msgonly\")\n",
                w = work.display(),
                f = syslog.display()
            ),
        )
        .expect("rsyslog.conf");
        lab.spawn(
            "gw",
            &format!(
                "exec rsyslogd -n -f {} -i {}",
                conf.display(),
                work.join("pid").display()
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = lab.sh("gw", 5, "ss -Hlun");
            if String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:5514") {
                break;
            }
            assert!(Instant::now() < deadline, "rsyslogd does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let dir = lab.tmp.join("sw");
        ScanLab { lab, syslog, dir }
    }

    /// Starts statewall with `rules` and BASE + `extra`.
    fn start(&self, rules: &str, extra: &str) -> Statewall {
        std::fs::create_dir_all(&self.dir).expect("dir");
        let file = self.dir.join("statewall.rules");
        std::fs::write(&file, rules).expect("rules");
        Statewall::start(
            &self.lab,
            &self.dir,
            &format!("rules = \"{}\"\n{BASE}{extra}", file.display()),
        )
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The syslog lines so far.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.syslog)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Runs nmap from cli; returns the port states (state → count, ignored states included).
    fn nmap(&self, args: &str, target: &str) -> HashMap<String, u32> {
        let six = if target.contains(':') { "-6" } else { "" };
        let t0 = Instant::now();
        let out = self.lab.ok(
            "cli",
            90,
            &format!("nmap {six} -n -Pn -T4 --max-retries 1 {args} {target} -oG -"),
        );
        eprintln!("nmap {args} {target}: {:?}", t0.elapsed());
        port_states(&out)
    }

    /// Waits (≤ 8 s) for a SCAN line of `tech` from `src` among the lines after `from`, then 1 s
    /// more for escalations; asserts one line per level; returns the lines.
    fn expect_alert(&self, from: usize, tech: &str, src: &str) -> Vec<String> {
        let matching = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .skip(from)
                .filter(|l| {
                    l.contains("SCAN type=")
                        && l.contains(&format!("nmap={tech} "))
                        && l.contains(&format!("SRC={src} "))
                })
                .cloned()
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(8);
        while matching(&self.lines()).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no SCAN nmap={tech} SRC={src} alert; syslog:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
        let found = matching(&self.lines());
        let mut levels: HashMap<String, u32> = HashMap::new();
        for l in &found {
            *levels.entry(field(l, "level")).or_default() += 1;
        }
        assert_eq!(
            levels.get("1"),
            Some(&1),
            "{tech}: level 1 once: {found:#?}"
        );
        assert!(
            levels.values().all(|&n| n == 1),
            "{tech}: one line per level: {found:#?}"
        );
        found
    }
}

/// `key=value` of a line ("" when absent).
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

/// Port states from nmap's grepable output: `Ports: 22/closed/tcp//ssh///, ...` and
/// `Ignored State: closed (199)`.
fn port_states(out: &str) -> HashMap<String, u32> {
    let mut states = HashMap::new();
    for line in out.lines().filter(|l| l.contains("Ports:")) {
        for part in line.split('\t') {
            if let Some(ports) = part.strip_prefix("Ports: ") {
                for p in ports.split(", ") {
                    if let Some(state) = p.split('/').nth(1) {
                        *states.entry(state.to_string()).or_default() += 1;
                    }
                }
            } else if let Some(ign) = part.strip_prefix("Ignored State: ") {
                let (state, n) = ign.split_once(" (").unwrap_or((ign, "0)"));
                let n: u32 = n.trim_end_matches(')').parse().unwrap_or(0);
                *states.entry(state.to_string()).or_default() += n;
            }
        }
    }
    assert!(!states.is_empty(), "no ports in nmap output:\n{out}");
    states
}

/// Asserts `states` is exactly `n` ports in `state`.
fn assert_states(states: &HashMap<String, u32>, state: &str, n: u32, what: &str) {
    let want: HashMap<String, u32> = [(state.to_string(), n)].into_iter().collect();
    assert_eq!(states, &want, "{what}");
}

#[test]
fn stealth_scans_alert_once_and_read_closed_with_probes_rst_v4_v6() {
    let t0 = Instant::now();
    let sl = ScanLab::up();
    let sw = sl.start(RULES, "");
    // (nmap option, alert technique, state nmap reports for ports answered with a RST)
    for (opt, tech, state) in [
        ("-sF", "-sF", "closed"),
        ("-sN", "-sN", "closed"),
        ("-sX", "-sX", "closed"),
        ("-sM", "-sM", "closed"),
        ("-sA", "-sA", "unfiltered"),
    ] {
        let from = sl.lines().len();
        let states = sl.nmap(&format!("{opt} -p 1-200"), SRV_V4);
        assert_states(&states, state, 200, &format!("nmap {opt} v4"));
        sl.expect_alert(from, tech, CLI_V4);
    }
    let from = sl.lines().len();
    let states = sl.nmap("-sF -p 1-100", SRV_V6);
    assert_states(&states, "closed", 100, "nmap -sF v6");
    sl.expect_alert(from, "-sF", CLI_V6);
    let stats = sw.stop();
    eprintln!("{}", stats.line);

    // A fresh detector for the window scan, which reads as an ACK scan. This start is a
    // restart: it adopts the kernel table and is active at once (no takeover window outside a
    // pair), so these ACK probes of unknown flows are answered.
    let sw = sl.start(RULES, "");
    let from = sl.lines().len();
    let states = sl.nmap("-sW -p 1-200", SRV_V4);
    assert_states(&states, "closed", 200, "nmap -sW v4");
    sl.expect_alert(from, "-sA", CLI_V4);
    sw.stop();
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn syn_connect_and_udp_scans_alert_once() {
    let t0 = Instant::now();
    let mut sl = ScanLab::up();
    http_server(&mut sl.lab, &[]);
    let sw = sl.start(RULES, "");
    let from = sl.lines().len();
    let states = sl.nmap("-sS -p 1-200,8080", SRV_V4);
    assert_eq!(states.get("open"), Some(&1), "8080 open: {states:?}");
    assert_eq!(
        states.get("filtered"),
        Some(&200),
        "policy drop: {states:?}"
    );
    sl.expect_alert(from, "-sS", CLI_V4);

    let from = sl.lines().len();
    let states = sl.nmap("-sU -p 53,123,161,9990-10020", SRV_V4);
    assert_eq!(
        states.values().sum::<u32>(),
        34,
        "udp ports reported: {states:?}"
    );
    sl.expect_alert(from, "-sU", CLI_V4);
    sw.stop();

    // -sT is the same technique as -sS for the detector: a fresh statewall.
    let sw = sl.start(RULES, "");
    let from = sl.lines().len();
    let states = sl.nmap("-sT -p 1-200,8080", SRV_V6);
    assert_eq!(states.get("open"), Some(&1), "8080 open: {states:?}");
    sl.expect_alert(from, "-sS", CLI_V6);
    sw.stop();
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn probes_drop_makes_stealth_scans_filtered() {
    let t0 = Instant::now();
    let sl = ScanLab::up();
    // The rule file's `probes drop` wins over the configuration's `respond = "rst"`.
    let sw = sl.start(
        &RULES.replace("probes rst", "probes drop"),
        "[probes]\nrespond = \"rst\"\n",
    );
    let from = sl.lines().len();
    let states = sl.nmap("-sF -p 1-100", SRV_V4);
    assert_states(&states, "open|filtered", 100, "nmap -sF, probes drop");
    sl.expect_alert(from, "-sF", CLI_V4);
    let states = sl.nmap("-sA -p 1-100", SRV_V6);
    assert_states(&states, "filtered", 100, "nmap -sA v6, probes drop");
    sw.stop();

    // No `probes` line: the configuration decides.
    let sw = sl.start(
        &RULES.replace("probes rst\n", ""),
        "[probes]\nrespond = \"drop\"\n",
    );
    let states = sl.nmap("-sX -p 1-100", SRV_V4);
    assert_states(&states, "open|filtered", 100, "nmap -sX, [probes] drop");
    let stats = sw.stop();
    assert_eq!(stats.get("answered"), 0, "{}", stats.line);
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn probe_answers_are_rate_limited_under_an_ack_flood() {
    let t0 = Instant::now();
    let mut sl = ScanLab::up();
    // Per source: 50 at once, 20/s; globally 100 at once, 50/s.
    let sw = sl.start(
        RULES,
        "[probes]\nrate = \"50/s\"\nburst = 100\nper_source_rate = \"20/s\"\n\
         per_source_burst = 50\n",
    );
    let cap = sl.lab.capture(
        "cli",
        "rsts",
        &format!("tcp and src host {SRV_V4} and tcp[tcpflags] & tcp-rst != 0"),
    );
    let flood = Instant::now();
    let out = sl.lab.sh(
        "cli",
        60,
        &format!("hping3 --faster -c 20000 -A -p 80 {SRV_V4} 2>&1 | tail -3"),
    );
    let secs = flood.elapsed().as_secs_f64();
    eprintln!(
        "hping3 ({secs:.1} s): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_millis(500));
    let pcap = cap.stop();
    let total = flood.elapsed().as_secs_f64();
    let rsts: u64 = sl
        .lab
        .ok(
            "cli",
            30,
            &format!("tcpdump -nr {} 2>/dev/null | wc -l", pcap.display()),
        )
        .trim()
        .parse()
        .expect("count");
    let bound = 50.0 + 20.0 * total;
    eprintln!("RSTs at cli: {rsts} (bound {bound:.0} over {total:.1} s)");
    assert!(rsts > 0, "no RST at all");
    assert!(rsts as f64 <= bound, "{rsts} RSTs > {bound:.0}");
    let stats = stats_json(&sl.sock());
    let limited = stats["answers_limited"].as_u64().unwrap_or(0);
    let answered = stats["answered"].as_u64().unwrap_or(0);
    assert!(limited > 0, "answers_limited: {stats}");
    assert!(answered >= rsts, "answered {answered} < RSTs seen {rsts}");
    assert!(answered as f64 <= bound, "answered {answered} > {bound:.0}");
    let fin = sw.stop();
    eprintln!("{}\ntook {:?}", fin.line, t0.elapsed());
}

#[test]
fn normal_traffic_raises_no_alert() {
    let t0 = Instant::now();
    let mut sl = ScanLab::up();
    http_server(&mut sl.lab, &[]);
    let traffic = script("apps.py");
    let apps = script("apps.py");
    sl.lab.spawn("srv", "exec iperf3 -s -p 5201");
    sl.lab.wait_port("srv", 5201);
    sl.lab.spawn(
        "srv",
        &format!("exec /usr/bin/python3 {traffic} udp-echo 5353"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let sw = sl.start(RULES, "[scan]\nsensitivity = \"high\"\n");
    let out = sl.lab.ok(
        "cli",
        120,
        &format!("python3 {apps} conns {SRV_V4} 8080 1000"),
    );
    assert_eq!(out.trim(), "ok 1000");
    let out = sl.lab.ok(
        "cli",
        60,
        &format!("python3 {apps} conns {SRV_V6} 8080 100"),
    );
    assert_eq!(out.trim(), "ok 100");
    let out = sl.lab.ok(
        "cli",
        40,
        &format!("iperf3 -c {SRV_V4} -p 5201 -t 5 | tail -3"),
    );
    assert!(out.contains("receiver"), "{out}");
    for (addr, n) in [(SRV_V4, 200), (SRV_V6, 50)] {
        let out = sl.lab.ok(
            "cli",
            60,
            &format!("/usr/bin/python3 {traffic} udp-client {addr} 5353 {n}"),
        );
        assert_eq!(out.trim(), format!("ok {n}"));
    }
    // Unanswered candidates resolve after answer_timeout (3 s).
    std::thread::sleep(Duration::from_secs(4));
    let scans: Vec<String> = sl
        .lines()
        .into_iter()
        .filter(|l| l.contains("SCAN") || l.contains("BLOCK"))
        .collect();
    assert!(scans.is_empty(), "false positives: {scans:#?}");
    // Positive control: the syslog path works, a real scan shows up.
    let from = sl.lines().len();
    sl.nmap("-sF -p 1-20", SRV_V4);
    sl.expect_alert(from, "-sF", CLI_V4);
    sw.stop();
    eprintln!("took {:?}", t0.elapsed());
}

#[test]
fn scanner_is_blocked_others_pass_and_the_block_expires() {
    let t0 = Instant::now();
    let mut sl = ScanLab::up();
    http_server(&mut sl.lab, &[]);
    sl.lab.ok(
        "cli",
        10,
        "ip addr add 198.51.100.3/24 dev eth0 && ip -6 addr add 2001:db8:1::3/64 dev eth0 nodad",
    );
    // Echo servers on three more ports: a connect scan completes four handshakes, the proof
    // a block needs (with `ports = 3`, four completed ports make a level-1 port scan).
    let apps = script("apps.py");
    for port in 8081..=8083 {
        sl.lab
            .spawn("srv", &format!("exec python3 {apps} echo-server {port}"));
    }
    let listening = |port: u16| {
        let out = sl.lab.sh("srv", 5, "ss -Hltn");
        String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} "))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(8080..=8083).all(listening) {
        assert!(Instant::now() < deadline, "echo servers not listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = RULES.replace("{ 8080, 5201 }", "{ 8080-8083, 5201 }");
    let sw = sl.start(
        &rules,
        "[scan]\nblock = true\nblock_level = 1\nports = 3\nblock_ttl = 8\nblock_scope = \"host\"\n",
    );
    let curl = |from: &str, to: &str| {
        sl.lab.sh(
            "cli",
            20,
            &format!(
                "curl -sS -m 2 --interface {from} -o /dev/null {}",
                url(to, 8080, "small")
            ),
        )
    };
    assert!(curl(CLI_V4, SRV_V4).status.success(), "before the scan");
    // A FIN scan is reported and never blocks: its probes could come from a forged address.
    sl.lab.ok(
        "cli",
        30,
        &format!("nmap -n -Pn -T4 --max-retries 0 --host-timeout 3s -sF -p 1-100 {SRV_V4}"),
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    while !sl.lines().iter().any(|l| l.contains("nmap=-sF")) {
        assert!(
            Instant::now() < deadline,
            "no SCAN line:\n{}",
            sl.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        curl(CLI_V4, SRV_V4).status.success(),
        "a FIN scan blocked its source"
    );
    // A connect scan completes handshakes: proof of the source address, so it blocks. The scan
    // must end well before the block does: a scanner still scanning when its block expires is
    // blocked again, for twice as long (repeat offender). Once blocked, nmap sees only drops
    // and slows down, hence the host timeout.
    let blocked_at = Instant::now();
    sl.lab.ok(
        "cli",
        30,
        &format!("nmap -n -Pn -T4 --max-retries 0 --host-timeout 3s -sT -p 8080-8083 {SRV_V4}"),
    );
    assert!(
        blocked_at.elapsed() < Duration::from_secs(5),
        "nmap too slow"
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    while !sl
        .lines()
        .iter()
        .any(|l| l.starts_with("BLOCK SRC=198.51.100.2 "))
    {
        assert!(
            Instant::now() < deadline,
            "no BLOCK line:\n{}",
            sl.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ctl(&sl.sock(), &["blocks", "--json"]);
    assert!(out.status.success());
    let blocks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let list = blocks.as_array().expect("list");
    assert_eq!(list.len(), 1, "{blocks}");
    assert_eq!(list[0]["src"], CLI_V4, "{blocks}");
    assert_eq!(list[0]["net"], "198.51.100.2/32", "host scope: {blocks}");
    let out = ctl(&sl.sock(), &["blocks"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(CLI_V4));

    let out = curl(CLI_V4, SRV_V4);
    assert_eq!(out.status.code(), Some(28), "scanner must be blocked");
    // Another host of the same /24, and the scanner's v6 address, still pass.
    assert!(
        curl("198.51.100.3", SRV_V4).status.success(),
        "neighbour v4"
    );
    assert!(
        curl(CLI_V6, SRV_V6).status.success(),
        "scanner's v6 address"
    );

    // The block expires after its TTL.
    let ttl = Duration::from_secs(8);
    let wait = ttl.saturating_sub(blocked_at.elapsed()) + Duration::from_millis(1500);
    std::thread::sleep(wait);
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if curl(CLI_V4, SRV_V4).status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still blocked {:?} after the block; blocks: {}\nsyslog:\n{}",
            blocked_at.elapsed(),
            String::from_utf8_lossy(&ctl(&sl.sock(), &["blocks"]).stdout),
            sl.lines().join("\n")
        );
    }
    let out = ctl(&sl.sock(), &["blocks", "--json"]);
    let blocks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(blocks.as_array().map(Vec::len), Some(0), "{blocks}");
    let blocks_lines = sl
        .lines()
        .iter()
        .filter(|l| l.starts_with("BLOCK "))
        .count();
    assert_eq!(
        blocks_lines,
        1,
        "one BLOCK line:\n{}",
        sl.lines().join("\n")
    );
    let stats = sw.stop();
    assert!(stats.get("drop.blocked") > 0, "{}", stats.line);
    eprintln!("took {:?}", t0.elapsed());
}
