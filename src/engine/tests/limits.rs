//! The table's limits through the engine: a full table evicts, then refuses; the per-source
//! limit.

use std::net::IpAddr;

use super::*;

/// An engine whose table holds `max_entries`, `per_source` of them for one source, early drop
/// looking at 16 candidates.
fn limited(max_entries: usize, per_source: usize) -> Engine {
    Engine::new(EngineConfig {
        limits: Limits {
            max_entries,
            per_source,
            early_drop_scan: 16,
            ..Limits::default()
        },
        ..Default::default()
    })
}

#[test]
fn full_table_evicts_unestablished_then_refuses() {
    let e = limited(2, 100);
    let p = LABS[0];
    // One established connection (never evicted) and one half-open one.
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
    accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
    accept(&e, &udp(p, C, 1), 0);
    // A third flow evicts the unreplied UDP flow.
    accept(&e, &echo(p, C, true), 1);
    assert_eq!(e.stats().early_drops, 1);
    assert_eq!(e.entries(), 2);
    // An echo flow is never assured: a new UDP flow evicts it.
    accept(&e, &echo(p, S, false), 1);
    accept(&e, &udp(p, C, 1), 2);
    assert_eq!(e.stats().early_drops, 2);
    // A UDP stream is assured: nothing left to evict.
    accept(&e, &udp(p, S, 1), 3);
    accept(&e, &udp(p, C, 1), 5);
    dropped(&e, &echo(p, C, true), 5, DropReason::TableFull);
}

#[test]
fn per_source_limit_ignores_time_wait() {
    let e = limited(1000, 1);
    let p = LABS[0];
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    dropped(&e, &udp(p, C, 1), 0, DropReason::SourceLimit);
    // Close the TCP connection: TIME_WAIT does not count, so the UDP flow fits.
    accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
    accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
    accept(&e, &p.tcp(C, FIN | ACK, 101, 901).build(), 0);
    accept(&e, &p.tcp(S, FIN | ACK, 901, 102).build(), 0);
    accept(&e, &p.tcp(C, ACK, 102, 902).build(), 0);
    accept(&e, &udp(p, C, 1), 0);
}

/// A SYN from `src` (port `sport`) to the IPv6 or IPv4 lab server.
fn syn_from(src: &str, sport: u16) -> Vec<u8> {
    let src: IpAddr = src.parse().expect("address");
    let server = if src.is_ipv6() {
        LABS[1].server
    } else {
        LABS[0].server
    };
    crate::testing::tcp(src, server)
        .ports(sport, 80)
        .flags(SYN)
        .seq(1)
        .build()
}

fn limited_engine(sources: crate::source::SourcePrefix) -> Engine {
    Engine::new(EngineConfig {
        limits: Limits {
            max_entries: 1000,
            per_source: 3,
            sources,
            ..Limits::default()
        },
        ..Default::default()
    })
}

#[test]
fn per_source_limit_counts_an_ipv6_64_as_one_source() {
    let e = limited_engine(crate::source::SourcePrefix::default());
    // Rotating through the addresses of one /64 does not escape the limit.
    for (i, src) in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:1:2:3",
    ]
    .iter()
    .enumerate()
    {
        accept(&e, &syn_from(src, 40000 + i as u16), 0);
    }
    dropped(
        &e,
        &syn_from("2001:db8:1:2:abcd::9", 40010),
        0,
        DropReason::SourceLimit,
    );
    // Another /64 is another source; IPv4 addresses are sources of their own.
    accept(&e, &syn_from("2001:db8:1:3::1", 40011), 0);
    for (i, src) in [
        "198.51.100.7",
        "198.51.100.8",
        "198.51.100.9",
        "198.51.100.10",
    ]
    .iter()
    .enumerate()
    {
        accept(&e, &syn_from(src, 40020 + i as u16), 0);
    }
}

#[test]
fn the_source_prefix_is_configurable_for_both_families() {
    let wide = crate::source::SourcePrefix { ipv4: 24, ipv6: 56 };
    let e = limited_engine(wide);
    for (i, src) in ["2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:ff::1"]
        .iter()
        .enumerate()
    {
        accept(&e, &syn_from(src, 40000 + i as u16), 0);
    }
    dropped(
        &e,
        &syn_from("2001:db8:1:80::1", 40005),
        0,
        DropReason::SourceLimit,
    );
    accept(&e, &syn_from("2001:db8:1:100::1", 40006), 0);
    for (i, src) in ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
        .iter()
        .enumerate()
    {
        accept(&e, &syn_from(src, 40020 + i as u16), 0);
    }
    dropped(
        &e,
        &syn_from("198.51.100.200", 40030),
        0,
        DropReason::SourceLimit,
    );
    let exact = crate::source::SourcePrefix {
        ipv4: 32,
        ipv6: 128,
    };
    let e = limited_engine(exact);
    for i in 0..5u16 {
        accept(
            &e,
            &syn_from(&format!("2001:db8:1:2::{}", i + 1), 40000 + i),
            0,
        );
    }
}

