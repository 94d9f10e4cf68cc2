//! End-to-end tests of the kernel fast path (`[offload]`, on by default): the real
//! `statewall run` in the gateway of a three-namespace lab, flows that statewall validated and
//! the kernel then carries, and what must stay true while it does.
//!
//! - crafted probes on offloaded connections (each warmed up until statewall offloaded it):
//!   out-of-window data, unsent ACKs, out-of-window RSTs, data after a RST or a full close are
//!   still dropped, retransmissions and keepalives still pass, v4 and v6;
//! - a bulk transfer is carried by the kernel: statewall sees a small fraction of its packets
//!   and lists the flow as offloaded;
//! - connections offloaded before a restart of statewall, idle during it, end with a FIN or a
//!   RST that is the first segment the new process sees of them: they close cleanly, the RST
//!   reaches the server, and nothing answers the client with a RST;
//! - an offloaded UDP flow stays in statewall's table past its timeout while the kernel
//!   carries it (the pass over the kernel's fast-path flows refreshes it);
//! - the sysctls the fast path relies on are checked at start.
//!
//! Run as root: `cargo test --release --features e2e --test e2e_fastpath -- --test-threads=1`
//! (scripts/test does). Each test builds its own lab with a unique prefix and always tears it
//! down; a missing tool or missing root is a failure.
#![cfg(feature = "e2e")]

// Not every helper of the shared harness is used here.
#[allow(dead_code)]
mod e2e;

use std::time::Duration;

use e2e::{ctl, output_text, script, wait_for, Lab, Statewall, SRV_V4, SRV_V6};

/// Quiet statewall (no periodic stats lines), offloading TCP after two segments each way (the
/// probes and the echo client exchange a few segments only).
const QUIET: &str = "[log]\nstats_interval = 0\n[offload]\ntcp_segments = 2\n";

/// The FASTPATH bit of the default connection mark layout, as `conntrack -m` takes it.
const FASTPATH: &str = "0x20000000/0x20000000";

