//! Trust under attack, live: floods from spoofed sources (198.18.0.0/15 only), table
//! exhaustion by one host and the pickup attack after a restart, each measured through
//! statewall and then through Linux conntrack's own ruleset in the same lab, printed side by
//! side.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_trust -- --test-threads=1`
//! (scripts/test does). `scripts/flood` runs the same scenarios longer and bigger
//! (`TRUST_FLOOD_SCALE`, default 1). Every flood is bounded in packets and time.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::time::Duration;

use e2e::apps::{IdleCheck, IdleSet};
use e2e::flood::{
    attempts_after, attempts_during, attempts_start, kernel_ruleset, route_spoofed_range, Attempts,
};
use e2e::{
    cleanup, http_server, script, url, wait_for, FinalStats, Lab, Statewall, CLI_V4, SRV_V4,
};

/// The scale of the floods (`TRUST_FLOOD_SCALE`, scripts/flood sets it).
fn scale() -> f64 {
    std::env::var("TRUST_FLOOD_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

fn scaled(n: f64) -> u64 {
    (n * scale()).round() as u64
}

/// Which firewall a round runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Firewall {
    Statewall,
    Kernel,
}

impl Firewall {
    fn name(self) -> &'static str {
        match self {
            Firewall::Statewall => "statewall",
            Firewall::Kernel => "linux-ct",
        }
    }
}

/// Quiet statewall with a small table (one client may fill it).
fn small_table(max_entries: u64) -> String {
    format!(
        "[log]\nstats_interval = 0\n[conntrack]\nmax_entries = {max_entries}\n\
         per_source = {max_entries}\n"
    )
}

/// Runs `round` through statewall (started with `config`), then through the kernel's
/// ruleset; returns both results and statewall's final counters.
fn side_by_side<T>(
    lab: &mut Lab,
    config: &str,
    mut round: impl FnMut(&mut Lab, Firewall) -> T,
) -> (T, T, FinalStats) {
    let sw = Statewall::start(lab, &lab.tmp.join("sw"), config);
    let a = round(lab, Firewall::Statewall);
    let stats = sw.stop();
    // Stopping keeps the diversion (fail closed): remove it before the kernel's turn.
    cleanup(lab);
    kernel_ruleset(lab, &[], &[]);
    let b = round(lab, Firewall::Kernel);
    (a, b, stats)
}

/// Figures of one SYN flood round.
#[derive(Debug, Default)]
struct SynFlood {
    during: Attempts,
    after: Attempts,
    idle_check: IdleCheck,
    idle: u64,
    download_ok: bool,
    flood: String,
}

