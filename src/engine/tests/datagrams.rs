//! Flows without a state machine: UDP, ICMP echo and errors, other protocols.

use super::*;
use crate::testing::ip;

#[test]
fn udp_flow_unreplied_then_replied() {
    for p in LABS {
        let e = engine();
        let d = accept(&e, &udp(p, C, 30), 0);
        assert_eq!(d.state, Some(ConnState::Unreplied));
        let d = accept(&e, &udp(p, S, 60), 1);
        assert_eq!(d.state, Some(ConnState::Replied));
        // Answered once: still the unreplied 30 s (Linux). A stream (traffic after the
        // reply, more than 2 s after the flow opened) lives 120 s.
        accept(&e, &udp(p, C, 30), 3);
        assert_eq!(e.on_timer(Timestamp::from_secs(100)).expired, 0);
        assert_eq!(e.on_timer(Timestamp::from_secs(124)).expired, 1);
        let e = engine();
        accept(&e, &udp(p, C, 30), 0);
        accept(&e, &udp(p, S, 60), 1);
        assert_eq!(e.on_timer(Timestamp::from_secs(32)).expired, 1);
    }
}

#[test]
fn unreplied_udp_expires_quickly() {
    let e = engine();
    accept(&e, &udp(LABS[0], C, 30), 0);
    assert_eq!(e.on_timer(Timestamp::from_secs(31)).expired, 1);
}

#[test]
fn icmp_echo_and_unexpected_reply() {
    for p in LABS {
        let e = engine();
        dropped(&e, &echo(p, S, false), 0, DropReason::IcmpUnexpectedReply);
        accept(&e, &echo(p, C, true), 0);
        let d = accept(&e, &echo(p, S, false), 0);
        assert_eq!(d.state, Some(ConnState::Replied));
    }
}

#[test]
fn icmp_errors_must_relate_to_a_tracked_flow() {
    for p in LABS {
        let e = engine();
        let probe = udp(p, C, 10);
        dropped(&e, &unreachable(p, &probe), 0, DropReason::IcmpUnrelated);
        accept(&e, &probe, 0);
        let d = accept(&e, &unreachable(p, &probe), 0);
        assert_eq!(d.verdict, Verdict::Accept(Pass::Related));
        assert_eq!(e.stats().related, 1);
        // For a TCP connection too.
        let syn = p.tcp(C, SYN, 100, 0).build();
        accept(&e, &syn, 0);
        accept(&e, &unreachable(p, &syn), 0);
    }
}

#[test]
fn other_protocols_are_tracked_per_address_pair() {
    let e = engine();
    let p = LABS[0];
    let gre = |from: Side| {
        let (src, dst, _, _) = p.from(from);
        ip(src, dst, 47, &[0u8; 24]).build()
    };
    let d = accept(&e, &gre(C), 0);
    assert!(opened(&d));
    let d = accept(&e, &gre(S), 0);
    assert_eq!(d.state, Some(ConnState::Replied));
    assert_eq!(e.entries(), 1);
}
