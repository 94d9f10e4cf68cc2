//! End-to-end tests: the real `statewall run` in the gateway namespace of a three-namespace
//! lab, real traffic and crafted probes, v4 and v6.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_gateway -- --test-threads=1`
//! (scripts/test does). Each test builds its own lab with a unique prefix and always tears it
//! down; a missing tool or missing root is a failure.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    cleanup, ctl, http_server, output_text, script, url, Lab, Statewall, CLI_V4, CLI_V6, SRV_V4,
    SRV_V6,
};

/// Quiet statewall: no periodic stats lines.
const QUIET: &str = "[log]\nstats_interval = 0\n";

#[test]
fn downloads_are_byte_exact_v4_v6() {
    let mut lab = Lab::up();
    let sums = http_server(&mut lab, &[("1m", 1), ("100m", 100)]);
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    for addr in [SRV_V4, SRV_V6] {
        for (name, sum) in &sums {
            let t0 = Instant::now();
            let out = lab.ok(
                "cli",
                120,
                &format!("curl -sS --fail {} | sha256sum", url(addr, 8080, name)),
            );
            let got = out.split_whitespace().next().unwrap_or_default();
            assert_eq!(got, sum, "{name} from {addr} differs");
            eprintln!("download {name} from {addr}: {:?}", t0.elapsed());
        }
    }
    let stats = sw.stop();
    stats.assert_no_drops();
    assert!(stats.get("new") >= 4, "{}", stats.line);
}

#[test]
fn thousand_short_connections_v4_v6() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    let apps = script("apps.py");
    for (addr, n) in [(SRV_V4, 1000), (SRV_V6, 300)] {
        let t0 = Instant::now();
        let out = lab.ok("cli", 120, &format!("python3 {apps} conns {addr} 8080 {n}"));
        assert_eq!(out.trim(), format!("ok {n}"));
        eprintln!("{n} connections to {addr}: {:?}", t0.elapsed());
    }
    let stats = sw.stop();
    stats.assert_no_drops();
    assert!(stats.get("new") >= 1300, "{}", stats.line);
}

#[test]
fn iperf3_bulk_v4_v6() {
    let mut lab = Lab::up();
    lab.spawn("srv", "exec iperf3 -s -p 5201");
    lab.wait_port("srv", 5201);
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    for (addr, secs) in [(SRV_V4, 10), (SRV_V6, 3)] {
        let out = lab.ok(
            "cli",
            secs + 20,
            &format!("iperf3 -c {addr} -p 5201 -t {secs} -f g | tail -4"),
        );
        eprintln!("iperf3 {addr} {secs}s:\n{out}");
        assert!(out.contains("receiver"), "{out}");
    }
    let stats = sw.stop();
    eprintln!("{}", stats.line);
    // iperf3 ends each test by resetting the data connection from the receiving side while
    // the sender still has segments in flight; statewall drops data after a valid RST
    // (DESIGN.md §3, stricter than Linux conntrack), and those segments could only draw
    // another RST. Every other drop fails the test, and so does any kernel queue loss.
    stats.assert_no_drops_except(&["data_after_rst"]);
}

#[test]
fn keepalive_half_close_and_simultaneous_open_v4_v6() {
    let mut lab = Lab::up();
    let apps = script("apps.py");
    // Both endpoints of the simultaneous open drop their kernel's RST for a SYN that arrives
    // before their own connect().
    for (which, port) in [("cli", 41000), ("srv", 42000)] {
        lab.ok(
            which,
            10,
            &format!(
                "for t in iptables ip6tables; do $t -A OUTPUT -p tcp --sport {port} \
                 --tcp-flags RST RST -j DROP; done"
            ),
        );
    }
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    for (cli, srv) in [(CLI_V4, SRV_V4), (CLI_V6, SRV_V6)] {
        // A long-lived idle connection with keepalive probes every second.
        lab.spawn("srv", &format!("exec python3 {apps} echo {srv} 7000"));
        lab.wait_port("srv", 7000);
        let out = lab.ok("cli", 30, &format!("python3 {apps} keepalive {srv} 7000 5"));
        assert_eq!(out.trim(), "ok", "keepalive via {srv}");

        // Half close: the client shuts its sending side; the server keeps sending for 1 s.
        lab.spawn(
            "srv",
            &format!("exec python3 {apps} halfclose-server {srv} 7001"),
        );
        lab.wait_port("srv", 7001);
        let out = lab.ok(
            "cli",
            30,
            &format!("python3 {apps} halfclose-client {srv} 7001"),
        );
        assert_eq!(out.trim(), "halfclose-client: received 10000 bytes");

        // Simultaneous open: both sides connect to each other from fixed ports.
        lab.spawn(
            "cli",
            &format!(
                "exec python3 {apps} simopen {cli} 41000 {srv} 42000 > {}/simopen-cli",
                lab.tmp.display()
            ),
        );
        std::thread::sleep(Duration::from_millis(300));
        let out = lab.ok(
            "srv",
            30,
            &format!("python3 {apps} simopen {srv} 42000 {cli} 41000"),
        );
        assert_eq!(out.trim(), "ok", "simultaneous open via {srv}");
        std::thread::sleep(Duration::from_millis(300));
        let cli_out = std::fs::read_to_string(lab.tmp.join("simopen-cli")).unwrap_or_default();
        assert_eq!(cli_out.trim(), "ok", "simultaneous open, client side");
    }
    let stats = sw.stop();
    stats.assert_no_drops();
    assert!(
        stats.line.contains("ignored=") && stats.get("new") >= 6,
        "{}",
        stats.line
    );
}