#[test]
fn spoofed_syn_flood_with_idle_connections_and_a_download() {
    let mut lab = Lab::up();
    route_spoofed_range(&lab);
    let sums = http_server(&mut lab, &[("30m", 30)]);
    lab.spawn(
        "srv",
        &format!(
            "ulimit -n 65536; exec python3 {} echo-many 7000",
            script("flood.py")
        ),
    );
    lab.wait_port("srv", 7000);
    let idle = 3000;
    let table = 4096;
    let syns = scaled(200_000.0);
    let secs = 3.0 * scale();
    let round = |lab: &mut Lab, fw: Firewall| {
        let mut set = IdleSet::in_lab(
            lab,
            &format!("idle-{}", fw.name()),
            (SRV_V4, 7000),
            idle,
            120,
        );
        let out = lab.tmp.join(format!("download-{}", fw.name()));
        lab.spawn(
            "cli",
            &format!(
                "curl -sS --fail --limit-rate 5M -o {o} {u}; echo $? > {o}.rc",
                o = out.display(),
                u = url(SRV_V4, 8080, "30m")
            ),
        );
        std::thread::sleep(Duration::from_millis(500));
        // 60 new connections spread over the flood while 4 096 spoofed tuples send `syns` SYNs.
        let (during, summary) = attempts_during(
            lab,
            &format!("during-{}", fw.name()),
            60,
            secs,
            &format!("syn {SRV_V4} 8080 {syns} 4096 {secs}"),
        );
        let after = attempts_after(lab, &format!("after-{}", fw.name()));
        let idle_check = set.check(60);
        set.close();
        let rc = out.with_extension("rc");
        assert!(wait_for(60, || rc.exists()), "download did not finish");
        let sum = lab.ok("cli", 30, &format!("sha256sum {}", out.display()));
        let download_ok = std::fs::read_to_string(&rc).unwrap_or_default().trim() == "0"
            && sum.split_whitespace().next() == Some(sums[0].1.as_str());
        SynFlood {
            during,
            after,
            idle_check,
            idle: idle as u64,
            download_ok,
            flood: summary,
        }
    };
    let (sw, k, stats) = side_by_side(&mut lab, &small_table(table), round);
    // A namespace cannot size its own conntrack table: Linux runs with the host's.
    let k_table = lab.ok("gw", 10, "cat /proc/sys/net/netfilter/nf_conntrack_max");
    eprintln!(
        "\nSYN flood: {syns} SYNs from 4096 spoofed tuples in {secs} s, {idle} idle \
               connections, table {table} (statewall), {} (linux-ct)",
        k_table.trim()
    );
    eprintln!(
        "{:<10} {:<22} {:<22} {:<12} {:<9} flood",
        "", "new during", "new after", "idle alive", "download"
    );
    for (name, f) in [("statewall", &sw), ("linux-ct", &k)] {
        eprintln!(
            "{name:<10} {:<22} {:<22} {:<12} {:<9} {}",
            f.during.to_string(),
            f.after.to_string(),
            format!("{}/{}", f.idle_check.alive, f.idle),
            f.download_ok,
            f.flood
        );
    }
    eprintln!("statewall: {}", stats.line);
    assert_eq!(
        sw.idle_check.alive, sw.idle,
        "idle connections lost: {:?}",
        sw.idle_check
    );
    // The socket holds the whole kernel queue ([queue] recv_buffer sized for max_len): the
    // flood overflows the queue (kernel_queue_dropped), never the socket, which drops bursts
    // long before the queue is full (the system's default buffer holds ~160 packets; with it
    // the 3 000 idle connections' burst lost 318 of them in one run out of three).
    assert_eq!(
        stats.get("kernel_user_dropped"),
        0,
        "packets lost at the queue's socket"
    );
    assert!(sw.download_ok, "the download broke");
    assert_eq!(
        sw.after.ok, sw.after.n,
        "new connections after the flood: {}",
        sw.after
    );
    // The goal is Linux's figure in the same run (60/60), although Linux runs with a
    // table 64 times larger (never full) and in the kernel: statewall's 4 096 entries are
    // full of half-open spoofed flows, a new connection's half-open entry is evicted after
    // ~1 000 more SYNs (a few ms), and the queue overflows (kernel_queue_dropped 25-90 k).
    // Evicted handshakes are remembered and complete (`resumed`), and half-closed connections
    // are evicted only after every half-open one. Before the early drop was Linux's: 3/60
    // during, 0/40 after; before the handshakes were remembered: 26-57/60 (resets: the
    // handshake's ACK found no entry; timeouts: a half-closed connection's answer found
    // none); since, 60/60 in 6 runs out of 6.
    assert!(
        sw.during.ok * 20 >= sw.during.n * 17,
        "new connections during the flood: {} (Linux {})",
        sw.during,
        k.during
    );
}

#[test]
fn time_wait_exhaustion_by_one_client() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    // A second client on the same segment.
    let other = "198.51.100.3";
    lab.ok("cli", 10, &format!("ip addr add {other}/24 dev eth0"));
    let table = 1000;
    let closed = 1200;
    let round = |lab: &mut Lab, _fw: Firewall| {
        // One client opens and closes more connections than the table holds: each ends in
        // TIME_WAIT (the client closes first). It must keep working too.
        let first = attempts_start(lab, "first", SRV_V4, closed, 4, 4, None);
        let first = Attempts::read(&first);
        let other = attempts_start(lab, "other", SRV_V4, 50, 20, 4, Some(other));
        (first, Attempts::read(&other))
    };
    let (sw, k, stats) = side_by_side(&mut lab, &small_table(table), round);
    eprintln!(
        "\nTIME_WAIT exhaustion: one client closes {closed} connections (table {table}), \
         then another client opens 50"
    );
    eprintln!("{:<10} {:<22} other client", "", "first client");
    for (name, f) in [("statewall", &sw), ("linux-ct", &k)] {
        eprintln!("{name:<10} {:<22} {}", f.0.to_string(), f.1);
    }
    eprintln!("statewall: {}", stats.line);
    assert_eq!(sw.0.ok, sw.0.n, "the first client's connections: {}", sw.0);
    assert!(sw.1.ok >= 45, "the other client's connections: {}", sw.1);
}

