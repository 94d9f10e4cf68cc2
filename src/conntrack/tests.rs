//! [`Conntrack`] as a whole: what `track` says of each kind of packet, what `open` does with
//! both families' tables, the milestones, and the walks. The state machine itself is tested in
//! `tcp/tests/`.

use super::*;
use crate::packet::{PacketMeta, Seq};
use crate::testing::{icmp, ip, udp, Pair, Side, ACK, FIN, PSH, RST, SYN};

fn conntrack() -> Conntrack {
    Conntrack::new(Timeouts::default(), Limits::default())
}

fn track(ct: &Conntrack, bytes: &[u8], secs: u64) -> Track {
    let pkt = Packet::decode(bytes, &PacketMeta::default()).expect("decodes");
    ct.track(&pkt, Timestamp::from_secs(secs))
}

/// Tracks a packet that opens a flow, and opens it.
fn open(ct: &Conntrack, bytes: &[u8], secs: u64) -> ConnState {
    match track(ct, bytes, secs) {
        Track::New(o) => ct.open(o).expect("room").state,
        other => panic!("does not open: {other:?}"),
    }
}

/// Tracks a packet of a known flow.
fn judged(ct: &Conntrack, bytes: &[u8], secs: u64) -> Tracked {
    match track(ct, bytes, secs) {
        Track::Judged(t) => t,
        other => panic!("not judged by a flow: {other:?}"),
    }
}

/// The flow of `pair`, originator (the client) first.
fn flow(pair: Pair, proto: u8) -> Flow {
    Flow {
        proto,
        src: pair.client,
        dst: pair.server,
        sport: pair.cport,
        dport: pair.sport,
    }
}

#[test]
fn what_track_says_of_each_kind_of_packet() {
    for p in Pair::BOTH {
        let ct = conntrack();
        let c = Side::Client;
        assert!(matches!(
            track(&ct, &p.tcp(c, SYN, 1, 0).build(), 0),
            Track::New(_)
        ));
        assert!(matches!(
            track(&ct, &p.tcp(c, ACK, 1, 1).build(), 0),
            Track::MidStream(_)
        ));
        // What an established connection carries is adoptable (FIN/ACK too).
        assert!(matches!(
            track(&ct, &p.tcp(c, FIN | ACK, 1, 1).build(), 0),
            Track::MidStream(_)
        ));
        for flags in [RST, RST | ACK, SYN | ACK] {
            assert_eq!(
                track(&ct, &p.tcp(c, flags, 1, 1).build(), 0),
                Track::Stray(DropReason::NoConnection)
            );
        }
        assert_eq!(
            track(&ct, &p.tcp(c, 0, 1, 0).build(), 0),
            Track::Stray(DropReason::TcpNull)
        );
        assert_eq!(
            track(&ct, &p.tcp(c, FIN, 1, 0).build(), 0),
            Track::Stray(DropReason::TcpFinNoAck)
        );
        assert!(matches!(track(&ct, &p.udp(c).build(), 0), Track::New(_)));
        assert!(matches!(
            track(&ct, &p.echo(c, true).build(), 0),
            Track::New(_)
        ));
        let reply = judged(&ct, &p.echo(Side::Server, false).build(), 0);
        assert_eq!(
            reply.verdict,
            Verdict::Drop(DropReason::IcmpUnexpectedReply)
        );
        let advert = icmp(p.server, p.client).kind(if p.is_v6() { 134 } else { 9 }, 0);
        assert_eq!(track(&ct, &advert.build(), 0), Track::Stateless);
        let frag = udp(p.client, p.server)
            .payload(16)
            .fragment(4, false)
            .build();
        // A later fragment whose first fragment never passed: no rule could judge it.
        assert_eq!(
            judged(&ct, &frag, 0).verdict,
            Verdict::Drop(DropReason::FragmentOrphan)
        );
        let gre = ip(p.client, p.server, 47, &[0; 8]).build();
        assert!(matches!(track(&ct, &gre, 0), Track::New(_)));
        assert_eq!(ct.entries(), 0, "tracking alone opens nothing");
    }
}

