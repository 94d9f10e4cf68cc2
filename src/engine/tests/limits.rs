//! The table's limits through the engine: a full table evicts, then refuses; the per-source
//! limit.

use std::net::IpAddr;

use super::*;

#[test]
fn full_table_evicts_unestablished_then_refuses() {
    let config = EngineConfig {
        limits: Limits {
            max_entries: 2,
            per_source: 100,
            early_drop_scan: 16,
            ..Limits::default()
        },
        ..Default::default()
    };
    let e = Engine::new(config);
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
    let config = EngineConfig {
        limits: Limits {
            max_entries: 1000,
            per_source: 1,
            early_drop_scan: 16,
            ..Limits::default()
        },
        ..Default::default()
    };
    let e = Engine::new(config);
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
