//! TCP connections through the engine: handshake, data, close, reopening, segments of no
//! connection, expiry, pickup after a restart, listing, and several workers at once.

use super::*;

#[test]
fn handshake_data_and_close_in_both_families() {
    for p in LABS {
        let e = established(p);
        accept(&e, &p.tcp(C, ACK | PSH, 101, 901).payload(100).build(), 1);
        accept(&e, &p.tcp(S, ACK | PSH, 901, 201).payload(1000).build(), 1);
        accept(&e, &p.tcp(C, FIN | ACK, 201, 1901).build(), 2);
        accept(&e, &p.tcp(S, FIN | ACK, 1901, 202).build(), 2);
        let d = accept(&e, &p.tcp(C, ACK, 202, 1902).build(), 2);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::TimeWait)));
        dropped(
            &e,
            &p.tcp(C, ACK | PSH, 202, 1902).payload(10).build(),
            3,
            DropReason::DataAfterClose,
        );
        // A new SYN on the same tuple reopens it.
        let d = accept(&e, &p.tcp(C, SYN, 50_000, 0).build(), 4);
        assert!(opened(&d));
        assert_eq!(e.entries(), 1);
        let s = e.stats();
        assert_eq!(s.new_connections, 2);
        assert_eq!(s.dropped, 1);
    }
}

#[test]
fn segments_of_no_connection_are_dropped() {
    for p in LABS {
        let e = engine();
        let no_conn = DropReason::NoConnection;
        dropped(&e, &p.tcp(C, ACK, 1, 1).build(), 0, no_conn);
        dropped(&e, &p.tcp(C, FIN | ACK, 1, 1).build(), 0, no_conn);
        dropped(&e, &p.tcp(S, SYN | ACK, 1, 1).build(), 0, no_conn);
        dropped(&e, &p.tcp(C, RST, 1, 0).build(), 0, no_conn);
        let syn_fin = p.tcp(C, SYN | FIN, 1, 0).build();
        dropped(&e, &syn_fin, 0, DropReason::TcpSynFin);
        dropped(&e, &p.tcp(C, 0, 1, 0).build(), 0, DropReason::TcpNull);
        dropped(&e, &p.tcp(C, FIN, 1, 0).build(), 0, DropReason::TcpFinNoAck);
        assert_eq!(e.entries(), 0);
        assert_eq!(e.drop_count(DropReason::NoConnection), 4);
    }
}

#[test]
fn connection_expires_and_then_is_unknown() {
    let p = LABS[0];
    let e = established(p);
    // SYN_RECV -> ESTABLISHED: 5 days. Expire it by sweeping later.
    assert_eq!(e.on_timer(Timestamp::from_secs(1000)).expired, 0);
    assert_eq!(e.on_timer(Timestamp::from_secs(432_001)).expired, 1);
    assert_eq!(e.entries(), 0);
    dropped(
        &e,
        &p.tcp(C, ACK, 101, 901).build(),
        432_002,
        DropReason::NoConnection,
    );
}

#[test]
fn the_table_is_swept_at_most_once_a_second() {
    let p = LABS[0];
    let e = engine();
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    assert_eq!(e.on_timer(Timestamp::from_millis(119_900)).expired, 0);
    // Expired at 120 s, but the last sweep was less than a second ago.
    assert_eq!(e.on_timer(Timestamp::from_millis(120_500)).expired, 0);
    assert_eq!(e.on_timer(Timestamp::from_millis(120_900)).expired, 1);
}

#[test]
fn expired_entry_is_invisible_before_the_sweep() {
    let p = LABS[1];
    let e = engine();
    accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    // SYN_SENT times out after 120 s: the late SYN/ACK matches nothing.
    dropped(
        &e,
        &p.tcp(S, SYN | ACK, 900, 101).build(),
        121,
        DropReason::NoConnection,
    );
    assert_eq!(e.entries(), 0);
}

#[test]
fn malformed_packets_are_counted_drops() {
    let e = engine();
    dropped(&e, &[], 0, DropReason::MalformedIp);
    dropped(&e, &[0x45, 0, 0], 0, DropReason::MalformedIp);
    let mut syn = LABS[0].tcp(C, SYN, 1, 0).build();
    syn.truncate(30);
    dropped(&e, &syn, 0, DropReason::MalformedTcp);
    assert_eq!(e.stats().packets, 3);
}

#[test]
fn pickup_adopts_mid_stream_flows_only_while_on() {
    let p = LABS[0];
    let e = engine();
    let mid = p.tcp(C, ACK | PSH, 5000, 9000).payload(100).build();
    dropped(&e, &mid, 0, DropReason::NoConnection);
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    let d = accept(&e, &mid, 1);
    assert!(opened(&d));
    accept(&e, &p.tcp(S, ACK | PSH, 9000, 5100).payload(500).build(), 1);
    accept(&e, &p.tcp(C, ACK, 5100, 9500).build(), 2);
    // After the grace period, unknown flows are no longer adopted; known ones continue.
    let other = p.ports(40000, 0x1f50).tcp(S, ACK, 1, 1).build();
    dropped(&e, &other, 61, DropReason::NoConnection);
    accept(&e, &p.tcp(C, ACK | PSH, 5100, 9500).payload(10).build(), 62);
}

#[test]
fn picked_up_flow_is_capped_until_the_reply() {
    let p = LABS[0];
    let e = engine();
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    accept(&e, &p.tcp(C, ACK, 5000, 9000).build(), 0);
    // Pickup timeout (60 s) applies, not the 5 days of ESTABLISHED.
    assert_eq!(e.on_timer(Timestamp::from_secs(61)).expired, 1);
}

#[test]
fn connections_listing_is_oriented_by_originator() {
    let p = LABS[0];
    let e = established(p);
    let conns = e.connections(Timestamp::from_secs(1), |_| true);
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!((c.src, c.sport, c.dport), (p.client, 40000, 80));
    assert_eq!(c.state, "ESTABLISHED");
    assert!(c.assured);
    let states = e.state_counts(Timestamp::from_secs(1));
    assert_eq!(states, vec![("ESTABLISHED".to_string(), 1)]);
}

#[test]
fn drop_reason_names_round_trip() {
    for r in DropReason::ALL {
        assert_eq!(r.name().parse::<DropReason>(), Ok(*r));
    }
}

#[test]
fn engine_is_shared_by_threads() {
    let e = std::sync::Arc::new(engine());
    let p = LABS[0];
    let handles: Vec<_> = (0..4u16)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    let port = 1000 + t * 1000 + i;
                    let syn = p.ports(port, 80).tcp(C, SYN, 1, 0).build();
                    assert!(e
                        .process(&syn, &PacketMeta::default(), Timestamp::ZERO)
                        .accepted());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    assert_eq!(e.entries(), 800);
}