/// A table of eight entries, each source allowed all of them.
fn tiny_table() -> Engine {
    limited(8, 8)
}

/// A SYN from a spoofed source (198.18.0.0/15, or 2001:db8:ffff::/48) numbered `i`, to `p`'s
/// server.
fn spoofed_syn(p: Pair, i: u16) -> Vec<u8> {
    let src: IpAddr = if p.is_v6() {
        format!("2001:db8:ffff::{:x}", i + 1).parse().expect("v6")
    } else {
        format!("198.18.{}.{}", i / 250, i % 250 + 1)
            .parse()
            .expect("v4")
    };
    crate::testing::tcp(src, p.server)
        .ports(1024 + i, p.sport)
        .flags(SYN)
        .seq(u32::from(i) * 7919)
        .build()
}

/// The spoofed flood of [`spoofed_syn`] from sources `from..to`, each answered by the server
/// (its SYN/ACK goes to the spoofed source: nobody completes the handshake).
fn spoofed_flood(e: &Engine, p: Pair, from: u16, to: u16, secs: u64) {
    for i in from..to {
        accept(e, &spoofed_syn(p, i), secs);
    }
}

#[test]
fn a_handshake_evicted_by_a_spoofed_flood_completes_and_stays() {
    for p in LABS {
        let e = tiny_table();
        accept(&e, &p.tcp(C, SYN, 100, 0).wscale(7).build(), 0);
        // Spoofed SYNs fill the table; the client's half-open entry is the oldest one.
        spoofed_flood(&e, p, 0, 12, 0);
        assert!(e.stats().early_drops >= 5, "{:?}", e.stats());
        // The server's SYN/ACK and the client's ACK still complete the handshake.
        let d = accept(&e, &p.tcp(S, SYN | ACK, 900, 101).wscale(7).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
        let d = accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
        assert_eq!(e.stats().resumed, 1);
        // Back in the table, established: the flood goes on without evicting it, and its
        // data passes (the window scale of its handshake was kept).
        spoofed_flood(&e, p, 100, 140, 1);
        let d = accept(&e, &p.tcp(C, ACK | PSH, 101, 901).payload(100).build(), 1);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
        let d = accept(&e, &p.tcp(S, ACK, 901, 201).window(1000).build(), 1);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
        assert_eq!(e.entries(), 8);
    }
}

#[test]
fn a_spoofer_gains_nothing_from_the_evicted_handshakes() {
    for p in LABS {
        let e = tiny_table();
        spoofed_flood(&e, p, 0, 20, 0);
        let evicted = e.stats().early_drops;
        assert_eq!(evicted, 12);
        // The server answers an evicted spoofed SYN: its SYN/ACK passes (the reply of a SYN
        // the rules admitted) but takes no slot and evicts nothing.
        let syn_ack = |i: u16, seq: u32, off: u32| {
            let bytes = spoofed_syn(p, i);
            let syn = Packet::decode(&bytes, &PacketMeta::default()).expect("syn");
            let t = syn.tcp().expect("tcp");
            crate::testing::tcp(syn.dst, syn.src)
                .ports(t.dport, t.sport)
                .flags(SYN | ACK)
                .seq(seq)
                .ack((t.seq + 1 + off).0)
                .build()
        };
        let d = accept(&e, &syn_ack(0, 5000, 0), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
        assert_eq!(e.stats().early_drops, evicted);
        assert_eq!(e.entries(), 8);
        // An ACK that did not see the SYN/ACK (the spoofer guesses) finds no connection, and
        // nothing is resumed: judged as the entry in the table would judge it (Linux's window,
        // which takes acknowledgments up to 66 000 below the next byte, so a blind guess
        // succeeds once in 65 000, as against any half-open entry).
        let guess = |ack: u32| {
            let bytes = spoofed_syn(p, 0);
            let syn = Packet::decode(&bytes, &PacketMeta::default()).expect("syn");
            let t = syn.tcp().expect("tcp");
            crate::testing::tcp(syn.src, syn.dst)
                .ports(t.sport, t.dport)
                .flags(ACK)
                .seq((t.seq + 1).0)
                .ack(ack)
                .build()
        };
        dropped(&e, &guess(5001 + (1 << 31)), 0, DropReason::NoConnection);
        // Below the window: Linux's IGNORE (an overly delayed ACK), passed, learned nothing.
        let d = accept(&e, &guess(5001u32.wrapping_sub(70_000)), 0);
        assert_eq!(d.verdict, Verdict::Accept(Pass::Ignored));
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
        dropped(&e, &guess(5002), 0, DropReason::NoConnection);
        // A SYN/ACK that does not answer the SYN passes no more than before.
        dropped(&e, &syn_ack(1, 5000, 1000), 0, DropReason::NoConnection);
        assert_eq!(e.stats().resumed, 0);
        // The one who saw it completes the handshake: resumed.
        let d = accept(&e, &guess(5001), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
        assert_eq!(e.stats().resumed, 1);
    }
}

#[test]
fn a_recheck_forgets_the_evicted_handshakes() {
    let p = LABS[0];
    let e = tiny_table();
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    spoofed_flood(&e, p, 0, 12, 0);
    accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
    let cut = crate::rules::load_str("t.rules", "policy drop\nallow udp\n").expect("rules");
    e.recheck(&cut.policy, Timestamp::from_secs(1));
    e.set_policy(std::sync::Arc::new(cut.policy));
    // The handshake admitted by the old rules does not come back.
    dropped(
        &e,
        &p.tcp(C, ACK, 101, 901).build(),
        1,
        DropReason::NoConnection,
    );
    assert_eq!(e.stats().resumed, 0);
}

#[test]
fn a_resumed_connection_is_reported_opened_again() {
    let p = LABS[1];
    let e = tiny_table();
    e.set_interest(crate::event::Interest {
        conns: true,
        ..Default::default()
    });
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    let mut evicted = 0;
    for i in 0..12 {
        let d = accept(&e, &spoofed_syn(p, i), 0);
        evicted += d
            .events
            .iter()
            .filter(|ev| {
                matches!(ev, Event::Destroy(c) if c.record.flow.src == p.client
                    && c.why == crate::event::CloseReason::Evicted)
            })
            .count();
    }
    assert_eq!(evicted, 1);
    accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
    let d = accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
    let new: Vec<_> = d
        .events
        .iter()
        .filter_map(|ev| match ev {
            Event::New(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "{:?}", d.events);
    assert_eq!(new[0].flow.src, p.client);
    assert_eq!(new[0].state, ConnState::Tcp(TcpState::Established));
    // Its entry made room for it: a spoofed half-open one was evicted and reported.
    assert!(d.events.iter().any(|ev| matches!(ev, Event::Destroy(_))));
}

#[test]
fn a_half_closed_connection_outlives_a_spoofed_flood() {
    // Seen live: under a spoofed SYN flood the table evicted a connection whose client had
    // sent its request and half-closed (FIN) while the server's answer was on its way; the
    // answer was dropped `no_connection` and the client timed out. Half-open flows go first.
    for p in LABS {
        let e = tiny_table();
        accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
        accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
        accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
        accept(
            &e,
            &p.tcp(C, ACK | PSH | FIN, 101, 901).payload(100).build(),
            0,
        );
        let d = accept(&e, &p.tcp(S, ACK, 901, 202).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::CloseWait)));
        spoofed_flood(&e, p, 0, 40, 1);
        assert!(e.stats().early_drops >= 33, "{:?}", e.stats());
        // The answer, the server's FIN and the client's last ACK pass.
        accept(&e, &p.tcp(S, ACK | PSH, 901, 202).payload(500).build(), 1);
        let d = accept(&e, &p.tcp(S, ACK | FIN, 1401, 202).build(), 1);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::LastAck)));
        let d = accept(&e, &p.tcp(C, ACK, 202, 1402).build(), 1);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::TimeWait)));
        // Closed: it makes room for the flood now.
        let before = e.stats().early_drops;
        spoofed_flood(&e, p, 100, 108, 2);
        assert_eq!(e.stats().early_drops, before + 8);
        dropped(
            &e,
            &p.tcp(C, ACK, 202, 1402).build(),
            2,
            DropReason::NoConnection,
        );
    }
}

