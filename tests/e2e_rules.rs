//! End-to-end tests of the rule file, reloads and the control socket: the real `statewall run`
//! in the gateway namespace of a three-namespace lab, v4 and v6.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_rules -- --test-threads=1`
//! (scripts/test does). Each test builds its own lab and always tears it down; a missing tool
//! or missing root is a failure.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{ctl, http_server, output_text, script, stats_json, url, Lab, Statewall, SRV_V4, SRV_V6};

/// 8080 allowed, 8081 (TCP) and 9999 (UDP) rejected, everything else dropped.
const RULES: &str = "policy drop\nprobes rst\nallow tcp to any port 8080\n\
                     reject tcp to any port 8081\nreject udp to any port 9999\n\
                     allow icmp\nallow icmpv6\n";

/// Writes `rules` to DIR/statewall.rules and starts statewall with it (`extra` TOML after the
/// `rules` key); returns the daemon, the rule file and the control socket.
fn start(lab: &Lab, rules: &str, extra: &str) -> (Statewall, PathBuf, PathBuf) {
    let dir = lab.tmp.join("sw");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("statewall.rules");
    std::fs::write(&file, rules).expect("rules");
    let extra = format!(
        "rules = \"{}\"\n[log]\nstats_interval = 0\n{extra}",
        file.display()
    );
    let sw = Statewall::start(lab, &dir, &extra);
    (sw, file, dir.join("control.sock"))
}

/// Asserts 8080 answers HTTP 200 and 8082 (dropped by policy) times out, from cli to `addr`.
fn assert_allowed_and_dropped(lab: &Lab, addr: &str) {
    let code = lab.ok(
        "cli",
        20,
        &format!(
            "curl -sS -m 5 -o /dev/null -w '%{{http_code}}' {}",
            url(addr, 8080, "small")
        ),
    );
    assert_eq!(code.trim(), "200", "8080 via {addr}");
    let t0 = Instant::now();
    let out = lab.sh(
        "cli",
        20,
        &format!("curl -sS -m 2 -o /dev/null {}", url(addr, 8082, "")),
    );
    assert_eq!(
        out.status.code(),
        Some(28),
        "8082 via {addr} must time out (dropped): {}",
        output_text(&out)
    );
    assert!(t0.elapsed() >= Duration::from_millis(1900));
}

#[test]
fn allowed_dropped_and_rejected_ports_v4_v6() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let (sw, _, _) = start(&lab, RULES, "");
    let traffic = script("apps.py");
    for addr in [SRV_V4, SRV_V6] {
        assert_allowed_and_dropped(&lab, addr);

        // Rejected TCP: statewall answers the SYN with a RST: refused at once.
        let t0 = Instant::now();
        let out = lab.sh(
            "cli",
            20,
            &format!("curl -sS -v -m 5 -o /dev/null {}", url(addr, 8081, "")),
        );
        let took = t0.elapsed();
        let msg = output_text(&out);
        assert_eq!(out.status.code(), Some(7), "8081 via {addr}: {msg}");
        assert!(msg.contains("Connection refused"), "8081 via {addr}: {msg}");
        assert!(took < Duration::from_secs(1), "8081 via {addr}: {took:?}");

        // Rejected UDP: an ICMP(v6) port unreachable reaches the connected socket.
        let out = lab.ok(
            "cli",
            20,
            &format!("/usr/bin/python3 {traffic} udp-probe {addr} 9999"),
        );
        assert_eq!(out.trim(), "refused", "udp 9999 via {addr}");
        // And a UDP port the policy drops stays silent.
        let out = lab.ok(
            "cli",
            20,
            &format!("/usr/bin/python3 {traffic} udp-probe {addr} 9998"),
        );
        assert_eq!(out.trim(), "timeout", "udp 9998 via {addr}");
    }
    let stats = sw.stop();
    eprintln!("{}", stats.line);
    assert!(stats.get("drop.policy_drop") >= 4, "{}", stats.line);
    assert!(stats.get("drop.policy_reject") >= 4, "{}", stats.line);
}

