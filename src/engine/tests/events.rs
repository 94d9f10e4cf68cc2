//! Events through the engine: scan alerts and the blocks they trigger, none for normal life,
//! and rule `log` lines within their rate limit.

use std::net::IpAddr;

use super::*;
use crate::block::BlockEvent;
use crate::scan::ScanConfig;
use crate::testing::URG;

/// The scan alerts among `events`, as their syslog lines.
fn scan_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Scan(a) => Some(a.body()),
            _ => None,
        })
        .collect()
}

fn blocking_engine(extra: &str, limits: Limits) -> Engine {
    let scan: ScanConfig =
        serde_json::from_str(&format!(r#"{{"block": true, "block_level": 1{extra}}}"#))
            .expect("scan config");
    Engine::new(EngineConfig {
        scan: Some(scan),
        limits,
        ..Default::default()
    })
}

fn blocks_in(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Block(BlockEvent::Block { .. })))
        .count()
}

#[test]
fn forged_probes_raise_alerts_and_never_block() {
    for p in LABS {
        let e = blocking_engine("", Limits::default());
        let rules = "policy drop\nallow tcp to any port 80\n";
        e.set_policy(Arc::new(
            crate::rules::load_str("t.rules", rules)
                .expect("rules")
                .policy,
        ));
        // "From" the client: stealth shapes, SYNs and datagrams to dropped ports, half-open
        // SYNs whose RST the client's own stack would send: all forgeable.
        let mut events = Vec::new();
        for port in 1..=60u16 {
            let q = p.ports(40000, port);
            for flags in [FIN, FIN | PSH | URG, 0, ACK | FIN] {
                events.extend(run(&e, &q.tcp(C, flags, 1, 1).build(), 1).events);
            }
            events.extend(run(&e, &q.tcp(C, SYN, 1, 0).build(), 1).events);
            events.extend(run(&e, &p.ports(5000, port).udp(C).payload(1).build(), 1).events);
            let h = p.ports(41000 + port, 80);
            events.extend(run(&e, &h.tcp(C, SYN, 1, 0).build(), 1).events);
            events.extend(run(&e, &h.tcp(S, SYN | ACK, 900, 2).build(), 1).events);
            events.extend(run(&e, &h.tcp(C, RST, 2, 0).build(), 1).events);
        }
        events.extend(e.on_timer(Timestamp::from_secs(5)).events);
        events.extend(e.on_timer(Timestamp::from_secs(200)).events);
        let scans = scan_lines(&events);
        assert!(scans.iter().any(|l| l.contains("nmap=-sF")), "{scans:?}");
        assert!(
            scans.iter().all(|l| !l.contains("action=block")),
            "{scans:?}"
        );
        assert_eq!(blocks_in(&events), 0, "{events:?}");
        assert!(e.blocks(Timestamp::from_secs(200)).is_empty());
        // The "scanner" still connects.
        accept(&e, &p.ports(42000, 80).tcp(C, SYN, 1, 0).build(), 200);
    }
}

#[test]
fn a_connect_scan_blocks_its_source_only() {
    for p in LABS {
        let e = blocking_engine("", Limits::default());
        // Handshakes completed to 40 ports of the server: the scanner got every SYN/ACK.
        let mut events = Vec::new();
        for port in 1..=40u16 {
            let q = p.ports(40000 + port, port);
            for pkt in [
                q.tcp(C, SYN, 100, 0),
                q.tcp(S, SYN | ACK, 900, 101),
                q.tcp(C, ACK, 101, 901),
                q.tcp(C, RST | ACK, 101, 901),
            ] {
                let d = run(&e, &pkt.build(), 1);
                events.extend(d.events);
            }
        }
        let scans = scan_lines(&events);
        assert!(
            scans.iter().any(|l| l.contains("action=block")),
            "{scans:?}"
        );
        assert_eq!(blocks_in(&events), 1, "{events:?}");
        // The scanner is blocked now, even for a SYN the policy would allow...
        dropped(
            &e,
            &p.ports(50000, 80).tcp(C, SYN, 1, 0).build(),
            3,
            DropReason::Blocked,
        );
        // ...but the server can still reach it: only the source's own packets are dropped.
        let back = p.ports(50001, 22);
        accept(&e, &back.tcp(S, SYN, 1, 0).build(), 3);
        assert_eq!(e.blocks(Timestamp::from_secs(3)).len(), 1);
    }
}