/// Figures of one UDP flood round.
#[derive(Debug, Default)]
struct UdpFlood {
    during: Attempts,
    after: Attempts,
    udp_after: String,
    flood: String,
}

#[test]
fn spoofed_udp_flood_at_a_responsive_server() {
    let mut lab = Lab::up();
    route_spoofed_range(&lab);
    http_server(&mut lab, &[]);
    lab.spawn(
        "srv",
        &format!("exec python3 {} udp-echo 5353", script("apps.py")),
    );
    let table = 4096;
    let datagrams = scaled(60_000.0);
    let secs = 3.0 * scale();
    let round = |lab: &mut Lab, fw: Firewall| {
        let (during, summary) = attempts_during(
            lab,
            &format!("during-{}", fw.name()),
            30,
            secs,
            &format!("udp {SRV_V4} 5353 {datagrams} 20000 {secs}"),
        );
        let after = attempts_after(lab, &format!("after-{}", fw.name()));
        let udp_after = lab
            .sh(
                "cli",
                60,
                &format!("python3 {} udp-client {SRV_V4} 5353 20", script("apps.py")),
            )
            .stdout;
        UdpFlood {
            during,
            after,
            udp_after: String::from_utf8_lossy(&udp_after).trim().to_string(),
            flood: summary,
        }
    };
    let (sw, k, stats) = side_by_side(&mut lab, &small_table(table), round);
    eprintln!(
        "\nUDP flood: {datagrams} datagrams from 20000 spoofed tuples in {secs} s at an \
               echo server, table {table} (statewall)"
    );
    eprintln!(
        "{:<10} {:<22} {:<22} {:<14} flood",
        "", "TCP during", "TCP after", "UDP after"
    );
    for (name, f) in [("statewall", &sw), ("linux-ct", &k)] {
        eprintln!(
            "{name:<10} {:<22} {:<22} {:<14} {}",
            f.during.to_string(),
            f.after.to_string(),
            f.udp_after,
            f.flood
        );
    }
    eprintln!("statewall: {}", stats.line);
    assert_eq!(sw.after.ok, sw.after.n, "TCP after the flood: {}", sw.after);
    assert_eq!(sw.udp_after, "ok 20", "UDP after the flood");
}

#[test]
fn random_source_ack_flood_answers_stay_bounded() {
    let mut lab = Lab::up();
    route_spoofed_range(&lab);
    http_server(&mut lab, &[]);
    let acks = scaled(50_000.0);
    let secs = 2.0 * scale();
    let config = "[log]\nstats_interval = 0\n[probes]\nrespond = \"rst\"\nrate = \"500/s\"\n\
                  burst = 2000\n";
    let round = |lab: &mut Lab, fw: Firewall| {
        // The answers cross the gateway towards the spoofed sources; count them at the client.
        let cap = lab.capture(
            "cli",
            &format!("rst-{}", fw.name()),
            "tcp[tcpflags] & tcp-rst != 0 and dst net 198.18.0.0/15",
        );
        let (during, summary) = attempts_during(
            lab,
            &format!("during-{}", fw.name()),
            20,
            secs,
            &format!("ack {SRV_V4} 8080 {acks} {secs}"),
        );
        let pcap = cap.stop();
        let answers = lab.ok(
            "cli",
            60,
            &format!("tcpdump -nr {} 2>/dev/null | wc -l", pcap.display()),
        );
        (
            during,
            answers.trim().parse::<u64>().unwrap_or(u64::MAX),
            summary,
        )
    };
    let (sw, k, stats) = side_by_side(&mut lab, config, round);
    // The global bucket: 500 answers a second after a burst of 2000.
    let bound = 2000 + (500.0 * (secs + 1.0)) as u64;
    eprintln!(
        "\nACK flood: {acks} ACKs from random spoofed sources in {secs} s (probes rst, 500/s, \
         burst 2000: at most {bound} answers)\n{:<10} {:<14} {:<22} flood\n\
         {:<10} {:<14} {:<22} {}\n{:<10} {:<14} {:<22} {}\nstatewall: {}",
        "",
        "answers",
        "TCP during",
        "statewall",
        sw.1,
        sw.0.to_string(),
        sw.2,
        "linux-ct",
        k.1,
        k.0.to_string(),
        k.2,
        stats.line
    );
    assert!(sw.1 <= bound, "{} answers", sw.1);
    assert!(stats.get("answers_limited") > 0, "{}", stats.line);
    assert_eq!(sw.0.ok, sw.0.n, "TCP during the flood: {}", sw.0);
}

