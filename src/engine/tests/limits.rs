//! The table's limits through the engine: a full table evicts, then refuses; the per-source
//! limit.

use super::*;

#[test]
fn full_table_evicts_unestablished_then_refuses() {
    let config = EngineConfig {
        limits: Limits {
            max_entries: 2,
            per_source: 100,
            early_drop_scan: 16,
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
