//! End-to-end test of the drop lines with the tools admins read them with: real nmap
//! -sS/-sF/-sX/-sN scans from cli through the real `statewall run` in the gateway, the lines
//! sent as RFC 3164 to a real rsyslogd that writes them as syslog daemons write their files
//! (`RSYSLOG_TraditionalFileFormat`), then, on that file:
//! - psad 2.4.6 (`psad -A -m FILE`, a private configuration) names the scanner and the scan
//!   types;
//! - fail2ban-regex matches the scanner's lines with contrib/fail2ban's filter, and a real
//!   fail2ban-server (private configuration, the shipped jail and its ban action) bans the
//!   scanner through `statewall block`: it is in `statewall blocks`, its packets are dropped
//!   as `blocked`, and fail2ban's unban (at its stop) lifts the block;
//! - CrowdSec 1.4.6 (a private configuration, contrib/crowdsec's parser and scenario) raises
//!   an alert on the scanner in replay mode.
//!
//! statewall and the tools run in [`ZONE`] (TZ), 5:30 east of the lab's UTC: statewall
//! writes RFC 3164 timestamps in that local time (rsyslogd, left in UTC, keeps the sender's
//! timestamp), and fail2ban (a one-minute findtime) bans only on lines whose local time is
//! now.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_alert -- --test-threads=1`
//! (scripts/test does). The lab is torn down even on failure; a missing tool is a failure.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::{Path, PathBuf};
use std::time::Instant;

use e2e::{
    ctl, output_text, require, root, script, stats_json, wait_for, Lab, Statewall, CLI_V4, SRV_V4,
};

/// The time zone of every process: not UTC, and a half-hour offset.
const ZONE: &str = "Asia/Kolkata";

/// Rejected by policy (the SYN scan's SYNs are answered, so nmap does not retry), probes of
/// no connection answered with RSTs: every scan is quick, one line per probe.
const RULES: &str = "policy reject\nprobes rst\nallow icmp\n";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// An rsyslogd in gw on 127.0.0.1:5514 writing the traditional file format to `file`.
fn rsyslogd(lab: &mut Lab, file: &Path) {
    let work = lab.tmp.join("rsyslog");
    std::fs::create_dir_all(&work).expect("rsyslog dir");
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{w}\")\n\
             module(load=\"imudp\")\n\
             input(type=\"imudp\" port=\"5514\" address=\"127.0.0.1\")\n\
             *.* action(type=\"omfile\" file=\"{f}\" template=\"RSYSLOG_TraditionalFileFormat\")\n",
            w = work.display(),
            f = file.display()
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
    assert!(
        wait_for(10, || {
            let out = lab.sh("gw", 5, "ss -Hlun");
            String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:5514")
        }),
        "rsyslogd does not listen"
    );
}