#[test]
fn pickup_attack_after_a_restart_is_refused() {
    let mut lab = Lab::up();
    http_server(&mut lab, &[]);
    let log = lab.tmp.join("accepted-8082");
    lab.spawn(
        "srv",
        &format!(
            "exec python3 {} accept-log 8082 {}",
            script("flood.py"),
            log.display()
        ),
    );
    lab.wait_port("srv", 8082);
    let rules = lab.tmp.join("attack.rules");
    std::fs::write(
        &rules,
        format!("policy drop\nallow tcp to {SRV_V4} port 8080\n"),
    )
    .expect("rules");
    let config = format!(
        "rules = \"{}\"\n[log]\nstats_interval = 0\n",
        rules.display()
    );
    // The attack: one ACK with a bad TCP checksum (the server drops it silently) from the
    // port the client then connects from, then a real connection on that tuple.
    let attack = |lab: &Lab, sport: u16| -> String {
        lab.ok(
            "cli",
            20,
            &format!(
                "python3 {f} bad-ack {CLI_V4} {SRV_V4} {sport} 8082; sleep 0.2; \
                 python3 -c \"import socket; s = socket.socket(); s.settimeout(2); \
                 s.bind(('{CLI_V4}', {sport})); \
                 print('connected' if s.connect_ex(('{SRV_V4}', 8082)) == 0 else 'refused')\"",
                f = script("flood.py")
            ),
        )
        .trim()
        .to_string()
    };
    let dir = lab.tmp.join("sw");
    let sw = Statewall::start(&lab, &dir, &config);
    // Allowed traffic before the restart.
    let before = lab.ok(
        "cli",
        30,
        &format!("python3 {} conns {SRV_V4} 8080 3", script("apps.py")),
    );
    assert_eq!(before.trim(), "ok 3");
    sw.kill();
    let sw = Statewall::start(&lab, &dir, &config);
    assert!(
        sw.log_text().contains("restart detected"),
        "{}",
        sw.log_text()
    );
    let mut results = Vec::new();
    for sport in [40555, 40556, 8080] {
        results.push((sport, attack(&lab, sport)));
    }
    let allowed = lab.ok(
        "cli",
        30,
        &format!("python3 {} conns {SRV_V4} 8080 3", script("apps.py")),
    );
    let stats = sw.stop();
    let sw_accepted = std::fs::read_to_string(&log).unwrap_or_default();
    cleanup(&lab);
    kernel_ruleset(
        &lab,
        &[
            &format!("-p tcp -d {SRV_V4} --dport 8080 -m conntrack --ctstate NEW -j ACCEPT"),
            "-j DROP",
        ],
        &["-j DROP"],
    );
    let _ = std::fs::remove_file(&log);
    let kernel: Vec<_> = [40557, 40558, 8081]
        .iter()
        .map(|p| (*p, attack(&lab, *p)))
        .collect();
    let k_accepted = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "\npickup attack (bad-checksum ACK, then SYN on the same tuple to a refused port):\n\
         statewall: {results:?}, server accepted: {:?}\nlinux-ct:  {kernel:?}, server \
         accepted: {:?}\nstatewall: {}",
        sw_accepted.lines().count(),
        k_accepted.lines().count(),
        stats.line
    );
    assert_eq!(
        allowed.trim(),
        "ok 3",
        "allowed connections after the restart"
    );
    assert!(sw_accepted.is_empty(), "the server accepted: {sw_accepted}");
    assert!(results.iter().all(|(_, r)| r == "refused"), "{results:?}");
}

/// Starts `flood.py reuse` from the client (see there); returns its result file.
fn reuse_start(lab: &mut Lab, name: &str, mode: &str, first: u16, n: u32) -> std::path::PathBuf {
    let out = lab.tmp.join(format!("reuse-{name}.json"));
    let _ = std::fs::remove_file(&out);
    lab.spawn(
        "cli",
        &format!(
            "exec python3 {} reuse {SRV_V4} 7100 {n} {first} {mode} {}",
            script("flood.py"),
            out.display()
        ),
    );
    out
}

