//! Adoption from the kernel table and the pair roles, through `Engine::process`.

use std::net::IpAddr;
use std::sync::Arc;

use super::super::{Engine, EngineConfig};
use super::Role;
use crate::adopt::{Adoption, KernelFlow, KernelTcp};
use crate::conntrack::TcpState;
use crate::packet::PacketMeta;
use crate::proto;
use crate::ratelimit::ProbesConfig;
use crate::rules::load_str;
use crate::testing::{Pair, Side, ACK, FIN, PSH, RST, SYN, URG};
use crate::time::Timestamp;
use crate::verdict::{Action, DropReason, Pass, ProbeMode, Verdict};

fn engine() -> Engine {
    let probes = ProbesConfig {
        respond: ProbeMode::Rst,
        ..ProbesConfig::default()
    };
    Engine::new(EngineConfig {
        probes,
        ..EngineConfig::default()
    })
}

fn with_rules(e: &Engine, text: &str) {
    let loaded = load_str("t.rules", text).unwrap_or_else(|d| panic!("{d:?}"));
    e.set_policy(Arc::new(loaded.policy));
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

const META: PacketMeta<'static> = PacketMeta {
    wire_len: None,
    in_iface: None,
    out_iface: None,
    mac: None,
    fastpath: false,
    admitted: false,
};

/// The kernel's view of an established TCP flow of `p`, opened by its client; `known`: the
/// kernel saw the handshake's options (window scale 7 both ways, SACK).
fn kernel_tcp(p: Pair, state: TcpState, known: bool) -> KernelFlow {
    KernelFlow {
        proto: proto::TCP,
        orig: (p.client, p.cport),
        resp: (p.server, p.sport),
        tcp: Some(KernelTcp {
            state,
            scale: if known { [7, 7] } else { [0, 0] },
            window_scale: [known, known],
            sack_perm: [known, known],
        }),
        seen_reply: true,
        assured: true,
        timeout: Some(431_999),
    }
}

fn kernel_udp(p: Pair) -> KernelFlow {
    KernelFlow {
        proto: proto::UDP,
        orig: (p.client, p.cport),
        resp: (p.server, p.sport),
        tcp: None,
        seen_reply: true,
        assured: true,
        timeout: Some(120),
    }
}

fn verdict(e: &Engine, bytes: &[u8], secs: u64) -> Verdict {
    e.process(bytes, &META, at(secs)).verdict
}

const ACCEPT: Verdict = Verdict::Accept(Pass::Tracked);

#[test]
fn an_adopted_flow_passes_both_ways_and_its_windows_are_learned() {
    for p in Pair::BOTH {
        let e = engine();
        assert_eq!(
            e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1)),
            Adoption::Adopted
        );
        // Mid-stream, at whatever sequence numbers the connection has reached.
        let c = p
            .tcp(Side::Client, ACK | PSH, 1_000_000, 5_000_000)
            .window(500);
        assert_eq!(verdict(&e, &c.payload(100).build(), 2), ACCEPT);
        let s = p.tcp(Side::Server, ACK, 5_000_000, 1_000_100).window(500);
        assert_eq!(verdict(&e, &s.payload(1000).build(), 2), ACCEPT);
        // Scale 7: a window of 500 is 64000 bytes (the first segment of each side is its guess
        // of how far it may send, as the kernel makes it); beyond it is invalid.
        let inside = p.tcp(Side::Server, ACK, 5_001_000 + 60_000, 1_000_100);
        assert_eq!(verdict(&e, &inside.payload(10).build(), 2), ACCEPT);
        let beyond = p.tcp(Side::Server, ACK, 5_001_000 + 200_000, 1_000_100);
        let beyond = beyond.payload(10);
        assert_eq!(
            verdict(&e, &beyond.build(), 2),
            Verdict::Drop(DropReason::SeqAboveWindow)
        );
        assert_eq!(e.stats().adopted, 1);
        assert_eq!(e.stats().new_connections, 0);
    }
}