#[test]
fn a_tcp_handshake_reports_its_milestones() {
    for p in Pair::BOTH {
        let ct = conntrack();
        assert_eq!(
            open(&ct, &p.tcp(Side::Client, SYN, 100, 0).build(), 0),
            ConnState::Tcp(TcpState::SynSent)
        );
        let t = judged(&ct, &p.tcp(Side::Server, SYN | ACK, 900, 101).build(), 0);
        assert_eq!(t.state, Some(ConnState::Tcp(TcpState::SynRecv)));
        assert_eq!(t.milestone, Some(Milestone::Replied(flow(p, proto::TCP))));
        let t = judged(&ct, &p.tcp(Side::Client, ACK, 101, 901).build(), 0);
        assert_eq!(
            t.milestone,
            Some(Milestone::Established(flow(p, proto::TCP)))
        );
        let t = judged(
            &ct,
            &p.tcp(Side::Client, ACK | PSH, 101, 901).payload(10).build(),
            0,
        );
        assert_eq!(
            (t.verdict, t.milestone),
            (Verdict::Accept(Pass::Tracked), None)
        );
        let listed = ct.connections(Timestamp::from_secs(1), |_| true);
        assert!(listed[0].assured);
    }
}

#[test]
fn a_refused_handshake_and_a_first_udp_reply() {
    for p in Pair::BOTH {
        let ct = conntrack();
        open(&ct, &p.tcp(Side::Client, SYN, 100, 0).build(), 0);
        let t = judged(&ct, &p.tcp(Side::Server, RST | ACK, 0, 101).build(), 0);
        assert_eq!(t.state, Some(ConnState::Tcp(TcpState::Close)));
        assert_eq!(t.milestone, Some(Milestone::Refused(flow(p, proto::TCP))));

        let u = p.ports(5353, 53);
        open(&ct, &u.udp(Side::Client).build(), 0);
        let t = judged(&ct, &u.udp(Side::Server).build(), 1);
        assert_eq!(t.state, Some(ConnState::Replied));
        assert_eq!(t.milestone, Some(Milestone::Replied(flow(u, proto::UDP))));
        // Only the first reply is a milestone.
        assert_eq!(judged(&ct, &u.udp(Side::Server).build(), 2).milestone, None);
    }
}

#[test]
fn icmp_errors_are_related_to_the_flow_they_quote() {
    for p in Pair::BOTH {
        let ct = conntrack();
        let u = p.ports(5353, 9999);
        let probe = u.udp(Side::Client).payload(4).build();
        let error = icmp(p.server, p.client).port_unreachable(&probe).build();
        let t = judged(&ct, &error, 0);
        assert_eq!(t.verdict, Verdict::Drop(DropReason::IcmpUnrelated));
        open(&ct, &probe, 0);
        let t = judged(&ct, &error, 0);
        assert_eq!(t.verdict, Verdict::Accept(Pass::Related));
        assert_eq!(
            t.milestone,
            Some(Milestone::Unreachable(flow(u, proto::UDP)))
        );
        // A time exceeded is related too, but not a refusal.
        let late = icmp(p.server, p.client).time_exceeded(&probe).build();
        assert_eq!(judged(&ct, &late, 0).milestone, None);
        // An error that does not travel back to the quoted packet's sender is not related.
        let wrong_way = icmp(p.client, p.server).port_unreachable(&probe).build();
        assert_eq!(
            judged(&ct, &wrong_way, 0).verdict,
            Verdict::Drop(DropReason::IcmpUnrelated)
        );
    }
}

#[test]
fn one_limit_for_both_families_and_early_drop_from_either() {
    let ct = Conntrack::new(
        Timeouts::default(),
        Limits {
            max_entries: 2,
            per_source: 100,
            early_drop_scan: 16,
            ..Limits::default()
        },
    );
    let [v4, v6] = Pair::BOTH;
    open(&ct, &v4.udp(Side::Client).build(), 0);
    open(&ct, &v6.udp(Side::Client).build(), 1);
    // The IPv4 flow is the older one: a third flow (IPv6) evicts it.
    open(&ct, &v6.ports(1, 2).udp(Side::Client).build(), 2);
    assert_eq!(ct.entries(), 2);
    assert_eq!(ct.totals().early_drops, 1);
    assert!(matches!(
        track(&ct, &v4.udp(Side::Server).build(), 3),
        Track::New(_)
    ));
    // Assured flows (UDP streams: answered, and still busy 2 s after they opened) are
    // never evicted: the table refuses.
    for f in [v6, v6.ports(1, 2)] {
        judged(&ct, &f.udp(Side::Server).build(), 3);
        judged(&ct, &f.udp(Side::Client).build(), 5);
    }
    let Track::New(o) = track(&ct, &v4.udp(Side::Client).build(), 5) else {
        panic!("opens")
    };
    assert_eq!(ct.open(o), Err(DropReason::TableFull));
}