#[test]
fn port_reuse_on_closing_flows() {
    let mut lab = Lab::up();
    lab.spawn(
        "srv",
        &format!("exec python3 {} reuse-server 7100", script("flood.py")),
    );
    lab.wait_port("srv", 7100);
    // The client forgets an orphaned FIN_WAIT_2 after a second (silently), so it reuses the
    // port while the gateway still holds the old flow in a closing state.
    lab.ok("cli", 10, "sysctl -qw net.ipv4.tcp_fin_timeout=1");
    // `gone`: the server's RST never leaves it (a lost RST, a rebooted server): its SYN/ACK
    // then answers the new SYN on the stale flow.
    lab.ok(
        "srv",
        10,
        "iptables -A OUTPUT -p tcp --sport 7100 --tcp-flags RST RST -j DROP",
    );
    let n = 20;
    let round = |lab: &mut Lab, fw: Firewall| {
        let base = if fw == Firewall::Statewall {
            41000
        } else {
            42000
        };
        // `hold`: the server keeps its CLOSE_WAIT socket, answers the new SYN with a challenge
        // ACK, the client resets it and its retransmitted SYN connects.
        let hold = reuse_start(lab, &format!("hold-{}", fw.name()), "hold", base, n);
        let gone = reuse_start(lab, &format!("gone-{}", fw.name()), "gone", base + 100, n);
        (Attempts::read(&hold), Attempts::read(&gone))
    };
    let (sw, k, stats) = side_by_side(&mut lab, "[log]\nstats_interval = 0\n", round);
    eprintln!(
        "\nport reuse: {n} local ports whose old connection the client closed with a FIN, \
         reused with a new ISN (then 1 MB read)"
    );
    eprintln!(
        "{:<10} {:<28} server socket gone",
        "", "server in CLOSE_WAIT"
    );
    for (name, f) in [("statewall", &sw), ("linux-ct", &k)] {
        eprintln!("{name:<10} {:<28} {}", f.0.to_string(), f.1);
    }
    eprintln!("statewall: {}", stats.line);
    assert_eq!(sw.0.ok, sw.0.n, "server in CLOSE_WAIT: {}", sw.0);
    assert_eq!(sw.1.ok, sw.1.n, "server socket gone: {}", sw.1);
    stats.assert_no_drops();
}

#[test]
fn holes_in_what_the_gateway_saw() {
    let mut lab = Lab::up();
    lab.spawn(
        "srv",
        &format!("exec python3 {} reuse-server 7100", script("flood.py")),
    );
    lab.wait_port("srv", 7100);
    // 3 % of the data segments of both directions (not SYN, FIN, RST) pass the gateway unseen
    // by the firewall (the kernel fast path, an asymmetric path): holes in what it saw.
    // Linux's window check lets the flows go on (later segments move the ends); statewall's
    // must as well. Now and then a flow stalls for good in both: the firewall missed the tail
    // of a flight, the receiver's ACK covers it (`ack_unsent_data`, Linux's "ACK is over upper
    // bound") and the sender's timer retransmits a segment the firewall saw, so every ACK is
    // dropped again. Behind a queue this comes more often: what the firewall sees waits in
    // it while the holes bypass it, and the receiver, getting data out of order, ACKs beyond
    // what the firewall saw. So Linux runs twice: as it is, and behind an accept-all queue
    // (nfq-accept) that the holes bypass as they bypass statewall's; the second is the
    // reference (measured in four rounds: 29-36 INVALID, 8, 8, 8, 7 /8; Linux alone lost one
    // of eight too in two runs of three). statewall: at most one transfer fewer than the
    // reference, and at most two of eight.
    let pick = "-p tcp -m multiport --ports 7100 --tcp-flags SYN,FIN,RST NONE \
                -m statistic --mode random --probability 0.03";
    let (conns, size) = (8, 4_000_000);
    let round = |lab: &mut Lab, fw: Firewall| {
        match fw {
            Firewall::Statewall => {
                lab.ok("gw", 10, &format!("iptables -I FORWARD 1 {pick} -j ACCEPT"));
            }
            Firewall::Kernel => {
                lab.ok(
                    "gw",
                    10,
                    &format!("iptables -t raw -I PREROUTING {pick} -j NOTRACK"),
                );
                kernel_ruleset(lab, &["-m conntrack --ctstate UNTRACKED -j ACCEPT"], &[]);
            }
        }
        let result = transfers(lab, fw.name(), conns, size);
        let invalid = match fw {
            Firewall::Statewall => {
                lab.ok("gw", 10, &format!("iptables -D FORWARD {pick} -j ACCEPT"));
                0
            }
            Firewall::Kernel => {
                let invalid = kernel_invalid(lab);
                lab.ok(
                    "gw",
                    10,
                    &format!("iptables -t raw -D PREROUTING {pick} -j NOTRACK"),
                );
                invalid
            }
        };
        (result, invalid)
    };
    // Without the kernel fast path: statewall judges every segment it sees.
    let config = "[log]\nstats_interval = 0\n[offload]\nenable = false\n";
    let (sw, k, stats) = side_by_side(&mut lab, config, round);
    let queued = linux_behind_a_queue(&mut lab, pick, conns, size);
    eprintln!(
        "\nholes: {conns} transfers of {size} bytes (half down, half up), 3 % of the segments \
         unseen by the firewall\n{:<10} {:<24} dropped\n{:<10} {:<24} {}\n\
         {:<10} {:<24} {} (INVALID)\n{:<10} {:<24} {} (INVALID, behind a queue)\nstatewall: {}",
        "",
        "transfers complete",
        "statewall",
        sw.0.to_string(),
        stats.get("dropped"),
        "linux-ct",
        k.0.to_string(),
        k.1,
        "linux-q",
        queued.0.to_string(),
        queued.1,
        stats.line
    );
    assert!(
        sw.0.ok + 1 >= queued.0.ok && sw.0.ok + 2 >= sw.0.n,
        "transfers with holes: {} (Linux {}, behind a queue {})",
        sw.0,
        k.0,
        queued.0
    );
}