#[test]
fn a_replicated_flow_without_its_window_scale_is_tracked_liberally() {
    let p = Pair::V4;
    let e = engine();
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, false), at(1));
    let c = p.tcp(Side::Client, ACK, 1_000_000, 5_000_000).window(500);
    assert_eq!(verdict(&e, &c.payload(100).build(), 2), ACCEPT);
    // The real scale may be 14: a jump far beyond the unscaled window passes (and widens).
    let s = p.tcp(Side::Server, ACK, 5_000_000 + 3_000_000, 1_000_100);
    assert_eq!(verdict(&e, &s.payload(1000).build(), 2), ACCEPT);
    // The state rules stay strict: data after a RST is dropped.
    let rst = p.tcp(Side::Client, RST | ACK, 1_000_100, 8_001_000);
    assert!(e.process(&rst.build(), &META, at(3)).accepted());
    let data = p.tcp(Side::Client, ACK, 1_000_100, 8_001_000).payload(10);
    assert_eq!(
        verdict(&e, &data.build(), 3),
        Verdict::Drop(DropReason::DataAfterRst)
    );
}

#[test]
fn adoption_has_no_grace_limit() {
    let p = Pair::V4;
    let e = engine();
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
    // Idle for two hours: the flow is still there (blind pickup's grace has nothing to do
    // with it), its entry lives as long as the kernel's.
    let c = p.tcp(Side::Client, ACK, 1_000, 2_000).payload(1);
    assert_eq!(verdict(&e, &c.build(), 7201), ACCEPT);
}

#[test]
fn the_first_segment_may_close_and_is_never_answered() {
    for first in [FIN | ACK, RST, RST | ACK] {
        let p = Pair::V6;
        let e = engine();
        e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
        let seg = p.tcp(Side::Server, first, 9_000, 3_000);
        let d = e.process(&seg.build(), &META, at(2));
        assert!(d.accepted(), "{first:#x}: {:?}", d.verdict);
        assert_eq!(d.action, None);
    }
}

#[test]
fn the_rules_judge_the_first_packet_of_an_adopted_flow() {
    let p = Pair::V4;
    let e = engine();
    with_rules(&e, "policy drop\nallow tcp to 203.0.113.2 port 443\n");
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
    let c = p.tcp(Side::Client, ACK, 1_000, 2_000).payload(10);
    assert_eq!(
        verdict(&e, &c.build(), 2),
        Verdict::Drop(DropReason::AdoptRefused)
    );
    // Closed: every later packet, either way, is dropped.
    let s = p.tcp(Side::Server, ACK, 2_000, 1_010);
    assert_eq!(
        verdict(&e, &s.build(), 2),
        Verdict::Drop(DropReason::Revoked)
    );
    // An allowed one passes, and is judged once.
    let ok = Pair::V4.ports(40001, 443);
    e.adopt_kernel(&kernel_tcp(ok, TcpState::Established, true), at(1));
    let c = ok.tcp(Side::Client, ACK, 1_000, 2_000).payload(10);
    assert_eq!(verdict(&e, &c.build(), 2), ACCEPT);
    with_rules(&e, "policy drop\n");
    let c = ok.tcp(Side::Client, ACK, 1_010, 2_000).payload(10);
    assert_eq!(
        verdict(&e, &c.build(), 2),
        ACCEPT,
        "judged once, as any flow"
    );
}

#[test]
fn the_first_packet_is_judged_in_the_flows_orientation_with_its_interfaces() {
    let p = Pair::V4;
    let e = engine();
    with_rules(
        &e,
        "policy drop\nallow in lan0 out wan0 tcp to 203.0.113.2 port 80\n",
    );
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
    // The server speaks first after a failover: in wan0, out lan0 — the client's flow seen
    // from the client is in lan0, out wan0, which the rule allows.
    let meta = PacketMeta {
        wire_len: None,
        in_iface: Some("wan0"),
        out_iface: Some("lan0"),
        mac: None,
        fastpath: false,
        admitted: false,
    };
    let s = p.tcp(Side::Server, ACK, 2_000, 1_000).payload(10);
    assert_eq!(e.process(&s.build(), &meta, at(2)).verdict, ACCEPT);
    // The same flow arriving on the wrong interfaces is refused.
    let other = Pair::V4.ports(40002, 80);
    e.adopt_kernel(&kernel_tcp(other, TcpState::Established, true), at(1));
    let s = other.tcp(Side::Server, ACK, 2_000, 1_000).payload(10);
    let wrong = PacketMeta {
        wire_len: None,
        in_iface: Some("lan0"),
        out_iface: Some("wan0"),
        mac: None,
        fastpath: false,
        admitted: false,
    };
    assert_eq!(
        e.process(&s.build(), &wrong, at(2)).verdict,
        Verdict::Drop(DropReason::AdoptRefused)
    );
}