#[test]
fn sweep_reports_each_flow_originator_first() {
    let ct = conntrack();
    let p = Pair::V6.ports(5353, 53);
    open(&ct, &p.udp(Side::Client).build(), 0);
    let mut closed = Vec::new();
    assert_eq!(
        ct.sweep(Timestamp::from_secs(10), |r, _| closed.push(r.flow)),
        0
    );
    assert_eq!(
        ct.sweep(Timestamp::from_secs(31), |r, _| closed.push(r.flow)),
        1
    );
    assert_eq!(closed, vec![flow(p, proto::UDP)]);
    assert_eq!((ct.entries(), ct.totals().expired), (0, 1));
}

#[test]
fn revoke_closes_what_the_judge_refuses_and_hands_it_the_next_sequence_numbers() {
    let ct = conntrack();
    let p = Pair::V4;
    open(&ct, &p.tcp(Side::Client, SYN, 100, 0).build(), 0);
    judged(&ct, &p.tcp(Side::Server, SYN | ACK, 900, 101).build(), 0);
    judged(&ct, &p.tcp(Side::Client, ACK, 101, 901).build(), 0);
    open(&ct, &p.ports(5353, 53).udp(Side::Client).build(), 0);
    let mut seen = Vec::new();
    let now = Timestamp::from_secs(1);
    let revoked = ct.revoke(now, |f, next| {
        seen.push((f.flow.proto, next));
        f.flow.proto == proto::TCP
    });
    assert_eq!(revoked, 1);
    seen.sort_by_key(|(proto, _)| *proto);
    assert_eq!(
        seen,
        vec![(proto::TCP, Some((Seq(101), Seq(901)))), (proto::UDP, None)]
    );
    let t = judged(&ct, &p.tcp(Side::Client, ACK, 101, 901).build(), 2);
    assert_eq!(t.verdict, Verdict::Drop(DropReason::Revoked));
    // Revoked entries are not judged again (only the UDP flow is revoked now), and both go
    // within the CLOSE timeout (10 s), long before the UDP flow's own 30 s.
    assert_eq!(ct.revoke(now, |_, _| true), 1);
    let mut revoked_before = Vec::new();
    let swept = ct.sweep(Timestamp::from_secs(12), |_, revoked| {
        revoked_before.push(revoked)
    });
    assert_eq!((swept, revoked_before), (2, vec![true, true]));
}

#[test]
fn listing_and_state_counts() {
    let ct = conntrack();
    for p in Pair::BOTH {
        open(&ct, &p.tcp(Side::Client, SYN, 1, 0).build(), 0);
    }
    let now = Timestamp::from_secs(1);
    let listed = ct.connections(now, |c| c.src.is_ipv6());
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].proto.as_str(), listed[0].sport), ("tcp", 40000));
    assert_eq!(ct.state_counts(now), vec![("SYN_SENT".to_string(), 2)]);
}

#[test]
fn entries_keep_their_time_past_thirteen_years() {
    // Entry times are compact ticks; a clock (or concatenated captures) more than 2^32 tenths
    // of a second (13.6 years) past its origin must not make every entry expire at once.
    const YEAR: u64 = 365 * 86_400;
    for start in [13 * YEAR, 14 * YEAR, 40 * YEAR, 500 * YEAR] {
        let ct = conntrack();
        let p = Pair::V4.ports(5353, 53);
        open(&ct, &p.udp(Side::Client).build(), start);
        let t = judged(&ct, &p.udp(Side::Server).build(), start + 1);
        assert_eq!(t.state, Some(ConnState::Replied), "at {start} s");
        let tcp = Pair::V6;
        open(&ct, &tcp.tcp(Side::Client, SYN, 100, 0).build(), start + 2);
        let t = judged(
            &ct,
            &tcp.tcp(Side::Server, SYN | ACK, 900, 101).build(),
            start + 3,
        );
        assert_eq!(
            t.state,
            Some(ConnState::Tcp(TcpState::SynRecv)),
            "at {start} s"
        );
        // And they still expire on time: the UDP flow answered once after 30 s, SYN_RECV
        // after 60.
        assert_eq!(ct.sweep(Timestamp::from_secs(start + 20), |_, _| {}), 0);
        assert_eq!(ct.sweep(Timestamp::from_secs(start + 40), |_, _| {}), 1);
        assert_eq!(ct.sweep(Timestamp::from_secs(start + 70), |_, _| {}), 1);
    }
}