#[test]
fn an_evicted_handshake_refused_by_the_server_passes_its_rst_and_is_forgotten() {
    for p in LABS {
        let e = tiny_table();
        accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
        spoofed_flood(&e, p, 0, 12, 0);
        // The server refuses: its RST reaches the client, which learns at once.
        let d = accept(&e, &p.tcp(S, RST | ACK, 0, 101).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Close)));
        // Nothing is left to complete.
        dropped(
            &e,
            &p.tcp(C, ACK, 101, 901).build(),
            0,
            DropReason::NoConnection,
        );
        assert_eq!(e.stats().resumed, 0);
        assert_eq!(e.entries(), 8);
    }
}

#[test]
fn a_syn_retransmitted_after_the_remembered_syn_ack_is_part_of_the_handshake() {
    // The client's SYN timer fired while the SYN/ACK was on its way: its retransmission comes
    // after the SYN/ACK passed through the memory. As a new entry it would not know the
    // SYN/ACK, and the client's ACK would be dropped (`unexpected_ack`).
    for p in LABS {
        let e = tiny_table();
        accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
        spoofed_flood(&e, p, 0, 12, 0);
        accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
        let drops = e.stats().early_drops;
        let d = accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
        assert_eq!(e.stats().early_drops, drops, "no slot taken");
        let d = accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
        assert_eq!(e.stats().resumed, 1);
    }
}