#[test]
fn normal_connections_raise_no_alert() {
    let scan: ScanConfig = serde_json::from_str("{}").expect("scan config");
    let e = Engine::new(EngineConfig {
        scan: Some(scan),
        ..Default::default()
    });
    let mut lines = Vec::new();
    for i in 0..200u16 {
        let p = LABS[0].ports(30000 + i, 80);
        let pkts = [
            p.tcp(C, SYN, 100, 0),
            p.tcp(S, SYN | ACK, 900, 101),
            p.tcp(C, ACK, 101, 901),
            p.tcp(C, FIN | ACK, 101, 901),
            p.tcp(S, FIN | ACK, 901, 102),
            p.tcp(C, ACK, 102, 902),
        ];
        for pkt in pkts {
            let d = accept(&e, &pkt.build(), u64::from(i) / 10);
            lines.extend(d.events);
        }
    }
    lines.extend(e.on_timer(Timestamp::from_secs(60)).events);
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn rule_log_lines_are_rate_limited() {
    let e = engine();
    let loaded = crate::rules::load_str("t.rules", "policy drop\ndrop udp log\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    let mut logged = 0;
    for port in 0..2000u16 {
        let p = LABS[0].ports(port, 53).udp(C).payload(1).build();
        let d = run(&e, &p, 0);
        logged += d
            .events
            .iter()
            .filter(|e| matches!(e, Event::RuleMatch(_)))
            .count();
    }
    assert_eq!(logged, 500);
    assert_eq!(e.stats().logs_suppressed, 1500);
}

#[test]
fn a_scanner_rotating_through_its_ipv6_64_is_one_scanner() {
    let e = blocking_engine("", Limits::default());
    let server = LABS[1].server;
    let mut events = Vec::new();
    for port in 1..=40u16 {
        // A new address of 2001:db8:1:2::/64 for every probe.
        let src: IpAddr = format!("2001:db8:1:2:{port:x}::{port:x}")
            .parse()
            .expect("v6");
        let fin = crate::testing::tcp(src, server)
            .ports(40000, port)
            .flags(FIN)
            .build();
        events.extend(run(&e, &fin, 1).events);
    }
    let scans = scan_lines(&events);
    assert!(!scans.is_empty(), "{events:?}");
    // The last address it probed from, and its /64.
    assert!(scans[0].contains("SRC=2001:db8:1:2:"), "{}", scans[0]);
    assert!(scans[0].contains("GROUP=2001:db8:1:2::/64"), "{}", scans[0]);
    // And its connect scan, from rotating addresses, blocks the whole /64.
    for port in 1..=40u16 {
        let src: IpAddr = format!("2001:db8:1:2::{port:x}").parse().expect("v6");
        let q = crate::testing::Pair {
            client: src,
            server,
            cport: 41000 + port,
            sport: port,
        };
        for pkt in [
            q.tcp(C, SYN, 100, 0),
            q.tcp(S, SYN | ACK, 900, 101),
            q.tcp(C, ACK, 101, 901),
        ] {
            events.extend(run(&e, &pkt.build(), 2).events);
        }
    }
    let blocked: Vec<_> = e
        .blocks(Timestamp::from_secs(3))
        .iter()
        .map(|b| b.net.to_string())
        .collect();
    assert_eq!(blocked, ["2001:db8:1:2::/64"], "{events:?}");
    let other: IpAddr = "2001:db8:1:2:dead::beef".parse().expect("v6");
    let syn = crate::testing::tcp(other, server)
        .ports(1, 80)
        .flags(SYN)
        .build();
    dropped(&e, &syn, 3, DropReason::Blocked);
}