/// Runs the crafted probe matrix from cli towards srv:9000; returns (name, expected, copies
/// seen at srv, copies needed) per probe, v4 then v6.
fn probe_matrix(lab: &mut Lab, tag: &str, base_port: u16) -> Vec<(String, String, u64, u64)> {
    let probes = script("probes.py");
    let mut rows = Vec::new();
    for (i, addr) in [SRV_V4, SRV_V6].into_iter().enumerate() {
        let base = base_port + 50 * i as u16;
        let name = format!("{tag}-{i}");
        let cap = lab.capture(
            "srv",
            &name,
            &format!(
                "tcp and dst port 9000 and src portrange {base}-{}",
                base + 49
            ),
        );
        let expect = lab.tmp.join(format!("{name}.json"));
        lab.ok(
            "cli",
            60,
            &format!(
                "/usr/bin/python3 {probes} send {addr} 9000 {base} {}",
                expect.display()
            ),
        );
        let pcap = cap.stop();
        for p in e2e::probes::check(&pcap, &expect, |cmd| lab.ok("cli", 60, cmd)) {
            rows.push((
                format!("{} (v{})", p.name, if i == 0 { 4 } else { 6 }),
                p.expect,
                p.seen,
                p.copies,
            ));
        }
    }
    rows
}

#[test]
fn crafted_probes_statewall_vs_kernel_conntrack() {
    let mut lab = Lab::up();
    let apps = script("apps.py");
    lab.spawn("srv", &format!("exec python3 {apps} sink :: 9000"));
    lab.wait_port("srv", 9000);
    lab.ok(
        "cli",
        10,
        "for t in iptables ip6tables; do $t -A OUTPUT -p tcp --sport 40000:40999 \
         --tcp-flags RST RST -j DROP; done",
    );

    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    let statewall = probe_matrix(&mut lab, "statewall", 40100);
    let stats = sw.stop();
    // Stopping keeps the diversion (fail closed): remove it before the kernel's turn.
    cleanup(&lab);

    // The same matrix through the kernel's own conntrack ruleset (INVALID dropped).
    lab.ok(
        "gw",
        10,
        "conntrack -F 2>/dev/null; for t in iptables ip6tables; do \
         $t -A FORWARD -m conntrack --ctstate INVALID -j DROP && \
         $t -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT || exit 1; done",
    );
    let kernel = probe_matrix(&mut lab, "kernel", 40400);

    let verdict = |seen: u64, copies: u64| if seen >= copies { "reached" } else { "blocked" };
    eprintln!(
        "\n{:<30} {:<9} {:<10} {:<10}",
        "probe", "expected", "statewall", "kernel-ct"
    );
    let mut wrong = Vec::new();
    for (s, k) in statewall.iter().zip(&kernel) {
        let (name, expect, seen, copies) = s;
        let got = verdict(*seen, *copies);
        eprintln!(
            "{name:<30} {:<9} {got:<10} {:<10}",
            if expect == "pass" { "reach" } else { "block" },
            verdict(k.2, k.3)
        );
        let ok = match expect.as_str() {
            "pass" => seen >= copies,
            _ => *seen == 0,
        };
        if !ok {
            wrong.push(name.clone());
        }
    }
    eprintln!("statewall: {}", stats.line);
    assert!(
        wrong.is_empty(),
        "statewall got these probes wrong: {wrong:?}"
    );
    assert!(stats.get("dropped") >= 28, "{}", stats.line);
}