/// A table of `max` entries examining `scan` candidates.
fn small(max: usize, scan: usize) -> Conntrack {
    Conntrack::new(
        Timeouts::default(),
        Limits {
            max_entries: max,
            per_source: max,
            early_drop_scan: scan,
            sources: Default::default(),
        },
    )
}

/// Opens a TCP connection from `cport` of `p` and completes its handshake.
fn handshake(ct: &Conntrack, p: Pair, secs: u64) {
    let (c, s) = (Side::Client, Side::Server);
    assert!(matches!(
        open(ct, &p.tcp(c, SYN, 100, 0).build(), secs),
        ConnState::Tcp(_)
    ));
    judged(ct, &p.tcp(s, SYN | ACK, 900, 101).build(), secs);
    let t = judged(ct, &p.tcp(c, ACK, 101, 901).build(), secs);
    assert_eq!(t.state, Some(ConnState::Tcp(TcpState::Established)));
}

#[test]
fn closing_connections_make_room() {
    // Issue 15, item 2: TIME_WAIT (and every closing state) stayed assured and was never
    // evicted, so one client that closed more connections than the table holds locked
    // everyone else out. Linux evicts closing states (`tcp_can_early_drop`).
    for p in Pair::BOTH {
        let ct = small(100, 16);
        let (c, s) = (Side::Client, Side::Server);
        for port in 0..100u16 {
            let t = p.ports(20_000 + port, 80);
            handshake(&ct, t, 1);
            // Each ends in a different closing state.
            let _ = judged(&ct, &t.tcp(c, FIN | ACK, 101, 901).build(), 1);
            if port % 4 >= 1 {
                judged(&ct, &t.tcp(s, ACK, 901, 102).build(), 1);
            }
            if port % 4 >= 2 {
                judged(&ct, &t.tcp(s, FIN | ACK, 901, 102).build(), 1);
            }
            if port % 4 >= 3 {
                judged(&ct, &t.tcp(c, ACK, 102, 902).build(), 1);
            }
        }
        assert_eq!(ct.entries(), 100);
        // Another client's connections all open, each evicting a closing one.
        let other = Pair {
            client: match p.client {
                std::net::IpAddr::V4(_) => "198.51.100.3".parse().expect("addr"),
                std::net::IpAddr::V6(_) => "2001:db8:1::3".parse().expect("addr"),
            },
            ..p
        };
        for port in 0..50u16 {
            handshake(&ct, other.ports(30_000 + port, 80), 2);
        }
        assert_eq!(ct.totals().early_drops, 50);
        assert_eq!(ct.entries(), 100);
    }
}

#[test]
fn early_drop_finds_victims_wherever_they_are() {
    // Issue 15, item 3: the scan always started at the front of the first shard; once the
    // entries there were established ones, a full table refused every new connection
    // although most of it was half-open. Established connections are never evicted.
    let ct = small(600, 8);
    let p = Pair::V4;
    for port in 0..560u16 {
        handshake(&ct, p.ports(10_000 + port, 80), 0);
    }
    // Established a while ago: the sweep forgot them as candidates.
    assert_eq!(ct.sweep(Timestamp::from_secs(1), |_, _| {}), 0);
    for port in 0..40u16 {
        open(
            &ct,
            &p.ports(20_000 + port, 80)
                .tcp(Side::Client, SYN, 1, 0)
                .build(),
            0,
        );
    }
    for n in 0..400u16 {
        let syn = p
            .ports(30_000 + n, 443)
            .tcp(Side::Client, SYN, 1, 0)
            .build();
        let Track::New(o) = track(&ct, &syn, 1) else {
            panic!("opens")
        };
        assert!(ct.open(o).is_ok(), "new connection {n} refused");
    }
    let established = ct.state_counts(Timestamp::from_secs(1));
    assert!(
        established.contains(&("ESTABLISHED".to_string(), 560)),
        "{established:?}"
    );
}

