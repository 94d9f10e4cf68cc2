//! Events through the engine: scan alerts and the blocks they trigger, none for normal life,
//! and rule `log` lines within their rate limit.

use super::*;
use crate::block::BlockEvent;
use crate::scan::ScanConfig;

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

#[test]
fn a_fin_scan_raises_one_alert_and_blocks_when_asked() {
    let scan: ScanConfig =
        serde_json::from_str(r#"{"block": true, "block_level": 1}"#).expect("scan config");
    let e = Engine::new(EngineConfig {
        scan: Some(scan),
        ..Default::default()
    });
    let mut events = Vec::new();
    for port in 1..=40u16 {
        let fin = LABS[0].ports(40000, port).tcp(C, FIN, 1, 0).build();
        let d = run(&e, &fin, 1);
        // Dropped as a FIN probe until the block lands, then as blocked.
        assert!(matches!(
            d.reason(),
            Some(DropReason::TcpFinNoAck | DropReason::Blocked)
        ));
        events.extend(d.events);
    }
    events.extend(e.on_timer(Timestamp::from_secs(2)).events);
    let scans = scan_lines(&events);
    assert!(!scans.is_empty(), "{events:?}");
    assert!(scans[0].starts_with("SCAN "), "{}", scans[0]);
    assert!(scans[0].contains("nmap=-sF"), "{}", scans[0]);
    assert!(scans[0].contains("SRC=198.51.100.2"), "{}", scans[0]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Block(BlockEvent::Block { .. }))),
        "{events:?}"
    );
    // The scanner is blocked now, even for a SYN the policy would allow.
    dropped(
        &e,
        &LABS[0].tcp(C, SYN, 1, 0).build(),
        3,
        DropReason::Blocked,
    );
    assert_eq!(e.blocks(Timestamp::from_secs(3)).len(), 1);
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
