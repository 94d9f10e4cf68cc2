//! End-to-end test of the drop lines with the tools admins read them with: real nmap
//! -sS/-sF/-sX/-sN scans from cli through the real `statewall run` in the gateway, the lines
//! sent as RFC 3164 to a real rsyslogd that writes them as syslog daemons write their files
//! (`RSYSLOG_TraditionalFileFormat`), then, on that file:
//! - psad 2.4.6 (`psad -A -m FILE`, a private configuration) names the scanner and the scan
//!   types;
//! - fail2ban-regex matches the scanner's lines with contrib/fail2ban's filter, and a real
//!   fail2ban-server (private configuration, the shipped jail and its iptables ban action)
//!   bans the scanner in the gateway;
//! - CrowdSec 1.4.6 (a private configuration, contrib/crowdsec's parser and scenario) raises
//!   an alert on the scanner in replay mode.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_alert -- --test-threads=1`
//! (scripts/test does). The lab is torn down even on failure; a missing tool is a failure.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{require, root, script, Lab, Statewall, CLI_V4, SRV_V4};

/// Rejected by policy (the SYN scan's SYNs are answered, so nmap does not retry), probes of
/// no connection answered with RSTs: every scan is quick, one line per probe.
const RULES: &str = "policy reject\nprobes rst\nallow icmp\n";

/// Waits up to `secs` for `cond`.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

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
    let sw = Statewall::start(
        &lab,
        &dir,
        &format!(
            "rules = \"{}\"\n[log]\nstats_interval = 0\n[conntrack]\npickup_grace = 0\n\
             [syslog]\ntarget = \"udp://127.0.0.1:5514\"\nformat = \"rfc3164\"\n",
            rules.display()
        ),
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
    sw.stop();
    assert!(
        complete,
        "{} drop lines of 400:\n{}",
        lines.len(),
        lines.join("\n")
    );
    eprintln!("sample lines:\n{}", lines[..4].join("\n"));
    for l in &lines {
        assert!(l.contains(&format!(" SRC={CLI_V4} DST={SRV_V4} ")), "{l}");
        assert!(l.contains(" statewall["), "{l}");
    }

    psad(&lab, &messages);
    fail2ban(&mut lab, &messages);
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
            "psad -c {}/etc/psad.conf -A -m {} --no-netstat --analysis-write-data",
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

/// fail2ban-regex matches the scanner's lines with the shipped filter; a fail2ban-server
/// with the shipped jail bans the scanner with iptables in the gateway.
fn fail2ban(lab: &mut Lab, messages: &Path) {
    let filter = root().join("contrib/fail2ban/filter.d/statewall.conf");
    let out = lab.ok(
        "gw",
        60,
        &format!("fail2ban-regex {} {}", messages.display(), filter.display()),
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
    // file and polling (no pyinotify, no systemd journal here) in jail.local, Debian's
    // jail.d (sshd on the journal) left out.
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
            "exec fail2ban-server -f -x -c {} -s {} -p {}/fail2ban.pid",
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
    let rules = lab.ok("gw", 10, "iptables -S");
    let _ = client("stop");
    assert!(
        banned,
        "fail2ban did not ban {CLI_V4}:\n{status}\nlog:\n{}",
        read(&d.join("fail2ban.log"))
    );
    eprintln!("gateway rules after the ban:\n{rules}");
    assert!(
        rules
            .lines()
            .any(|l| l.contains("f2b-statewall") && l.contains(CLI_V4)),
        "no iptables ban of {CLI_V4}:\n{rules}"
    );
    assert!(
        rules.contains("-A FORWARD -j f2b-statewall"),
        "the ban chain is not in FORWARD:\n{rules}"
    );
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
            "crowdsec -c {}/config.yaml -dsn file://{} -type syslog",
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