#[test]
fn a_new_connection_outlives_every_older_half_open_entry_in_a_flood() {
    // The SYN flood of e2e_trust (a table of 4 096 full of spoofed half-open flows): early drop
    // took the oldest of the candidates it remembered, but it remembered only the newest 1 024,
    // so a legitimate SYN's entry was evicted after 1 024 more SYNs, not after the 4 095 older
    // entries: a handshake that took longer than that (the queue in between) was cut.
    let max = 4096;
    let ct = small(max, 64);
    let p = Pair::V4;
    let flood = |n: u32, secs: u64| {
        let syn = p
            .ports(1024 + (n % 60_000) as u16, 80)
            .tcp(Side::Client, SYN, n, 0)
            .build();
        open(&ct, &syn, secs);
    };
    for n in 0..max as u32 {
        flood(n, 0);
    }
    let legit = p.ports(61_000, 8080);
    open(&ct, &legit.tcp(Side::Client, SYN, 7, 0).build(), 1);
    // Every entry older than the legitimate one goes first.
    for n in 0..(max as u32 - 1) {
        flood(100_000 + n, 1);
    }
    assert_eq!(ct.totals().early_drops, max as u64);
    match track(&ct, &legit.tcp(Side::Server, SYN | ACK, 100, 8).build(), 1) {
        Track::Judged(t) => assert!(t.verdict.is_accept(), "the SYN/ACK: {t:?}"),
        other => panic!("the SYN/ACK found no entry: {other:?}"),
    }
}

#[test]
fn answered_once_is_not_assured_streams_are_icmp_never() {
    // Issue 15, item 2: UDP and ICMP echo flows were assured on their first reply, so a
    // spoofed flood at a responsive server filled the table with flows never evicted.
    let ct = small(2, 16);
    let p = Pair::V4;
    let dns = p.ports(5353, 53);
    open(&ct, &dns.udp(Side::Client).build(), 0);
    let t = judged(&ct, &dns.udp(Side::Server).build(), 0);
    assert_eq!(t.state, Some(ConnState::Replied));
    open(&ct, &p.echo(Side::Client, true).build(), 0);
    judged(&ct, &p.echo(Side::Server, false).build(), 0);
    judged(&ct, &p.echo(Side::Client, true).build(), 5);
    judged(&ct, &p.echo(Side::Server, false).build(), 5);
    // Both evictable: the answered query first (the oldest), then the echo flow.
    let other = p.ports(6000, 53);
    open(&ct, &other.udp(Side::Client).build(), 6);
    open(&ct, &p.ports(6001, 53).udp(Side::Client).build(), 6);
    assert_eq!(ct.totals().early_drops, 2);
    // A UDP stream (traffic after the reply, 2 s on) is assured: the table refuses.
    judged(&ct, &other.udp(Side::Server).build(), 7);
    judged(&ct, &other.udp(Side::Client).build(), 9);
    let last = p.ports(6001, 53);
    judged(&ct, &last.udp(Side::Server).build(), 7);
    judged(&ct, &last.udp(Side::Client).build(), 9);
    let Track::New(o) = track(&ct, &p.ports(6002, 53).udp(Side::Client).build(), 9) else {
        panic!("opens")
    };
    assert_eq!(ct.open(o), Err(DropReason::TableFull));
}

#[test]
fn a_half_open_entry_the_queues_lost_goes_before_a_closing_connection() {
    // Seen live under a spoofed SYN flood: while the sweep pruned the first victims' queue
    // (it takes the queue to filter it outside its lock) early drop found it empty and
    // evicted a half-closed connection waiting for its answer, although the table was full
    // of half-open entries.
    for p in Pair::BOTH {
        let ct = small(4, 16);
        let (c, s) = (Side::Client, Side::Server);
        handshake(&ct, p, 1);
        judged(&ct, &p.tcp(c, ACK | FIN, 101, 901).build(), 1);
        let t = judged(&ct, &p.tcp(s, ACK, 901, 102).build(), 1);
        assert_eq!(t.state, Some(ConnState::Tcp(TcpState::CloseWait)));
        for port in 0..3 {
            open(
                &ct,
                &p.ports(30_000 + port, 80).tcp(c, SYN, 7, 0).build(),
                2,
            );
        }
        ct.v4.forget_candidates(Victim::First);
        ct.v6.forget_candidates(Victim::First);
        open(&ct, &p.ports(31_000, 80).tcp(c, SYN, 7, 0).build(), 2);
        assert_eq!(ct.totals().early_drops, 1);
        let t = judged(&ct, &p.tcp(s, ACK | PSH, 901, 102).payload(10).build(), 2);
        assert!(t.verdict.is_accept(), "{t:?}");
    }
}