#[test]
fn transfer_survives_a_reload_byte_exact() {
    let mut lab = Lab::up();
    let sums = http_server(&mut lab, &[("big", 100)]);
    let sum = &sums[0].1;
    let (sw, file, sock) = start(&lab, RULES, "");
    let out = lab.tmp.join("download");
    // ~100 MiB at 16 MiB/s: about 6 s.
    lab.spawn(
        "cli",
        &format!(
            "curl -sS --fail --limit-rate 16M -o {o} {u}; echo $? > {o}.rc",
            o = out.display(),
            u = url(SRV_V4, 8080, "big")
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(
        &file,
        format!("{RULES}allow tcp to any port 5000-5100\nallow udp to 2001:db8:2::/64 port 53\n"),
    )
    .expect("rules");
    let r = ctl(&sock, &["reload"]);
    assert!(r.status.success(), "reload: {}", output_text(&r));
    assert!(
        !lab.tmp.join("download.rc").exists(),
        "the download ended before the reload"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    while !lab.tmp.join("download.rc").exists() {
        assert!(Instant::now() < deadline, "download did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rc = std::fs::read_to_string(lab.tmp.join("download.rc")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "curl failed");
    let got = lab.ok("cli", 30, &format!("sha256sum {}", out.display()));
    assert_eq!(got.split_whitespace().next(), Some(sum.as_str()));
    // The new rules are in force: the policy still drops 8082.
    assert_allowed_and_dropped(&lab, SRV_V6);
    let stats = sw.stop();
    eprintln!("{}", stats.line);
    stats.assert_no_drops_except(&["policy_drop"]);
}

/// The byte count a trickle client last wrote to `path` (0 before its first read).
fn read_count(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn recheck_reload_cuts_connections_the_new_rules_refuse_v4_v6() {
    let mut lab = Lab::up();
    let traffic = script("apps.py");
    lab.spawn(
        "srv",
        &format!("exec /usr/bin/python3 {traffic} trickle-server 8080"),
    );
    lab.wait_port("srv", 8080);
    let (sw, file, sock) = start(&lab, RULES, "[reload]\nmode = \"recheck\"\n");
    let counts: Vec<PathBuf> = [SRV_V4, SRV_V6]
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let p = lab.tmp.join(format!("trickle-{i}"));
            lab.spawn(
                "cli",
                &format!(
                    "exec /usr/bin/python3 {traffic} trickle-client {addr} 8080 {}",
                    p.display()
                ),
            );
            p
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for p in &counts {
        assert!(
            read_count(p) > 10_000,
            "{} flows before the reload",
            p.display()
        );
    }
    // 8080 is no longer allowed.
    std::fs::write(&file, RULES.replace("port 8080", "port 8090")).expect("rules");
    let r = ctl(&sock, &["reload", "--json"]);
    assert!(r.status.success(), "reload: {}", output_text(&r));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).expect("reload json");
    assert!(
        report["revoked"].as_u64().unwrap_or(0) >= 2,
        "both connections revoked: {report}"
    );
    // Let what was in flight land, then the counts must not move any more.
    std::thread::sleep(Duration::from_millis(700));
    let before: Vec<u64> = counts.iter().map(|p| read_count(p)).collect();
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<u64> = counts.iter().map(|p| read_count(p)).collect();
    assert_eq!(
        before, after,
        "transfers still flowing after the recheck reload"
    );
    let stats = stats_json(&sock);
    assert!(
        stats["drops"]["revoked"].as_u64().unwrap_or(0) > 0,
        "no revoked drops: {stats}"
    );
    // A new connection to 8080 is dropped by the new rules too.
    let out = lab.sh(
        "cli",
        20,
        &format!("curl -sS -m 2 -o /dev/null {}", url(SRV_V4, 8080, "")),
    );
    assert_eq!(out.status.code(), Some(28), "{}", output_text(&out));
    let final_stats = sw.stop();
    eprintln!("{}", final_stats.line);
    assert!(final_stats.get("drop.revoked") > 0, "{}", final_stats.line);
}

#[test]
fn broken_rule_file_on_reload_keeps_the_old_policy_v4_v6() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let (sw, file, sock) = start(&lab, RULES, "");
    for addr in [SRV_V4, SRV_V6] {
        assert_allowed_and_dropped(&lab, addr);
    }
    // Line 2: a typo; line 3: a port out of range; line 4 would allow 8082.
    std::fs::write(
        &file,
        "policy allow\nalow tcp to any port 8082\nallow tcp to any port 70000\n\
         allow tcp to any port 8082\n",
    )
    .expect("rules");
    let r = ctl(&sock, &["reload"]);
    let msg = output_text(&r);
    assert_eq!(r.status.code(), Some(1), "broken reload: {msg}");
    let name = file.display().to_string();
    for needle in [
        format!("{name}:2:1: error:"),
        format!("{name}:3:23: error:"),
    ] {
        assert!(msg.contains(&needle), "{needle} missing in:\n{msg}");
    }
    // The old rules stay in force.
    for addr in [SRV_V4, SRV_V6] {
        assert_allowed_and_dropped(&lab, addr);
    }
    let status = ctl(&sock, &["status"]);
    assert!(status.status.success(), "{}", output_text(&status));
    let stats = sw.stop();
    assert!(stats.get("drop.policy_drop") >= 4, "{}", stats.line);
}

#[test]
fn control_socket_is_root_only() {
    let lab = Lab::up();
    let (sw, _, sock) = start(&lab, RULES, "");
    let root = ctl(&sock, &["status"]);
    assert!(root.status.success(), "root: {}", output_text(&root));
    for cmd in ["status", "stats", "reload"] {
        let out = Command::new("timeout")
            .args(["-k", "2", "20", "setpriv", "--reuid=65534", "--regid=65534"])
            .args([
                "--clear-groups",
                env!("CARGO_BIN_EXE_statewall"),
                cmd,
                "--socket",
            ])
            .arg(&sock)
            .output()
            .expect("setpriv");
        let msg = output_text(&out);
        assert_eq!(out.status.code(), Some(2), "nobody {cmd}: {msg}");
        assert!(
            msg.contains("permission denied") && msg.contains("root-only"),
            "nobody {cmd}: {msg}"
        );
    }
    let root = ctl(&sock, &["stats"]);
    assert!(root.status.success(), "root: {}", output_text(&root));
    sw.stop();
}