#[test]
fn udp_flows_are_adopted_and_judged_too() {
    let p = Pair::V6.ports(5353, 53);
    let e = engine();
    with_rules(&e, "policy drop\nallow udp to 2001:db8:2::2 port 53\n");
    assert_eq!(e.adopt_kernel(&kernel_udp(p), at(1)), Adoption::Adopted);
    let reply = p.udp(Side::Server).payload(20).build();
    assert_eq!(verdict(&e, &reply, 2), ACCEPT);
    let refused = Pair::V6.ports(5353, 54);
    e.adopt_kernel(&kernel_udp(refused), at(1));
    let reply = refused.udp(Side::Server).payload(20).build();
    assert_eq!(
        verdict(&e, &reply, 2),
        Verdict::Drop(DropReason::AdoptRefused)
    );
}

#[test]
fn an_adoption_follows_the_kernel_until_a_packet_uses_it() {
    let p = Pair::V4;
    let e = engine();
    let f = kernel_tcp(p, TcpState::Established, true);
    assert_eq!(e.adopt_kernel(&f, at(1)), Adoption::Adopted);
    let closing = kernel_tcp(p, TcpState::TimeWait, true);
    assert_eq!(e.adopt_kernel(&closing, at(2)), Adoption::Refreshed);
    let conns = e.connections(at(2), |_| true);
    assert_eq!(conns[0].state, "TIME_WAIT");
    // The kernel's entry goes: so does the adoption.
    assert!(e.forget_kernel(&f));
    assert_eq!(e.entries(), 0);
    // Once a packet used it, the entry is statewall's own.
    e.adopt_kernel(&f, at(3));
    let c = p.tcp(Side::Client, ACK, 1_000, 2_000).payload(10);
    assert_eq!(verdict(&e, &c.build(), 3), ACCEPT);
    assert_eq!(e.adopt_kernel(&closing, at(4)), Adoption::Known);
    assert!(!e.forget_kernel(&f));
    assert_eq!(e.connections(at(4), |_| true)[0].state, "ESTABLISHED");
}

#[test]
fn a_flow_statewall_opened_itself_is_known() {
    let p = Pair::V4;
    let e = engine();
    assert!(e
        .process(&p.tcp(Side::Client, SYN, 100, 0).build(), &META, at(1))
        .accepted());
    let f = kernel_tcp(p, TcpState::Established, true);
    assert_eq!(e.adopt_kernel(&f, at(1)), Adoption::Known);
    assert_eq!(e.stats().adopted, 0);
}

#[test]
fn a_standby_drops_unknown_mid_stream_segments_silently_and_still_answers_probes() {
    let p = Pair::V4;
    let e = engine();
    assert_eq!(e.role(at(1)), Role::Active);
    e.stand_by(at(1));
    assert_eq!(e.role(at(1)), Role::Standby);
    for flags in [ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | ACK] {
        let d = e.process(&p.tcp(Side::Client, flags, 1, 1).build(), &META, at(2));
        assert_eq!(
            d.verdict,
            Verdict::Drop(DropReason::TakeoverUnknown),
            "{flags:#x}"
        );
        assert_eq!(d.action, None, "{flags:#x}");
        assert!(d.events.is_empty());
    }
    // Clear probe shapes keep their reasons and their answer.
    for (flags, reason) in [
        (0, DropReason::TcpNull),
        (FIN | PSH | URG, DropReason::TcpXmas),
        (SYN | FIN, DropReason::TcpSynFin),
        (FIN, DropReason::TcpFinNoAck),
    ] {
        let d = e.process(&p.tcp(Side::Client, flags, 1, 0).build(), &META, at(2));
        assert_eq!(d.verdict, Verdict::Drop(reason));
        assert!(
            matches!(d.action, Some(Action::SendRst(_))),
            "{reason}: {:?}",
            d.action
        );
    }
    // A SYN is a new connection for the rules.
    let d = e.process(&p.tcp(Side::Client, SYN, 1, 0).build(), &META, at(2));
    assert_eq!(d.verdict, Verdict::Accept(Pass::Opened));
}