/// The holes round of Linux conntrack behind an accept-all NFQUEUE consumer (nfq-accept, queue
/// 7) in the raw table, before conntrack: the packets `pick` chooses bypass it untracked, the
/// others reach conntrack after the queue's delay, as they reach statewall. Returns the
/// transfers and the INVALID count. The kernel ruleset of the round before is in place.
fn linux_behind_a_queue(lab: &mut Lab, pick: &str, conns: u32, size: u64) -> (Attempts, u64) {
    let nfq = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/nfq-accept");
    assert!(
        nfq.exists(),
        "{} missing: cargo build --release",
        nfq.display()
    );
    lab.ok(
        "gw",
        10,
        "conntrack -F >/dev/null 2>&1; iptables -Z FORWARD",
    );
    let out = lab.tmp.join("nfq-accept.out");
    lab.spawn(
        "gw",
        &format!("exec {} --queue 7 > {}", nfq.display(), out.display()),
    );
    assert!(
        wait_for(10, || std::fs::read_to_string(&out)
            .is_ok_and(|s| s.contains("ready"))),
        "nfq-accept did not start"
    );
    let rules = [
        format!("PREROUTING {pick} -j MARK --set-mark 0x77"),
        "PREROUTING -m mark --mark 0x77 -j NOTRACK".to_string(),
        "PREROUTING -p tcp -m multiport --ports 7100 -m mark ! --mark 0x77 \
         -j NFQUEUE --queue-num 7"
            .to_string(),
    ];
    for r in &rules {
        lab.ok("gw", 10, &format!("iptables -t raw -A {r}"));
    }
    let result = transfers(lab, "linux-q", conns, size);
    let invalid = kernel_invalid(lab);
    for r in rules.iter().rev() {
        lab.ok("gw", 10, &format!("iptables -t raw -D {r}"));
    }
    (result, invalid)
}

/// `conns` transfers of `size` bytes to the reuse server on port 7100, half down, half up
/// (`flood.py transfers`), named `name`: how many completed.
fn transfers(lab: &mut Lab, name: &str, conns: u32, size: u64) -> Attempts {
    let out = lab.tmp.join(format!("transfers-{name}.json"));
    lab.spawn(
        "cli",
        &format!(
            "exec python3 {} transfers {SRV_V4} 7100 {conns} {size} {}",
            script("flood.py"),
            out.display()
        ),
    );
    Attempts::read(&out)
}

/// Packets the kernel ruleset dropped as INVALID (its FORWARD rule 1).
fn kernel_invalid(lab: &Lab) -> u64 {
    lab.ok("gw", 10, "iptables -nvxL FORWARD 1")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}