/// Kernel conntrack entries of `family` (`ipv4`, `ipv6`) carrying FASTPATH in the gateway.
fn fastpath_entries(lab: &Lab, family: &str) -> usize {
    let out = lab.sh(
        "gw",
        10,
        &format!("conntrack -L -f {family} -m {FASTPATH} 2>/dev/null"),
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn crafted_probes_on_offloaded_connections_v4_v6() {
    let mut lab = Lab::up();
    let apps = script("apps.py");
    let probes = script("probes.py");
    lab.spawn("srv", &format!("exec python3 {apps} sink :: 9000"));
    lab.wait_port("srv", 9000);
    lab.ok(
        "cli",
        10,
        "for t in iptables ip6tables; do $t -A OUTPUT -p tcp --sport 41000:41999 \
         --tcp-flags RST RST -j DROP; done",
    );
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    let mut wrong = Vec::new();
    for (i, addr) in [SRV_V4, SRV_V6].into_iter().enumerate() {
        let base = 41100 + 300 * i as u16;
        let name = format!("probes-{i}");
        let cap = lab.capture(
            "srv",
            &name,
            &format!(
                "tcp and dst port 9000 and src portrange {base}-{}",
                base + 49
            ),
        );
        let expect = lab.tmp.join(format!("{name}.json"));
        // Three acknowledged data segments before each probe: two each way offload a flow.
        lab.ok(
            "cli",
            120,
            &format!(
                "/usr/bin/python3 {probes} send {addr} 9000 {base} {} 3",
                expect.display()
            ),
        );
        let family = if i == 0 { "ipv4" } else { "ipv6" };
        // The connections left open (the invalid probes were dropped, the valid ones passed)
        // are still on the fast path.
        let offloaded = fastpath_entries(&lab, family);
        assert!(
            offloaded >= 4,
            "{offloaded} {family} flows on the fast path"
        );
        let pcap = cap.stop();
        for p in e2e::probes::check(&pcap, &expect, |cmd| lab.ok("cli", 60, cmd)) {
            eprintln!(
                "{:<24} {family}: expected \"{}\", seen {}",
                p.name, p.expect, p.seen
            );
            if !p.as_expected() {
                wrong.push(format!("{} ({family}): seen {}", p.name, p.seen));
            }
        }
    }
    let stats = sw.stop();
    eprintln!("{}", stats.line);
    assert!(wrong.is_empty(), "wrong on offloaded flows: {wrong:?}");
}

#[test]
fn a_bulk_transfer_is_carried_by_the_kernel_v4_v6() {
    let mut lab = Lab::up();
    lab.spawn("srv", "exec iperf3 -s -p 5201");
    lab.wait_port("srv", 5201);
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    let sock = lab.tmp.join("sw").join("control.sock");
    for addr in [SRV_V4, SRV_V6] {
        let out = lab.tmp.join(format!("iperf-{}", addr.len()));
        lab.spawn(
            "cli",
            &format!(
                "iperf3 -c {addr} -p 5201 -t 4 -f m > {o} 2>&1; echo $? > {o}.rc",
                o = out.display()
            ),
        );
        // statewall lists the data connection as offloaded while the kernel carries it.
        let listed = wait_for(10, || {
            let c = ctl(&sock, &["conns"]);
            output_text(&c)
                .lines()
                .any(|l| l.contains("dport=5201") && l.contains("[OFFLOAD]"))
        });
        assert!(listed, "{}", output_text(&ctl(&sock, &["conns"])));
        let rc = out.with_extension("rc");
        assert!(wait_for(30, || rc.exists()), "iperf3 to {addr} did not end");
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        eprintln!("iperf3 {addr}:\n{text}");
        assert_eq!(std::fs::read_to_string(&rc).unwrap_or_default().trim(), "0");
        assert!(text.contains("receiver"), "{text}");
    }
    let stats = sw.stop();
    eprintln!("{}", stats.line);
    // Two four-second transfers of hundreds of megabytes: without the fast path statewall
    // judges tens of thousands of (GSO) packets; with it, handshakes, the first segments and
    // the teardowns, and no more than a few hundred in all.
    assert!(stats.get("packets") < 2_000, "{}", stats.line);
    // As in e2e_gateway: iperf3 resets its data connection with segments in flight.
    stats.assert_no_drops_except(&["data_after_rst"]);
}

#[test]
fn a_fin_or_rst_after_a_restart_ends_an_offloaded_connection_cleanly_v4_v6() {
    let mut lab = Lab::up();
    let apps = script("apps.py");
    let dir = lab.tmp.join("sw");
    let sw = Statewall::start(&lab, &dir, QUIET);
    // What the client receives of the connections closed with a FIN (tcpdump's tcp[] offsets
    // are IPv4's only: RSTs are counted when reading), and what reaches the server of the one
    // the client resets.
    let to_cli = lab.capture("cli", "to-cli", "tcp and src portrange 7000-7002");
    let rst_srv = lab.capture("srv", "rst-srv", "tcp port 7002");
    let sock = dir.join("control.sock");
    // Echo a few lines (the flow is validated and offloaded), stay idle while statewall
    // restarts, then close with a FIN (or a RST: SO_LINGER 0): the first segment the new
    // process sees of the connection.
    let client = |addr: &str, port: u16, ready: &str, rst: bool| {
        let close = if rst {
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
             s.close()\n\
             print('ok')\n"
        } else {
            "s.shutdown(socket.SHUT_WR)\n\
             rest = s.recv(100)\n\
             s.close()\n\
             print('ok' if rest == b'' else 'bad %r' % rest)\n"
        };
        format!(
            "import socket, struct, sys, time\n\
             s = socket.create_connection(('{addr}', {port}), timeout=10)\n\
             for i in range(4):\n    s.sendall(b'line %d\\n' % i)\n    s.recv(100)\n\
             open('{ready}', 'w').write('1')\n\
             time.sleep(10)\n\
             {close}"
        )
    };
    let mut outs = Vec::new();
    // One port per connection: waiting for a listener looks at the port only.
    let conns = [
        (SRV_V4, 7000, false),
        (SRV_V6, 7001, false),
        (SRV_V4, 7002, true),
    ];
    for (i, (addr, port, rst)) in conns.into_iter().enumerate() {
        lab.spawn("srv", &format!("exec python3 {apps} echo {addr} {port}"));
        lab.wait_port("srv", port);
        let ready = lab.tmp.join(format!("ready-{i}"));
        let out = lab.tmp.join(format!("client-{i}"));
        let code = lab.tmp.join(format!("client-{i}.py"));
        std::fs::write(&code, client(addr, port, &ready.display().to_string(), rst))
            .expect("client");
        lab.spawn(
            "cli",
            &format!("python3 {} > {} 2>&1", code.display(), out.display()),
        );
        assert!(wait_for(10, || ready.exists()), "client {i} did not start");
        outs.push(out);
    }
    let listed = wait_for(5, || {
        let text = output_text(&ctl(&sock, &["conns"]));
        text.lines()
            .filter(|l| l.contains("dport=700") && l.contains("[OFFLOAD]"))
            .count()
            == 3
    });
    assert!(listed, "{}", output_text(&ctl(&sock, &["conns"])));
    let first = sw.stop();
    std::thread::sleep(Duration::from_millis(500));
    let sw = Statewall::start(&lab, &dir, QUIET);
    for (i, out) in outs.iter().enumerate() {
        assert!(
            wait_for(20, || std::fs::read_to_string(out)
                .is_ok_and(|t| !t.trim().is_empty())),
            "client {i} did not finish"
        );
        let text = std::fs::read_to_string(out).unwrap_or_default();
        assert_eq!(text.trim(), "ok", "client {i}");
    }
    // The RST reaches the server before the second statewall stops.
    std::thread::sleep(Duration::from_millis(300));
    let second = sw.stop();
    eprintln!("before: {}\nafter: {}", first.line, second.line);
    let rsts = |pcap: std::path::PathBuf| {
        lab.ok(
            "cli",
            30,
            &format!(
                "tcpdump -nr {} 2>/dev/null | grep -c 'Flags \\[R' || true",
                pcap.display()
            ),
        )
        .trim()
        .to_string()
    };
    assert_eq!(rsts(to_cli.stop()), "0", "RSTs sent to the client");
    assert_eq!(rsts(rst_srv.stop()), "1", "the client's RST at the server");
    first.assert_no_drops();
    second.assert_no_drops();
}

#[test]
fn an_offloaded_flow_outlives_statewall_timeout_while_the_kernel_carries_it() {
    let mut lab = Lab::up();
    let apps = script("apps.py");
    lab.spawn("srv", &format!("exec python3 {apps} udp-echo 5300"));
    // A replied UDP flow expires from statewall's table 3 s after the last packet statewall
    // saw; on the fast path it sees none after the first exchanges, and only the pass over the
    // kernel's fast-path flows (every second here) keeps the entry.
    let config = format!("{QUIET}refresh = 1\n[conntrack.timeouts]\nudp_replied = 3\n");
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), &config);
    let sock = lab.tmp.join("sw").join("control.sock");
    let out = lab.tmp.join("udp-stream.json");
    lab.spawn(
        "cli",
        &format!(
            "exec python3 {apps} udp-stream {SRV_V4} 5300 100 9 {}",
            out.display()
        ),
    );
    std::thread::sleep(Duration::from_secs(7));
    let conns = output_text(&ctl(&sock, &["conns"]));
    assert!(
        conns
            .lines()
            .any(|l| l.contains("dport=5300") && l.contains("[OFFLOAD]")),
        "{conns}"
    );
    assert!(wait_for(10, || out.exists()), "udp-stream did not end");
    let stream: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("stream")).expect("json");
    let stats = sw.stop();
    eprintln!("{stream}\n{}", stats.line);
    assert_eq!(stream["lost"], 0, "{stream}");
    // One flow from start to end: never expired, never opened again; and the kernel carried
    // it (about 180 datagrams both ways).
    assert_eq!(stats.get("expired"), 0, "{}", stats.line);
    assert_eq!(stats.get("new"), 1, "{}", stats.line);
    assert!(stats.get("packets") < 20, "{}", stats.line);
    stats.assert_no_drops();
}

#[test]
fn the_sysctls_the_fast_path_relies_on_are_checked() {
    let lab = Lab::up();
    lab.ok(
        "gw",
        10,
        "sysctl -q -w net.netfilter.nf_conntrack_tcp_be_liberal=1 \
         net.netfilter.nf_conntrack_tcp_loose=0",
    );
    let sw = Statewall::start(&lab, &lab.tmp.join("sw"), QUIET);
    let log = sw.log_text();
    sw.stop();
    assert!(
        log.contains("nf_conntrack_tcp_be_liberal") && log.contains("does not check"),
        "{log}"
    );
    assert!(!log.contains("nf_conntrack_tcp_loose"), "{log}");
}