#[test]
fn the_takeover_window_closes() {
    let p = Pair::V4.ports(41000, 80);
    let e = engine();
    e.stand_by(at(1));
    e.take_over(at(1), at(10));
    assert_eq!(e.role(at(5)), Role::TakingOver { secs_left: 5 });
    let ack = p.tcp(Side::Client, ACK, 1, 1).build();
    assert_eq!(
        verdict(&e, &ack, 9),
        Verdict::Drop(DropReason::TakeoverUnknown)
    );
    assert_eq!(e.role(at(10)), Role::Active);
    let d = e.process(&ack, &META, at(10));
    assert_eq!(d.verdict, Verdict::Drop(DropReason::NoConnection));
    assert!(matches!(d.action, Some(Action::SendRst(_))));
}

#[test]
fn an_ack_of_data_sent_before_the_adoption_passes_once() {
    // A download through a restarted gateway: the server's first segment seen is a
    // retransmission of old data; the client had received more before the restart, and its ACK
    // acknowledges it. That ACK is not "unsent data": it moves the server's end up.
    for p in Pair::BOTH {
        let e = engine();
        e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
        let old = p.tcp(Side::Server, ACK, 5_000_000, 1_000_000).window(500);
        assert_eq!(verdict(&e, &old.payload(1000).build(), 2), ACCEPT);
        let ack = p.tcp(Side::Client, ACK, 1_000_000, 5_030_000).window(500);
        assert_eq!(verdict(&e, &ack.build(), 2), ACCEPT);
        let next = p.tcp(Side::Server, ACK, 5_030_000, 1_000_000);
        assert_eq!(verdict(&e, &next.payload(1000).build(), 2), ACCEPT);
        // Once only, and from then on acknowledging unsent data is invalid again.
        let ahead = p.tcp(Side::Client, ACK, 1_000_000, 5_031_000 + 100_000);
        assert_eq!(
            verdict(&e, &ahead.build(), 2),
            Verdict::Drop(DropReason::AckUnsentData)
        );
    }
}

#[test]
fn an_ack_beyond_the_senders_window_is_still_unsent_data() {
    let p = Pair::V4;
    let e = engine();
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
    let old = p.tcp(Side::Server, ACK, 5_000_000, 1_000_000).window(500);
    assert_eq!(verdict(&e, &old.payload(1000).build(), 2), ACCEPT);
    // The client's window is 500 << 7 = 64000 bytes: the server cannot have sent 10 MB more.
    let far = p.tcp(Side::Client, ACK, 1_000_000, 15_000_000).window(500);
    assert_eq!(
        verdict(&e, &far.build(), 2),
        Verdict::Drop(DropReason::AckUnsentData)
    );
}