/// The drop lines of the syslog file.
fn drop_lines(file: &Path) -> Vec<String> {
    read(file)
        .lines()
        .filter(|l| l.contains(" IN=") && l.contains(" REASON="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn scans_are_seen_by_psad_fail2ban_and_crowdsec() {
    require(&[
        "nmap",
        "rsyslogd",
        "ss",
        "psad",
        "fail2ban-server",
        "fail2ban-client",
        "fail2ban-regex",
        "crowdsec",
        "cscli",
    ]);
    let t0 = Instant::now();
    let mut lab = Lab::up();
    let messages = lab.tmp.join("messages");
    rsyslogd(&mut lab, &messages);
    let dir = lab.tmp.join("sw");
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = dir.join("statewall.rules");
    std::fs::write(&rules, RULES).expect("rules");
    let sw = Statewall::start_env(
        &lab,
        &dir,
        &format!(
            "rules = \"{}\"\n[log]\nstats_interval = 0\n[conntrack]\npickup_grace = 0\n\
             [syslog]\ntarget = \"udp://127.0.0.1:5514\"\nformat = \"rfc3164\"\n",
            rules.display()
        ),
        &[("TZ", ZONE)],
    );

    // The four TCP scans psad tells apart, 100 ports each.
    for tech in ["-sS", "-sF", "-sX", "-sN"] {
        let t = Instant::now();
        lab.ok(
            "cli",
            60,
            &format!("nmap -n -Pn -T4 --max-retries 0 {tech} -p 1-100 {SRV_V4} -oG -"),
        );
        eprintln!("nmap {tech}: {:?}", t.elapsed());
    }
    let complete = wait_for(15, || drop_lines(&messages).len() >= 400);
    let lines = drop_lines(&messages);
    assert!(
        complete,
        "{} drop lines of 400:\n{}",
        lines.len(),
        lines.join("\n")
    );
    eprintln!("sample lines:\n{}", lines[..4].join("\n"));
    // The last line's time of day is the zone's, this minute or the one before.
    let now: Vec<String> = ["-d '1 min ago' ", ""]
        .iter()
        .map(|ago| {
            lab.ok("gw", 5, &format!("TZ={ZONE} date {ago}'+%H:%M'"))
                .trim()
                .to_owned()
        })
        .collect();
    let last = &lines[lines.len() - 1];
    let hhmm = last.get(7..12).unwrap_or_default();
    eprintln!("{ZONE} time now {}, of the last line {hhmm}", now[1]);
    assert!(
        now.iter().any(|t| t == hhmm),
        "not {ZONE}'s time ({now:?}): {last}"
    );
    for l in &lines {
        assert!(l.contains(&format!(" SRC={CLI_V4} DST={SRV_V4} ")), "{l}");
        assert!(l.contains(" statewall["), "{l}");
    }

    // fail2ban bans through the running daemon; the other tools read the file afterwards.
    fail2ban(&mut lab, &messages, &dir.join("control.sock"));
    sw.stop();
    psad(&lab, &messages);
    crowdsec(&lab, &messages);
    eprintln!("took {:?}", t0.elapsed());
}

/// psad names the scanner and at least three of the four scan types.
fn psad(lab: &Lab, messages: &Path) {
    let d = lab.tmp.join("psad");
    lab.ok(
        "gw",
        20,
        &format!("sh {} {}", script("psad-conf.sh"), d.display()),
    );
    let out = lab.ok(
        "gw",
        60,
        &format!(
            "TZ={ZONE} psad -c {}/etc/psad.conf -A -m {} --no-netstat --analysis-write-data",
            d.display(),
            messages.display()
        ),
    );
    eprintln!("psad -A:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with(CLI_V4) && l.contains("DL:")),
        "psad names no attacker {CLI_V4}:\n{out}"
    );
    let alert = d
        .join("log/ipt_analysis")
        .join(CLI_V4)
        .join(format!("{SRV_V4}_email_alert"));
    let text = read(&alert);
    eprintln!("psad's alert file ({}):\n{text}", alert.display());
    let named: Vec<&str> = ["Nmap: -sT or -sS", "Nmap: -sF", "Nmap: -sX", "Nmap: -sN"]
        .into_iter()
        .filter(|t| text.contains(t))
        .collect();
    assert!(named.len() >= 3, "psad named {named:?} only:\n{text}");
}

/// The `statewall blocks --json` entries.
fn blocks(sock: &Path) -> Vec<serde_json::Value> {
    let out = ctl(sock, &["blocks", "--json"]);
    assert!(out.status.success(), "blocks: {}", output_text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("blocks json");
    list.as_array().cloned().unwrap_or_default()
}

fn blocked_drops(sock: &Path) -> u64 {
    stats_json(sock)["drops"]["blocked"].as_u64().unwrap_or(0)
}

/// fail2ban-regex matches the scanner's lines with the shipped filter; a fail2ban-server
/// with the shipped jail and action bans the scanner through `statewall block` on `sock`.
fn fail2ban(lab: &mut Lab, messages: &Path, sock_sw: &Path) {
    let filter = root().join("contrib/fail2ban/filter.d/statewall.conf");
    let out = lab.ok(
        "gw",
        60,
        &format!(
            "TZ={ZONE} fail2ban-regex {} {}",
            messages.display(),
            filter.display()
        ),
    );
    let summary = out
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or_else(|| panic!("no summary from fail2ban-regex:\n{out}"));
    eprintln!("fail2ban-regex: {summary}");
    let matched: usize = summary
        .split(',')
        .find(|p| p.trim_end().ends_with("matched"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(matched >= 400, "{summary}\n{out}");

    // Debian's stock configuration with the shipped filter and jail on top, in a private
    // directory: its own socket, pid file and database, the log path pointed at the test's
    // file and polling (no pyinotify, no systemd journal here) in jail.local, the statewall
    // binary and the test's control socket in action.d/statewall.local, Debian's jail.d
    // (sshd on the journal) left out.
    let d = lab.tmp.join("f2b");
    let conf = d.join("conf");
    std::fs::create_dir_all(&d).expect("f2b dir");
    lab.ok(
        "gw",
        10,
        &format!(
            "cp -r /etc/fail2ban {c} && rm -f {c}/jail.d/* {c}/jail.local {c}/fail2ban.local",
            c = conf.display()
        ),
    );
    std::fs::copy(&filter, conf.join("filter.d/statewall.conf")).expect("filter");
    std::fs::copy(
        root().join("contrib/fail2ban/jail.d/statewall.conf"),
        conf.join("jail.d/statewall.conf"),
    )
    .expect("jail");
    std::fs::copy(
        root().join("contrib/fail2ban/action.d/statewall.conf"),
        conf.join("action.d/statewall.conf"),
    )
    .expect("action");
    std::fs::write(
        conf.join("action.d/statewall.local"),
        format!(
            "[Init]\nstatewall = {}\nsocket = {}\n",
            env!("CARGO_BIN_EXE_statewall"),
            sock_sw.display()
        ),
    )
    .expect("action.local");
    assert!(blocks(sock_sw).is_empty(), "blocked before the ban");
    let sock = d.join("fail2ban.sock");
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = {s}\n\
             pidfile = {d}/fail2ban.pid\ndbfile = :memory:\nsyslogsocket = auto\nallowipv6 = auto\n",
            d = d.display(),
            s = sock.display()
        ),
    )
    .expect("fail2ban.conf");
    std::fs::write(
        conf.join("jail.local"),
        format!(
            "[statewall]\nlogpath = {}\nbackend = polling\n",
            messages.display()
        ),
    )
    .expect("jail.local");
    lab.spawn(
        "gw",
        &format!(
            "TZ={ZONE} exec fail2ban-server -f -x -c {} -s {} -p {}/fail2ban.pid",
            conf.display(),
            sock.display(),
            d.display()
        ),
    );
    let client = |args: &str| {
        let out = lab.sh(
            "gw",
            10,
            &format!("fail2ban-client -s {} {args}", sock.display()),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let banned = wait_for(30, || {
        client("status statewall")
            .lines()
            .any(|l| l.contains("Banned IP list:") && l.contains(CLI_V4))
    });
    let status = client("status statewall");
    eprintln!("fail2ban-client status statewall:\n{status}");
    let log = || read(&d.join("fail2ban.log"));
    if !banned {
        let _ = client("stop");
        panic!("fail2ban did not ban {CLI_V4}:\n{status}\nlog:\n{}", log());
    }
    // The ban is statewall's block (the action's TTL: the jail's bantime, 10m), not an
    // iptables rule.
    let is_ban = |b: &serde_json::Value| b["net"] == format!("{CLI_V4}/32");
    wait_for(10, || blocks(sock_sw).iter().any(is_ban));
    let list = blocks(sock_sw);
    let rendered = String::from_utf8_lossy(&ctl(sock_sw, &["blocks"]).stdout).into_owned();
    eprintln!("statewall blocks after the ban:\n{rendered}");
    let entry = list
        .iter()
        .find(|b| is_ban(b))
        .unwrap_or_else(|| panic!("{CLI_V4} not in statewall blocks: {list:?}\n{}", log()));
    assert_eq!(entry["ttl_secs"], 600, "{entry}");
    let rules = lab.ok("gw", 10, "iptables -S");
    assert!(
        !rules.contains("f2b-"),
        "an iptables ban besides the block:\n{rules}"
    );

    // The scanner's packets are dropped as blocked now.
    let before = blocked_drops(sock_sw);
    lab.sh(
        "cli",
        20,
        &format!("nmap -n -Pn -T4 --max-retries 0 -sS -p 1-10 {SRV_V4}"),
    );
    let after = blocked_drops(sock_sw);
    eprintln!("drops blocked: {before} before, {after} after 10 SYNs of the banned scanner");
    assert!(after >= before + 10, "blocked drops {before} -> {after}");

    // fail2ban's stop unbans: `statewall unblock` lifts the block.
    let _ = client("stop");
    assert!(
        wait_for(15, || blocks(sock_sw).is_empty()),
        "still blocked after fail2ban's unban: {:?}\n{}",
        blocks(sock_sw),
        log()
    );
    let actions: Vec<String> = log()
        .lines()
        .filter(|l| l.contains("[statewall]") && (l.contains("Ban ") || l.contains("Unban ")))
        .map(str::to_owned)
        .collect();
    eprintln!("fail2ban's log:\n{}", actions.join("\n"));
}

/// CrowdSec with the shipped parser and scenario raises an alert on the scanner (replay of
/// the syslog file; the local API runs in the same process, in the gateway namespace).
fn crowdsec(lab: &Lab, messages: &Path) {
    let d: PathBuf = lab.tmp.join("crowdsec");
    lab.ok(
        "gw",
        30,
        &format!(
            "sh {} {} 18080 {}",
            script("crowdsec-conf.sh"),
            d.display(),
            root().display()
        ),
    );
    let out = lab.sh(
        "gw",
        90,
        &format!(
            "TZ={ZONE} crowdsec -c {}/config.yaml -dsn file://{} -type syslog",
            d.display(),
            messages.display()
        ),
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let overflow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("statewall/scan-multi-ports"))
        .collect();
    eprintln!("crowdsec:\n{}", overflow.join("\n"));
    assert!(out.status.success(), "crowdsec failed:\n{log}");
    let db = d.join("data/crowdsec.db");
    let alerts = lab.ok(
        "gw",
        10,
        &format!(
            "/usr/bin/python3 -c \"import sqlite3; c = sqlite3.connect('{}'); \
             print(c.execute('select scenario, source_ip, events_count from alerts').fetchall())\"",
            db.display()
        ),
    );
    eprintln!("crowdsec alerts: {alerts}");
    assert!(
        alerts.contains(&format!("('statewall/scan-multi-ports', '{CLI_V4}'")),
        "no CrowdSec alert on {CLI_V4}: {alerts}\n{log}"
    );
}
