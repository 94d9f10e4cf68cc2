//! Blind pickup after a restart: a mid-stream flow is adopted only when the rules allow it in
//! one orientation or the other, a SYN on a picked-up entry is a new connection, and pickup
//! ends with the grace period.

use super::*;

/// An engine in pickup mode (60 s) with `rules`.
fn picking_up(rules: &str) -> Engine {
    let e = engine();
    let loaded = crate::rules::load_str("t.rules", rules).expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    e
}

/// `policy drop` and one allowed service: the server's port 8080.
fn one_service(p: Pair) -> String {
    format!("policy drop\nallow tcp to {} port 8080\n", p.server)
}

#[test]
fn the_pickup_attack_is_refused() {
    // Issue 15, item 1: after a restart, one ACK the server drops (bad checksum) opened an
    // entry without the rules, and SYN / SYN-ACK / ACK on its tuple then connected to a port
    // the rules refuse. Any refused port, any client port, both families.
    for p in LABS {
        for (cport, sport) in [(40555, 8082), (8080, 22), (50001, 443)] {
            let e = picking_up(&one_service(p));
            let t = p.ports(cport, sport);
            dropped(
                &e,
                &t.tcp(C, ACK, 1000, 2000).build(),
                1,
                DropReason::PolicyDrop,
            );
            assert_eq!(e.entries(), 0, "{cport} -> {sport}");
            dropped(
                &e,
                &t.tcp(C, SYN, 7000, 0).build(),
                1,
                DropReason::PolicyDrop,
            );
            let syn_ack = t.tcp(S, SYN | ACK, 9000, 7001).build();
            assert!(!run(&e, &syn_ack, 1).accepted());
            assert!(!run(&e, &t.tcp(C, ACK, 7001, 9001).build(), 1).accepted());
            assert_eq!(e.entries(), 0);
        }
    }
}

#[test]
fn a_syn_on_a_picked_up_entry_is_a_new_connection() {
    // The rules allow the server to connect out; a client's ACK towards the server is adopted
    // as the server's flow (the other orientation), but the client's SYN on that tuple is a
    // connection the client opens, and the rules refuse it.
    for p in LABS {
        let e = picking_up(&format!("policy drop\nallow tcp from {}\n", p.server));
        let t = p.ports(5555, 22);
        let d = accept(&e, &t.tcp(C, ACK, 1000, 2000).build(), 1);
        assert!(opened(&d));
        dropped(
            &e,
            &t.tcp(C, SYN, 7000, 0).build(),
            1,
            DropReason::PolicyDrop,
        );
        assert!(!run(&e, &t.tcp(S, SYN | ACK, 9000, 7001).build(), 1).accepted());
        // With allow-all, the SYN opens a new connection in place of the picked-up one.
        let e = picking_up("policy allow\n");
        accept(&e, &t.tcp(C, ACK | PSH, 1000, 2000).payload(10).build(), 1);
        let d = accept(&e, &t.tcp(C, SYN, 7000, 0).build(), 2);
        assert!(opened(&d));
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynSent)));
        assert_eq!(e.entries(), 1);
    }
}

#[test]
fn allowed_flows_are_adopted_in_either_orientation() {
    for p in LABS {
        // The server's segment comes first: the flow is the client's, to port 8080.
        let e = picking_up(&one_service(p));
        let t = p.ports(40000, 8080);
        let d = accept(&e, &t.tcp(S, ACK | PSH, 9000, 5000).payload(100).build(), 1);
        assert!(opened(&d));
        accept(&e, &t.tcp(C, ACK, 5000, 9100).build(), 1);
        accept(&e, &t.tcp(C, ACK | PSH, 5000, 9100).payload(10).build(), 2);
        let conns = e.connections(Timestamp::from_secs(2), |_| true);
        assert_eq!(conns.len(), 1);
        let c = &conns[0];
        assert_eq!(
            (c.src, c.sport, c.dst, c.dport),
            (p.client, 40000, p.server, 8080)
        );
        assert!(c.assured, "both directions seen");
        // The client's segment first: the same.
        let e = picking_up(&one_service(p));
        accept(&e, &t.tcp(C, ACK, 5000, 9000).build(), 1);
        accept(&e, &t.tcp(S, ACK | PSH, 9000, 5000).payload(100).build(), 1);
        let conns = e.connections(Timestamp::from_secs(2), |_| true);
        assert_eq!((conns[0].src, conns[0].dport), (p.client, 8080));
        assert!(conns[0].assured);
        // A recheck with the same rules keeps both orientations.
        let policy = e.policy();
        assert_eq!(e.recheck(&policy, Timestamp::from_secs(3)).revoked, 0);
    }
}

#[test]
fn refused_mid_stream_segments_are_probes_after_the_grace_period_too() {
    let p = LABS[0];
    let e = picking_up(&one_service(p));
    let allowed = p.ports(40001, 8080).tcp(C, ACK, 1, 1).build();
    dropped(&e, &allowed, 61, DropReason::NoConnection);
    assert_eq!(e.entries(), 0);
}