#[test]
fn standing_by_keeps_the_windows_as_lower_bounds_and_judges_the_next_packet_again() {
    let p = Pair::V4;
    let e = engine();
    // A connection statewall follows from its handshake.
    let steps = [
        p.tcp(Side::Client, SYN, 100, 0).wscale(2).sack_permitted(),
        p.tcp(Side::Server, SYN | ACK, 500, 101)
            .wscale(2)
            .sack_permitted(),
        p.tcp(Side::Client, ACK, 101, 501),
    ];
    for s in &steps {
        assert!(e.process(&s.build(), &META, at(1)).accepted());
    }
    // The peer gateway carries it for a while: far beyond the windows statewall knew.
    assert_eq!(e.stand_by(at(2)), 1);
    let later = p.tcp(Side::Client, ACK, 101 + 10_000_000, 501 + 20_000_000);
    assert_eq!(verdict(&e, &later.payload(100).build(), 3), ACCEPT);
    let back = p
        .tcp(Side::Server, ACK, 501 + 20_000_000, 101 + 10_000_100)
        .window(1000);
    assert_eq!(verdict(&e, &back.build(), 3), ACCEPT);
    let inside = p.tcp(
        Side::Server,
        ACK,
        501 + 20_000_000 + 2_000,
        101 + 10_000_100,
    );
    assert_eq!(verdict(&e, &inside.payload(10).build(), 3), ACCEPT);
    // It takes over again and forwards the flow: after a few segments each way the windows
    // are judged strictly again, with the scale (2) of the handshake.
    e.take_over(at(4), at(4));
    let (mut c, mut s) = (101 + 10_000_100, 501 + 20_002_010);
    for _ in 0..4 {
        let up = p.tcp(Side::Client, ACK | PSH, c, s).window(1000);
        assert_eq!(verdict(&e, &up.payload(10).build(), 4), ACCEPT);
        c += 10;
        let down = p.tcp(Side::Server, ACK, s, c).window(1000);
        assert_eq!(verdict(&e, &down.payload(10).build(), 4), ACCEPT);
        s += 10;
    }
    let far = p.tcp(Side::Server, ACK, s + 1_000_000, c).payload(10);
    assert_eq!(
        verdict(&e, &far.build(), 4),
        Verdict::Drop(DropReason::SeqAboveWindow)
    );
    // And the rules judged it again (a flow the rules refuse today is closed).
    let refused = Pair::V4.ports(40009, 80);
    for s in [
        refused.tcp(Side::Client, SYN, 100, 0),
        refused.tcp(Side::Server, SYN | ACK, 500, 101),
        refused.tcp(Side::Client, ACK, 101, 501),
    ] {
        assert!(e.process(&s.build(), &META, at(4)).accepted());
    }
    with_rules(&e, "policy drop\n");
    e.stand_by(at(5));
    let c = refused.tcp(Side::Client, ACK, 101, 501).payload(1);
    assert_eq!(
        verdict(&e, &c.build(), 6),
        Verdict::Drop(DropReason::AdoptRefused)
    );
}