#[test]
fn sigterm_keeps_rules_a_start_replaces_them_and_cleanup_removes_them() {
    let lab = Lab::up();
    let dir = lab.tmp.join("sw");
    let extra = "[netfilter]\nhooks = [\"forward\", \"input\", \"output\"]\nnotrack = true\n[queue]\ncount = 2\n[log]\nstats_interval = 0\n";
    let sw = Statewall::start(&lab, &dir, extra);
    let rules = lab.gw_rules();
    // (rule, copies): once per family, twice more for the chain of the raw table.
    for (needle, copies) in [
        ("-A FORWARD -j STATEWALL", 2),
        ("-A INPUT -j STATEWALL", 2),
        ("-A OUTPUT -j STATEWALL", 4),
        ("-A STATEWALL -i lo -j RETURN", 4),
        ("-A STATEWALL -m mark --mark 0x5717 -j RETURN", 2),
        ("--queue-balance 0:1 --queue-cpu-fanout", 2),
        ("-A PREROUTING -j STATEWALL", 2),
        ("-A STATEWALL -j CT --notrack", 2),
    ] {
        assert_eq!(rules.matches(needle).count(), copies, "{needle}:\n{rules}");
    }
    // The gateway itself stays reachable over loopback while INPUT/OUTPUT are diverted.
    lab.ok("gw", 10, "ping -c1 -W2 127.0.0.1 >/dev/null");
    assert!(!sw.log_text().contains("restart detected"));
    sw.stop();
    // Fail closed: the diversion outlives the process ([netfilter] on_stop = "keep").
    assert_eq!(
        lab.gw_rules().matches("-A FORWARD -j STATEWALL").count(),
        2,
        "rules after SIGTERM:\n{}",
        lab.gw_rules()
    );

    // A killed run leaves its rules; the next start replaces them and knows it is a restart.
    let sw = Statewall::start(&lab, &dir, extra);
    sw.kill();
    assert!(lab.gw_rules().contains("-A FORWARD -j STATEWALL"));
    let sw = Statewall::start(&lab, &dir, extra);
    assert!(
        sw.log_text().contains("restart detected"),
        "{}",
        sw.log_text()
    );
    assert_eq!(
        lab.gw_rules().matches("-A FORWARD -j STATEWALL").count(),
        2,
        "exactly one jump per family"
    );
    sw.stop();
    cleanup(&lab);
    assert!(!lab.gw_rules().contains("STATEWALL"));
}

#[test]
fn restart_during_a_transfer_keeps_the_connection() {
    let mut lab = Lab::up();
    let sums = http_server(&mut lab, &[("100m", 100)]);
    let dir = lab.tmp.join("sw");
    let sw = Statewall::start(&lab, &dir, QUIET);
    // RSTs anywhere on the client side would mean a cut connection.
    let cap = lab.capture("cli", "rst", "tcp[tcpflags] & tcp-rst != 0");
    let out = lab.tmp.join("download");
    lab.spawn(
        "cli",
        &format!(
            "curl -sS --fail --limit-rate 25M -o {o} {u}; echo $? > {o}.rc",
            o = out.display(),
            u = url(SRV_V4, 8080, "100m")
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let first = sw.stop();
    // The gap: the diversion stays (fail closed) with nobody reading the queue, so the kernel
    // drops what it would queue and TCP retransmits; the new run adopts the connection from
    // the kernel table, which holds it with the ADMITTED mark.
    std::thread::sleep(Duration::from_millis(300));
    let sw = Statewall::start(&lab, &dir, QUIET);
    assert!(
        sw.log_text().contains("restart detected"),
        "{}",
        sw.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lab.tmp.join("download.rc").exists() {
        assert!(
            Instant::now() < deadline,
            "download did not finish; statewall after the restart: {}\n{}",
            output_text(&ctl(&dir.join("control.sock"), &["stats"])),
            sw.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sw_log = sw.log_text();
    let second = sw.stop();
    let rsts = cap.stop();
    let rc = std::fs::read_to_string(lab.tmp.join("download.rc")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "curl failed");
    let got = lab.ok("cli", 30, &format!("sha256sum {}", out.display()));
    assert_eq!(got.split_whitespace().next(), Some(sums[0].1.as_str()));
    let rst_count = lab.ok(
        "cli",
        30,
        &format!("tcpdump -r {} 2>/dev/null | wc -l", rsts.display()),
    );
    assert_eq!(rst_count.trim(), "0", "RSTs seen during the restart");
    eprintln!(
        "before restart: {}\nafter restart: {}",
        first.line, second.line
    );
    first.assert_no_drops();
    second.assert_no_drops();
    assert!(
        sw_log.contains("adopted the flows the kernel table holds")
            && !sw_log.contains("(blind pickup"),
        "{sw_log}"
    );
    assert!(
        second.get("adopted") >= 1,
        "adopted connection: {}",
        second.line
    );
}

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let lab = Lab::up();
    let bad = lab.tmp.join("bad.toml");
    for (text, key) in [
        ("[queue]\ncount = 0\n", "queue.count"),
        ("[queue]\ncopyrange = 100\n", "copyrange"),
        ("[netfilter]\nhooks = [\"sideways\"]\n", "sideways"),
    ] {
        std::fs::write(&bad, text).expect("write");
        // In the gateway namespace: should validation ever pass, nothing outside the lab moves.
        let out = lab.sh(
            "gw",
            10,
            &format!(
                "{} run --config {}",
                env!("CARGO_BIN_EXE_statewall"),
                bad.display()
            ),
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{key} not named in: {err}");
    }
    // Nothing was installed by the failed starts.
    assert!(!lab.gw_rules().contains("STATEWALL"));
}
