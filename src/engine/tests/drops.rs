//! Drop lines: which dropped packets get an [`Event::Drop`], the per-source and global limits,
//! the report of suppressed lines, and no second line for a packet a `log` rule reports.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::config::SyslogConfig;
use crate::engine::DropLogConfig;
use crate::event::{DropEvent, Suppressed};
use crate::testing::URG;

/// An engine logging the product's default reasons within the default limits.
fn logging() -> Engine {
    Engine::new(EngineConfig {
        drop_log: SyslogConfig::default().drop_log(),
        ..Default::default()
    })
}

/// The drop events of `d`.
fn drops(d: &Decision) -> Vec<&DropEvent> {
    d.events
        .iter()
        .filter_map(|e| match e {
            Event::Drop(x) => Some(x),
            _ => None,
        })
        .collect()
}

#[test]
fn probes_policy_drops_and_rejects_get_one_line_each() {
    for p in LABS {
        let e = logging();
        for (flags, reason) in [
            (ACK, DropReason::NoConnection),
            (RST, DropReason::NoConnection),
            (0, DropReason::TcpNull),
            (FIN | PSH | URG, DropReason::TcpXmas),
            (FIN, DropReason::TcpFinNoAck),
            (SYN | FIN, DropReason::TcpSynFin),
        ] {
            let d = run(&e, &p.tcp(C, flags, 1, 1).build(), 0);
            assert_eq!(d.reason(), Some(reason));
            let lines = drops(&d);
            assert_eq!(lines.len(), 1, "{d:?}");
            assert_eq!(lines[0].reason, reason);
            assert_eq!(lines[0].packet.src, p.client);
            assert_eq!(lines[0].packet.ports(), (40000, 80));
        }
        for (policy, reason) in [
            ("policy drop\n", DropReason::PolicyDrop),
            ("policy reject\n", DropReason::PolicyReject),
        ] {
            let loaded = crate::rules::load_str("t.rules", policy).expect("rules");
            e.set_policy(Arc::new(loaded.policy));
            let d = run(&e, &p.tcp(C, SYN, 1, 0).build(), 0);
            assert_eq!(d.reason(), Some(reason));
            assert_eq!(drops(&d).len(), 1, "{d:?}");
            assert_eq!(drops(&d)[0].reason, reason);
        }
    }
}

#[test]
fn reasons_not_asked_for_get_no_line() {
    let p = LABS[0];
    // The library's default logs nothing.
    let quiet = engine();
    assert!(run(&quiet, &p.tcp(C, ACK, 1, 1).build(), 0)
        .events
        .is_empty());
    // An ICMP error of no tracked flow is not among the default reasons; it is once asked for.
    let error = unreachable(p, &udp(p, C, 10));
    let d = run(&logging(), &error, 0);
    assert_eq!(d.reason(), Some(DropReason::IcmpUnrelated));
    assert!(d.events.is_empty(), "{d:?}");
    let mut drop_log = SyslogConfig::default().drop_log();
    drop_log.reasons.push(DropReason::IcmpUnrelated);
    let e = Engine::new(EngineConfig {
        drop_log,
        ..Default::default()
    });
    assert_eq!(drops(&run(&e, &error, 0)).len(), 1);
    // A packet that does not decode has no fields to show.
    let d = run(&e, &[0x45, 0, 0], 0);
    assert!(d.reason().is_some() && d.events.is_empty());
}

#[test]
fn a_dropped_packet_a_log_rule_reports_gets_no_second_line() {
    let e = logging();
    let loaded = crate::rules::load_str("t.rules", "policy drop\ndrop udp log\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    let d = run(&e, &udp(LABS[0], C, 10), 0);
    assert_eq!(d.reason(), Some(DropReason::PolicyDrop));
    assert_eq!(d.events.len(), 1, "{d:?}");
    assert!(matches!(d.events[0], Event::RuleMatch(_)));
    // Once the rule lines are over their limit, neither line is written.
    for port in 0..600u16 {
        let d = run(&e, &LABS[0].ports(port, 53).udp(C).payload(1).build(), 0);
        assert!(drops(&d).is_empty());
    }
    // A TCP SYN is dropped by the policy, no rule logs it: the drop line.
    let d = run(&e, &LABS[0].tcp(C, SYN, 1, 0).build(), 0);
    assert_eq!(drops(&d).len(), 1, "{d:?}");
}

#[test]
fn four_full_scans_get_through_then_lines_are_suppressed_and_reported() {
    let e = logging();
    let p = LABS[0];
    let mut lines = 0;
    // nmap -sS/-sF/-sX/-sN over 100 ports at once (the SYNs dropped by the policy).
    let loaded = crate::rules::load_str("t.rules", "policy drop\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    for flags in [SYN, FIN, FIN | PSH | URG, 0] {
        for port in 1..=100u16 {
            let d = run(&e, &p.ports(40000, port).tcp(C, flags, 1, 0).build(), 0);
            lines += drops(&d).len();
        }
    }
    assert_eq!(lines, 400);
    assert_eq!(e.stats().logs_suppressed, 0);
    assert!(e.on_timer(Timestamp::from_secs(10)).events.is_empty());
    // Ten seconds later the source has 200 lines again (20 a second): of 300 more probes,
    // 100 are suppressed, counted, and reported once.
    let t = Timestamp::from_secs(10);
    let meta = PacketMeta::default();
    let more: usize = (0..300u16)
        .map(|port| {
            drops(&e.process(&p.ports(41000, port).tcp(C, 0, 1, 0).build(), &meta, t)).len()
        })
        .sum();
    assert_eq!(more, 200);
    let suppressed = e.stats().logs_suppressed;
    assert_eq!(suppressed, 100);
    let report = e.on_timer(Timestamp::from_secs(16)).events;
    assert_eq!(
        report,
        vec![Event::Suppressed(Suppressed {
            lines: suppressed,
            seconds: 16
        })]
    );
    assert!(e.on_timer(Timestamp::from_secs(30)).events.is_empty());
}

#[test]
fn the_global_limit_holds_for_many_sources() {
    let e = Engine::new(EngineConfig {
        drop_log: DropLogConfig {
            reasons: vec![DropReason::NoConnection],
            ..DropLogConfig::default()
        },
        ..Default::default()
    });
    let mut lines = 0;
    // Six /24s, 400 probes each: each group's burst would allow all of them.
    for net in 0..6u8 {
        let p = Pair {
            client: IpAddr::V4(Ipv4Addr::new(198, 18, net, 1)),
            ..LABS[0]
        };
        for port in 0..400u16 {
            lines += drops(&run(&e, &p.ports(40000, port).tcp(C, ACK, 1, 1).build(), 0)).len();
        }
    }
    assert_eq!(lines, 1000);
    assert_eq!(e.stats().logs_suppressed, 1400);
}

#[test]
fn a_segment_pickup_refuses_gets_its_line() {
    let e = logging();
    let loaded = crate::rules::load_str("t.rules", "policy drop\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    let d = run(&e, &LABS[1].tcp(C, ACK, 1000, 2000).build(), 1);
    assert_eq!(d.reason(), Some(DropReason::PolicyDrop));
    assert_eq!(drops(&d).len(), 1, "{d:?}");
}