#[test]
fn adoption_respects_the_table_limit() {
    let e = Engine::new(EngineConfig {
        limits: crate::conntrack::Limits {
            max_entries: 1,
            ..crate::conntrack::Limits::default()
        },
        ..EngineConfig::default()
    });
    let a = kernel_tcp(Pair::V4, TcpState::Established, true);
    let b = kernel_tcp(Pair::V4.ports(40001, 80), TcpState::Established, true);
    assert_eq!(e.adopt_kernel(&a, at(1)), Adoption::Adopted);
    // Assured entries are not evicted for another.
    assert_eq!(e.adopt_kernel(&b, at(1)), Adoption::NoRoom);
    let mixed = KernelFlow {
        resp: (
            IpAddr::from([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            80,
        ),
        ..a
    };
    assert_eq!(e.adopt_kernel(&mixed, at(1)), Adoption::Unsupported);
}

#[test]
fn the_stragglers_of_a_live_flow_pass_a_new_standby() {
    // A download statewall followed from its handshake (scale 7 both ways): the server
    // advertises a small window (100 << 7 = 12800 bytes), the client a large one (256000).
    for p in Pair::BOTH {
        let e = engine();
        let steps = [
            p.tcp(Side::Client, SYN, 100, 0).wscale(7).sack_permitted(),
            p.tcp(Side::Server, SYN | ACK, 500, 101)
                .wscale(7)
                .sack_permitted(),
            p.tcp(Side::Client, ACK, 101, 501).window(2000),
            p.tcp(Side::Client, ACK | PSH, 101, 501)
                .window(2000)
                .payload(1000),
            p.tcp(Side::Server, ACK, 501, 1101)
                .window(100)
                .payload(1448),
            p.tcp(Side::Server, ACK, 1949, 1101)
                .window(100)
                .payload(1448),
            p.tcp(Side::Client, ACK, 1101, 3397).window(2000),
            p.tcp(Side::Server, ACK, 3397, 1101)
                .window(100)
                .payload(1448),
            p.tcp(Side::Client, ACK, 1101, 4845).window(2000),
        ];
        for s in &steps {
            let d = e.process(&s.build(), &META, at(1));
            assert!(d.accepted(), "{p:?} before: {:?}", d.verdict);
        }
        // keepalived says BACKUP: VRRP moves the address, and the segments in flight still
        // reach this gateway for a moment, while the peer forwards the rest of the flow.
        e.stand_by(at(2));
        let stragglers = [
            // The next segment of the download.
            (
                "next data",
                p.tcp(Side::Server, ACK, 4845, 1101)
                    .window(100)
                    .payload(1448),
            ),
            // Further on: the client's ACKs of the segments between went through the peer;
            // inside the window the client advertised (256000 bytes from 4845).
            (
                "data the peer's ACKs allowed",
                p.tcp(Side::Server, ACK, 4845 + 1448 * 20, 1101)
                    .window(100)
                    .payload(1448),
            ),
            (
                "its ACK",
                p.tcp(Side::Client, ACK, 1101, 4845 + 1448 * 21)
                    .window(2000),
            ),
            (
                "client data",
                p.tcp(Side::Client, ACK | PSH, 1101, 4845 + 1448 * 21)
                    .window(2000)
                    .payload(100),
            ),
            (
                "a retransmission",
                p.tcp(Side::Server, ACK, 4845, 1101)
                    .window(100)
                    .payload(1448),
            ),
            (
                "a delayed ACK of data sent before the standby",
                p.tcp(Side::Client, ACK, 1201, 3397).window(2000),
            ),
            (
                "an ACK of data that went through the peer",
                p.tcp(Side::Client, ACK, 1201, 4845 + 1448 * 30)
                    .window(2000),
            ),
            (
                "the data after it",
                p.tcp(Side::Server, ACK, 4845 + 1448 * 30, 1201)
                    .window(100)
                    .payload(1448),
            ),
            (
                "another ACK of data that went through the peer",
                p.tcp(Side::Client, ACK, 1201, 4845 + 1448 * 40)
                    .window(2000),
            ),
        ];
        for (what, s) in &stragglers {
            let d = e.process(&s.build(), &META, at(2));
            assert!(d.accepted(), "{p:?} {what}: {:?}", d.verdict);
        }
        // Out-of-state probes on the flow's tuple are still dropped.
        for (flags, reason) in [
            (0, DropReason::TcpNull),
            (FIN | PSH | URG, DropReason::TcpXmas),
            (SYN | FIN, DropReason::TcpSynFin),
        ] {
            let probe = p.tcp(Side::Client, flags, 1201, 0);
            assert_eq!(verdict(&e, &probe.build(), 2), Verdict::Drop(reason));
        }
        assert_eq!(e.stats().new_connections, 1);
    }
}

#[test]
fn a_plain_restart_adopts_and_is_active_at_once() {
    // What the daemon does after a restart without a pair: adopt the kernel table, no
    // takeover window (the table kept every flow statewall admitted; none is late).
    let p = Pair::V4;
    let e = engine();
    e.adopt_kernel(&kernel_tcp(p, TcpState::Established, true), at(1));
    assert_eq!(e.role(at(1)), Role::Active);
    let c = p.tcp(Side::Client, ACK, 1_000, 2_000).payload(10);
    assert_eq!(verdict(&e, &c.build(), 1), ACCEPT);
    // Any other mid-stream segment is of no connection, answered at once (a scan's ACK).
    let other = Pair::V4.ports(41000, 81);
    let d = e.process(&other.tcp(Side::Client, ACK, 1, 1).build(), &META, at(1));
    assert_eq!(d.verdict, Verdict::Drop(DropReason::NoConnection));
    assert!(matches!(d.action, Some(Action::SendRst(_))));
}
